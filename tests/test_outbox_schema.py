"""The outbox's schema moves forward by numbered migrations and never loses an unacknowledged review."""
from __future__ import annotations

import sqlite3

import pytest

from edge.errors import OutboxError
from edge.outbox import Outbox
from edge.outbox_schema import MIGRATIONS, migrate
from tests.test_outbox import JPEG, header


def _version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_outbox_is_at_the_last_migration(tmp_path):
    Outbox(tmp_path).close()
    assert _version(tmp_path / "outbox.sqlite3") == len(MIGRATIONS)


def test_an_outbox_from_before_versioning_opens_with_its_reviews(tmp_path):
    box = Outbox(tmp_path)
    h = header()
    box.put(h, JPEG)
    box.close()
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        db.execute("PRAGMA user_version = 0")  # as the releases before migrations left it
    again = Outbox(tmp_path)
    assert [p.id for p in again.due(10, 10)] == [h.id]
    again.close()
    assert _version(tmp_path / "outbox.sqlite3") == len(MIGRATIONS)


def test_a_later_migration_upgrades_in_place_and_keeps_rows(tmp_path):
    box = Outbox(tmp_path)
    h = header()
    box.put(h, JPEG)
    box.close()
    later = MIGRATIONS + ((len(MIGRATIONS) + 1, "ALTER TABLE reviews ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"),)
    db = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
    assert migrate(db, later) == len(later)
    assert db.execute("SELECT id, priority FROM reviews").fetchall() == [(h.id, 0)]
    assert migrate(db, later) == len(later)  # nothing left to do the second time
    db.close()


def test_a_failed_migration_leaves_the_file_at_the_last_one_that_finished(tmp_path):
    Outbox(tmp_path).close()
    broken = MIGRATIONS + ((len(MIGRATIONS) + 1, "ALTER TABLE reviews ADD COLUMN a INTEGER; ALTER TABLE nope ADD b;"),)
    db = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="nope"):
        migrate(db, broken)
    db.close()
    assert _version(tmp_path / "outbox.sqlite3") == len(MIGRATIONS)
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as check:
        columns = [row[1] for row in check.execute("PRAGMA table_info(reviews)")]
    assert "a" not in columns  # the half-done migration was rolled back


def test_an_outbox_from_a_newer_release_is_refused_untouched(tmp_path):
    Outbox(tmp_path).close()
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(OutboxError, match="newer than this edge knows"):
        Outbox(tmp_path)
    assert _version(path) == len(MIGRATIONS) + 5
