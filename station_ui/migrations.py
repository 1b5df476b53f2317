"""Numbered schema migrations of the station database (sqlite-utils ``Migrations``).

A database made by an older station is upgraded in place when it is opened: each
migration runs once, in its own transaction, and is recorded in
``_sqlite_migrations``. Nothing here ever drops a table with data in it; a new
column gets a default or a backfill. Add a migration at the end, never edit one
that has shipped.
"""
from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

migrations = Migrations("station")


@migrations()
def m001_initial(db: Database) -> None:
    _run(db, """
    CREATE TABLE reviews (
        id TEXT PRIMARY KEY,            -- review id (UUID) from the edge: the idempotency key
        part_id TEXT NOT NULL,
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        captured_at REAL NOT NULL,
        model TEXT NOT NULL,
        score REAL,
        band TEXT NOT NULL,
        action_taken TEXT NOT NULL,
        reason TEXT NOT NULL,
        thresholds TEXT NOT NULL DEFAULT '{}',
        quality TEXT NOT NULL DEFAULT '{}',
        detail TEXT NOT NULL DEFAULT '',
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        image_path TEXT NOT NULL,
        image_bytes INTEGER NOT NULL DEFAULT 0,
        received_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'   -- pending | awaiting_confirm | done | disputed
    );
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY,
        review_id TEXT NOT NULL REFERENCES reviews(id),
        verdict TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT '',
        user TEXT NOT NULL,
        station TEXT NOT NULL,
        time REAL NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0,
        undone_at REAL
    );
    CREATE INDEX ix_verdicts_review ON verdicts(review_id);
    CREATE UNIQUE INDEX ux_verdicts_live ON verdicts(review_id) WHERE undone = 0;
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        user TEXT NOT NULL,
        station TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    -- The audit log is append-only: the database itself refuses edits.
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


@migrations()
def m002_two_person_queue_tokens(db: Database) -> None:
    # Two-person rule: a confirming verdict is seq 2, so "one live verdict per review"
    # becomes "one live verdict per (review, seq)".
    _run(db, """
    ALTER TABLE verdicts ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;
    DROP INDEX ux_verdicts_live;
    CREATE UNIQUE INDEX ux_verdicts_live ON verdicts(review_id, seq) WHERE undone = 0;
    CREATE INDEX ix_verdicts_user ON verdicts(user, id);
    ALTER TABLE reviews ADD COLUMN open INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE reviews ADD COLUMN first_user TEXT;
    ALTER TABLE reviews ADD COLUMN final_verdict TEXT;
    ALTER TABLE reviews ADD COLUMN final_kind TEXT;
    ALTER TABLE reviews ADD COLUMN final_verdict_id INTEGER;
    ALTER TABLE reviews ADD COLUMN decided_at REAL;
    UPDATE reviews SET open = CASE WHEN state IN ('pending', 'awaiting_confirm') THEN 1 ELSE 0 END;
    UPDATE reviews SET (final_verdict, final_kind, final_verdict_id, decided_at) =
        (SELECT v.verdict, v.kind, v.id, v.time FROM verdicts v WHERE v.review_id = reviews.id AND v.undone = 0)
        WHERE state = 'done';
    CREATE INDEX ix_reviews_queue ON reviews(captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_export ON reviews(final_verdict_id) WHERE final_verdict_id IS NOT NULL;
    CREATE INDEX ix_reviews_part ON reviews(part_id);
    CREATE INDEX ix_reviews_captured ON reviews(captured_at);
    CREATE TABLE lines (name TEXT PRIMARY KEY, critical INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,   -- sha256 of the token; the token itself is shown once
        created_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        last_used_at REAL
    );
    """)


@migrations()
def m003_edge_status(db: Database) -> None:
    _run(db, """
    CREATE TABLE edge_status (
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        state TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        payload TEXT NOT NULL DEFAULT '{}',
        updated_at REAL NOT NULL,
        PRIMARY KEY (line, camera)
    );
    """)


@migrations()
def m004_queue_indexes_and_sources(db: Database) -> None:
    # The review page must stay fast with 100,000 waiting items: counts and filters
    # come from covering partial indexes and a small table of known line/camera pairs.
    _run(db, """
    CREATE INDEX ix_reviews_queue_line ON reviews(line, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_queue_cam ON reviews(camera, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_queue_lc ON reviews(line, camera, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_queue_user ON reviews(first_user) WHERE open = 1 AND first_user IS NOT NULL;
    CREATE TABLE sources (line TEXT NOT NULL, camera TEXT NOT NULL, PRIMARY KEY (line, camera));
    INSERT OR IGNORE INTO sources (line, camera) SELECT DISTINCT line, camera FROM reviews;
    """)


@migrations()
def m005_trainer_status(db: Database) -> None:
    # The retraining server's retained status (its state and its last run: the gate's decision and
    # the candidate's calibration), one row per status topic, for the dashboard.
    _run(db, """
    CREATE TABLE trainer_status (
        topic TEXT PRIMARY KEY,
        payload TEXT NOT NULL DEFAULT '{}',
        updated_at REAL NOT NULL
    );
    """)


@migrations()
def m006_verdict_outbox(db: Database) -> None:
    # Verdict messages waiting for the broker's PUBACK, written in the verdict's own transaction: a
    # station restarted while the broker is down still sends what its reviewers ruled.
    _run(db, """
    CREATE TABLE verdict_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line TEXT NOT NULL,
        payload TEXT NOT NULL,
        created REAL NOT NULL
    );
    """)


@migrations()
def m007_session_versions(db: Database) -> None:
    # Sessions are checked against the database on every request: a user's sessions end when the
    # number moves (logout, a role or password change) or the user is disabled.
    _run(db, """
    ALTER TABLE users ADD COLUMN session_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    """)


@migrations()
def m008_alarm_acks(db: Database) -> None:
    # An engineer's acknowledgement of an active alarm (the edge's or the station's): seen, being handled.
    # It ends with the alarm: when the alarm clears, or comes back with another message, it is asked again.
    _run(db, """
    CREATE TABLE alarm_acks (
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        message TEXT NOT NULL,
        user TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (source, name)
    );
    """)


@migrations()
def m009_known_answers(db: Database) -> None:
    # Known-answer items (station_ui.known_answers): a settled review served again to one reviewer under
    # a fresh id, looking like a live item. The answer measures the reviewer; it never becomes a verdict,
    # so it never reaches a line, the verdict topic or the export.
    _run(db, """
    CREATE TABLE known_answers (
        id TEXT PRIMARY KEY,
        source_id TEXT NOT NULL REFERENCES reviews(id),
        user TEXT NOT NULL,
        served_at REAL NOT NULL,
        shown_at REAL NOT NULL,
        truth TEXT NOT NULL,
        truth_kind TEXT NOT NULL DEFAULT '',
        lean TEXT NOT NULL,
        verdict TEXT,
        kind TEXT,
        answered_at REAL
    );
    CREATE INDEX known_answers_user ON known_answers (user, answered_at);
    """)


@migrations()
def m010_queue_counts(db: Database) -> None:
    # The queue's size per line and camera, kept by the database itself as reviews open and close: a
    # count(*) of a million open reviews took 28 ms on every page and verdict; a sum over a few rows does not.
    _run(db, """
    CREATE TABLE queue_counts (
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        n INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (line, camera)
    );
    INSERT INTO queue_counts (line, camera, n) SELECT line, camera, count(*) FROM reviews WHERE open = 1
        GROUP BY line, camera;
    CREATE TRIGGER queue_counts_insert AFTER INSERT ON reviews WHEN NEW.open = 1 BEGIN
        INSERT INTO queue_counts (line, camera, n) VALUES (NEW.line, NEW.camera, 1)
            ON CONFLICT (line, camera) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER queue_counts_open AFTER UPDATE OF open ON reviews WHEN NEW.open != OLD.open BEGIN
        INSERT INTO queue_counts (line, camera, n) VALUES (NEW.line, NEW.camera, CASE WHEN NEW.open THEN 1 ELSE -1 END)
            ON CONFLICT (line, camera) DO UPDATE SET n = n + excluded.n;
    END;
    CREATE TRIGGER queue_counts_delete AFTER DELETE ON reviews WHEN OLD.open = 1 BEGIN
        UPDATE queue_counts SET n = n - 1 WHERE line = OLD.line AND camera = OLD.camera;
    END;
    """)


@migrations()
def m011_line_modes(db: Database) -> None:
    # How each line uses its people (wire.LineSettings): set by engineers, audited, sent to the edges retained.
    _run(db, """
    ALTER TABLE lines ADD COLUMN mode TEXT NOT NULL DEFAULT 'in-the-loop';
    ALTER TABLE lines ADD COLUMN hold_time_s REAL NOT NULL DEFAULT 60;
    ALTER TABLE lines ADD COLUMN fallback TEXT NOT NULL DEFAULT 'REJECT';
    ALTER TABLE lines ADD COLUMN mode_set_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE lines ADD COLUMN mode_set_at REAL NOT NULL DEFAULT 0;
    """)


@migrations()
def m012_lots_and_recalls(db: Database) -> None:
    # A part's lot (from the edge), and recalls: a part the line passed that a reviewer then ruled a real
    # fault (on the loop, or an audited pass) has left the line; engineers must find it. Kept until acknowledged.
    _run(db, """
    ALTER TABLE reviews ADD COLUMN lot TEXT NOT NULL DEFAULT '';
    ALTER TABLE lines ADD COLUMN lot TEXT NOT NULL DEFAULT '';
    CREATE TABLE recalls (
        review_id TEXT PRIMARY KEY REFERENCES reviews(id),
        part_id TEXT NOT NULL,
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        captured_at REAL NOT NULL,
        lot TEXT NOT NULL DEFAULT '',
        user TEXT NOT NULL,
        time REAL NOT NULL,
        acked_by TEXT,
        acked_at REAL
    );
    """)


@migrations()
def m013_routing(db: Database) -> None:
    # Routing (station_ui.routing): each review's priority and reviewers, set as it arrives; the queue
    # is served by priority, then oldest first, through indexes of that order.
    _run(db, """
    ALTER TABLE reviews ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE reviews ADD COLUMN reviewers INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE routing_rules (
        id INTEGER PRIMARY KEY,
        line TEXT NOT NULL DEFAULT '',
        camera TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        min_score REAL,
        max_score REAL,
        priority INTEGER NOT NULL DEFAULT 0,
        reviewers INTEGER NOT NULL DEFAULT 1,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX ix_reviews_route ON reviews(priority DESC, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_route_line ON reviews(line, priority DESC, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_route_cam ON reviews(camera, priority DESC, captured_at) WHERE open = 1;
    CREATE INDEX ix_reviews_route_lc ON reviews(line, camera, priority DESC, captured_at) WHERE open = 1;
    """)


@migrations()
def m014_model_samples(db: Database) -> None:
    # Each edge's counts per model version, sampled from its status every few minutes (store.SAMPLE_EVERY_S):
    # what the dashboard plots as review, false-reject and escape rates per model over time.
    _run(db, """
    CREATE TABLE model_samples (
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        since REAL NOT NULL,        -- the edge's start: its counts are cumulative from there
        time REAL NOT NULL,
        model TEXT NOT NULL,
        parts INTEGER NOT NULL,
        pass INTEGER NOT NULL,
        hold INTEGER NOT NULL,
        reject INTEGER NOT NULL,
        uncertain INTEGER NOT NULL,
        PRIMARY KEY (line, camera, since, model, time)
    );
    CREATE INDEX ix_model_samples_time ON model_samples(time);
    """)


@migrations()
def m015_band_scale(db: Database) -> None:
    # Review capacity (station_ui.capacity): the band's width the station asks of its lines, and its moves.
    _run(db, """
    ALTER TABLE lines ADD COLUMN band_scale REAL NOT NULL DEFAULT 1.0;
    CREATE TABLE band_log (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        scale REAL NOT NULL,
        demand_per_h REAL NOT NULL,
        queue INTEGER NOT NULL,
        capacity_per_h REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX ix_band_log_time ON band_log(time);
    """)


def _run(db: Database, script: str) -> None:
    """Run statements one by one: executescript() would COMMIT the migration's transaction."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            db.execute(buf)
            buf = ""
    if buf.strip():
        db.execute(buf)


def names() -> list[str]:
    return [m.name for m in migrations._migrations]


def schema_version(db: Database) -> int:
    """How many station migrations this database has had (0 for a new file)."""
    return len(migrations.applied(db))
