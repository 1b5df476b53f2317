"""The review outbox: reviews survive until the station says it stored them.

Each review is a JPEG file plus a row in a local SQLite database (WAL). The JPEG is
written first (temporary file, fsync, rename, directory fsync), then the row is committed, so a row
never points at a missing or torn file; a file without a row (a crash between the
two) was never published and is removed at open. A row is deleted only when the
station's review-ack arrives, never on the broker's PUBACK, and everything left after
a restart is sent again.

The outbox has a byte limit. When a new review does not fit, the oldest audit items
are evicted first (they are samples, not doubts); if it still does not fit, the new
review is refused with OutboxFullError and the caller raises an alarm.

The database's schema moves forward by numbered migrations (edge.outbox_schema), so an
upgraded edge opens the outbox it left, unacknowledged reviews included.

A full disk refuses a new review with OutboxError (the temporary file is removed, no
row is written) and leaves everything already stored as it was; reads and the
sender go on, and a failed ack only means the review is sent and acked again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.errors import OutboxError, OutboxFullError
from edge.outbox_schema import migrate
from qcloop import wire
from qcloop.files import fsync_dir, write_durably

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    id: str
    header: wire.ReviewHeader
    path: Path
    attempts: int


class Outbox:
    """Thread-safe; one instance per edge process owns the directory."""

    def __init__(self, directory: str | Path, max_bytes: int = 512 * 1024 * 1024):
        self.dir = Path(directory)
        self.images = self.dir / "images"
        self.max_bytes = max_bytes
        self.evicted = 0  # audit items evicted to make room
        self.ack_failures = 0  # acks that could not delete their row (disk full); resent and acked again
        self._lock = threading.Lock()
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.dir / "outbox.sqlite3", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db, where=str(self.dir / "outbox.sqlite3"))
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox in {self.dir}: {exc}") from exc
        self._bytes = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM reviews").fetchone()[0]
        self._remove_orphans()

    # ------------------------------------------------------------------ writing
    def put(self, header: wire.ReviewHeader, jpeg: bytes) -> None:
        """Store one review durably; raise OutboxFullError when it cannot fit."""
        size = len(jpeg)
        with self._lock:
            with self._translated("make room"):
                self._make_room(size, header.reason)
            path = self.images / f"{header.id}.jpg"
            try:
                write_durably(path, jpeg)
                fsync_dir(self.images)  # the rename must outlive a power cut before the row says it exists
                self._db.execute(
                    "INSERT OR IGNORE INTO reviews (id, created, reason, header, file, bytes) VALUES (?, ?, ?, ?, ?, ?)",
                    (header.id, time.time(), header.reason, json.dumps(header.to_json()), path.name, size),
                )
            except (OSError, sqlite3.Error) as exc:
                path.unlink(missing_ok=True)
                raise OutboxError(f"cannot store review {header.id}: {exc}") from exc
            self._bytes += size

    def _make_room(self, size: int, reason: str) -> None:
        if self._bytes + size <= self.max_bytes:
            return
        rows = self._db.execute(
            "SELECT id, file, bytes FROM reviews WHERE reason = 'audit' ORDER BY created"
        ).fetchall()
        for rid, fname, nbytes in rows:
            if self._bytes + size <= self.max_bytes:
                break
            self._delete(rid, fname, nbytes)
            self.evicted += 1
        if self._bytes + size > self.max_bytes:
            raise OutboxFullError(
                f"outbox at {self._bytes} of {self.max_bytes} bytes with no audit item left to evict; "
                f"{reason} review refused"
            )

    # ------------------------------------------------------------------ sending
    def due(self, resend_after_s: float, limit: int, now: float | None = None) -> list[Pending]:
        """Reviews never sent, or sent more than resend_after_s ago without an ack, oldest first."""
        now = time.time() if now is None else now
        with self._lock, self._translated("read the due reviews"):
            rows = self._db.execute(
                "SELECT id, header, file, attempts FROM reviews WHERE last_sent <= ? ORDER BY created LIMIT ?",
                (now - resend_after_s, limit),
            ).fetchall()
        return [Pending(rid, wire.header_from_json(json.loads(h)), self.images / f, n) for rid, h, f, n in rows]

    def in_flight(self, resend_after_s: float, now: float | None = None) -> int:
        """Reviews sent and not yet acknowledged, still inside their resend window."""
        now = time.time() if now is None else now
        with self._lock, self._translated("count the reviews in flight"):
            return self._db.execute(
                "SELECT COUNT(*) FROM reviews WHERE last_sent > ?", (now - resend_after_s,)
            ).fetchone()[0]

    def mark_sent(self, ids: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock, self._translated("mark reviews as sent"):
            self._db.executemany(
                "UPDATE reviews SET last_sent = ?, attempts = attempts + 1 WHERE id = ?", [(now, i) for i in ids]
            )

    def reset_sent(self) -> None:
        """Make everything due again (after a reconnect: in-flight copies may be lost).

        Runs on the MQTT thread: a full disk is logged, not raised; the resend window
        makes the reviews due again anyway."""
        with self._lock:
            try:
                self._db.execute("UPDATE reviews SET last_sent = 0")
            except sqlite3.Error as exc:
                log.warning("outbox: cannot mark reviews due again (%s); they are resent after the resend window", exc)

    def ack(self, review_id: str) -> bool:
        """The station stored this review: forget it. Returns False for an unknown id.

        Runs on the MQTT thread. When the row cannot be deleted (a full disk: even a
        delete needs room in the WAL) the review stays, is sent again and acked again."""
        with self._lock:
            try:
                row = self._db.execute("SELECT file, bytes FROM reviews WHERE id = ?", (review_id,)).fetchone()
                if row is None:
                    return False
                self._delete(review_id, row[0], row[1])
            except sqlite3.Error as exc:
                self.ack_failures += 1
                log.warning("outbox: cannot forget acknowledged review %s (%s); it will be sent again", review_id, exc)
                return False
            return True

    def envelope(self, item: Pending) -> bytes:
        try:
            jpeg = item.path.read_bytes()
        except OSError as exc:
            raise OutboxError(f"review {item.id}: cannot read {item.path}: {exc}") from exc
        return wire.encode_review(item.header, jpeg)

    # ------------------------------------------------------------------ state
    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]

    @property
    def bytes(self) -> int:
        return self._bytes

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM reviews")}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox in {self.dir}: cannot {what}: {exc}") from exc

    def _delete(self, rid: str, fname: str, nbytes: int) -> None:
        self._db.execute("DELETE FROM reviews WHERE id = ?", (rid,))
        (self.images / fname).unlink(missing_ok=True)
        self._bytes -= nbytes

    def _remove_orphans(self) -> None:
        known = {r[0] for r in self._db.execute("SELECT file FROM reviews")}
        for p in self.images.iterdir():
            if p.name not in known:
                p.unlink(missing_ok=True)
