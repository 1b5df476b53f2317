"""Numbered migrations of the outbox database: an edge upgraded in place keeps every unacknowledged review.

The schema's version is SQLite's ``PRAGMA user_version``. ``migrate`` applies, in order and
each in its own transaction, every migration above the file's version, so a crash half-way
leaves the file at the last migration that finished. Migration 1 is the first schema as
shipped (``IF NOT EXISTS``, so outboxes written before versioning open unchanged). A new
column or table is a new numbered entry at the end, never an edit of an old one and never
``DROP TABLE``. A file from a newer release (a version above the last known one) is refused:
a downgraded edge must not write rows it does not understand. Standard library only, like the edge.
"""

from __future__ import annotations

import sqlite3

from edge.errors import OutboxError

#: (version, SQL script), in order. Append; never change a migration that has shipped.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    reason TEXT NOT NULL,
    header TEXT NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_sent REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS reviews_reason_created ON reviews(reason, created);
CREATE INDEX IF NOT EXISTS reviews_last_sent ON reviews(last_sent);
""",
    ),
)


def migrate(db: sqlite3.Connection, migrations: tuple[tuple[int, str], ...] = MIGRATIONS, where: str = "outbox") -> int:
    """Bring ``db`` (autocommit mode) up to the last migration; return the version it is at."""
    versions = [v for v, _ in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, got {versions}")
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current > len(migrations):
        raise OutboxError(
            f"{where}: schema version {current} is newer than this edge knows ({len(migrations)}); "
            f"run the release that wrote it, or move the outbox aside"
        )
    for version, script in migrations[current:]:
        # executescript commits first and runs the script as written: BEGIN ... COMMIT makes it all or nothing.
        db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {int(version)};\nCOMMIT;")
    return len(migrations)
