"""Read-only queries of a running station's SQLite database, for the benches' rigs.

The rigs count what a station has stored while it runs (and after it was killed): a query
must never write, and a database the station has not created yet (or whose schema it is
still creating) reads as empty rather than failing.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from qcloop.errors import QcError


def query_station(db: Path, sql: str, *params: object, error: type[QcError] = QcError) -> list[tuple]:
    """The rows of ``sql`` on ``db``, opened read-only; [] while the file or its tables do not exist yet.
    Any other database error is raised as ``error``, naming the file."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the station is still creating its schema
        raise error(f"cannot read {db}: {exc}") from exc
