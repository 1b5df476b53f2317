"""The station's SQLite store: reviews, attributed verdicts, the audit log.

One file in WAL mode, opened per thread (per request in the web app). Writes that
decide something run in ``BEGIN IMMEDIATE`` so concurrent reviewers queue on the
write lock (with a busy timeout) instead of failing with "database is locked",
and the state check plus the partial unique index on live verdicts make sure that
exactly one verdict per review counts (two, for a confirmed real fault on a
critical line). ``synchronous=FULL``: an acknowledged review or a recorded verdict
survives a power cut, because the edge deletes its copy on our ack.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlite_utils import Database

from qcloop import wire
from station_ui import migrations, routing
from station_ui.errors import AlreadyDecided, ReviewNotFound, StoreError, UndoRefused

OPEN_STATES = ("pending", "awaiting_confirm")


#: How often an edge's per-model counts are kept for the dashboard's rates over time.
SAMPLE_EVERY_S = 300.0


@dataclass(frozen=True)
class QueueStats:
    count: int
    oldest_captured_at: float | None

    def oldest_age_s(self, now: float | None = None) -> float | None:
        if self.oldest_captured_at is None:
            return None
        return max(0.0, (now or time.time()) - self.oldest_captured_at)


@dataclass(frozen=True)
class VerdictOutcome:
    verdict_id: int
    review_id: str
    state: str  # the review's state afterwards
    counted: bool  # True when this verdict is now the review's final label
    message: wire.Verdict | None  # what to publish on the verdict topic (None: nothing final yet)


@dataclass(frozen=True)
class UndoOutcome:
    verdict_id: int
    review_id: str
    message: wire.Verdict | None  # an undone=True verdict to publish when the undone one had counted


class Store:
    """A connection to the station database. Not shared between threads."""

    def __init__(self, path: str | Path, *, migrate: bool = True, busy_timeout_s: float = 30.0,
                 station: str = "", queue_verdicts: bool = True):
        self.path = Path(path)
        self.station = station
        self.queue_verdicts = queue_verdicts  # keep verdict messages for the ingest to publish (MQTT on)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) below.
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self.conn = conn
            self.db = Database(conn)
            if migrate:
                migrations.migrations.apply(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the station database: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so no upgrade deadlock."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write: {exc}") from exc
        try:
            yield self.conn
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"{self.path}: commit failed: {exc}") from exc

    def _rollback(self) -> None:
        # SQLite may already have rolled back itself (e.g. SQLITE_FULL); a second ROLLBACK
        # would raise and hide the real error.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ audit
    def _audit(self, conn: sqlite3.Connection, user: str, action: str, target: str = "",
               detail: dict[str, Any] | None = None, now: float | None = None) -> None:
        conn.execute("INSERT INTO audit_log (time, user, station, action, target, detail) VALUES (?,?,?,?,?,?)",
                     (now or time.time(), user, self.station, action, target, json.dumps(detail or {})))

    def audit(self, user: str, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        with self.write() as conn:
            self._audit(conn, user, action, target, detail)

    def audit_entries(self, limit: int = 100, action: str | None = None) -> list[sqlite3.Row]:
        where, args = ("WHERE action = ?", [action]) if action else ("", [])
        return self.conn.execute(f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()

    # ---------------------------------------------------------------- reviews
    def insert_reviews(self, items: list[tuple[wire.ReviewHeader, str, int]], received_at: float | None = None) -> list[bool]:
        """Insert (header, image_path, image_bytes) rows in one transaction; True where new."""
        now = received_at or time.time()
        out = []
        with self.write() as conn:
            rules = self._rules(conn)
            # Lines an engineer put in the loop: their edges hold uncertain parts until ruled.
            in_the_loop = {r[0] for r in conn.execute(
                "SELECT name FROM lines WHERE mode = 'in-the-loop' AND mode_set_at > 0")}
            for h, image_path, nbytes in items:
                held = h.action_taken == "HOLD" and h.line in in_the_loop
                priority, reviewers = routing.route(h, rules, held)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO reviews (id, part_id, line, camera, captured_at, model, score, band,"
                    " action_taken, reason, thresholds, quality, detail, width, height, image_path, image_bytes,"
                    " received_at, lot, priority, reviewers) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (h.id, h.part_id, h.line, h.camera, h.captured_at, h.model, h.score, h.band, h.action_taken,
                     h.reason, json.dumps(h.thresholds), json.dumps(h.quality), h.detail, h.width, h.height,
                     image_path, nbytes, now, h.lot, priority, reviewers))
                out.append(cur.rowcount == 1)
                if cur.rowcount == 1:
                    conn.execute("INSERT OR IGNORE INTO sources (line, camera) VALUES (?, ?)", (h.line, h.camera))
        return out

    def insert_review(self, header: wire.ReviewHeader, image_path: str, image_bytes: int = 0) -> bool:
        return self.insert_reviews([(header, image_path, image_bytes)])[0]

    # --------------------------------------------------------------- routing
    @staticmethod
    def _rules(conn: sqlite3.Connection) -> list[routing.Rule]:
        return [routing.Rule(line=r["line"], camera=r["camera"], reason=r["reason"], min_score=r["min_score"],
                             max_score=r["max_score"], priority=r["priority"], reviewers=r["reviewers"], id=r["id"])
                for r in conn.execute("SELECT * FROM routing_rules ORDER BY id")]

    def routing_rules(self) -> list[routing.Rule]:
        return self._rules(self.conn)

    def add_routing_rule(self, rule: routing.Rule, user: str) -> int:
        """An engineer's rule for reviews arriving from now on; audited."""
        with self.write() as conn:
            rid = cast(int, conn.execute(
                "INSERT INTO routing_rules (line, camera, reason, min_score, max_score, priority, reviewers,"
                " created_by, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (rule.line, rule.camera, rule.reason, rule.min_score, rule.max_score, rule.priority, rule.reviewers,
                 user, time.time())).lastrowid)
            self._audit(conn, user, "setting", f"routing-rule:{rid}", {"rule": rule.words()})
        return rid

    def remove_routing_rule(self, rule_id: int, user: str) -> bool:
        with self.write() as conn:
            row = conn.execute("SELECT * FROM routing_rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM routing_rules WHERE id = ?", (rule_id,))
            self._audit(conn, user, "setting", f"routing-rule:{rule_id}", {"removed": True})
        return True

    def has_review(self, review_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM reviews WHERE id = ?", (review_id,)).fetchone() is not None

    def get_review(self, review_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
        if row is None:
            raise ReviewNotFound(f"no review with id {review_id!r}")
        return row

    def _queue_where(self, line: str | None, camera: str | None, user: str | None) -> tuple[str, list[Any]]:
        where, args = ["open = 1"], []
        if line:
            where.append("line = ?")
            args.append(line)
        if camera:
            where.append("camera = ?")
            args.append(camera)
        if user:
            # A critical line's real fault needs a *different* second reviewer.
            where.append("(first_user IS NULL OR first_user != ?)")
            args.append(user)
        return " AND ".join(where), args

    def queue_stats(self, line: str | None = None, camera: str | None = None, user: str | None = None) -> QueueStats:
        # The open count per line and camera the database keeps (queue_counts, migration 10), minus this
        # user's own items awaiting a second reviewer (a small index): a filter on first_user would visit
        # every row, and count(*) of every open row grows with the queue.
        where, args = self._queue_where(line, camera, None)
        counted = [(c, v) for c, v in (("line", line), ("camera", camera)) if v]
        count = self.conn.execute("SELECT coalesce(sum(n), 0) FROM queue_counts"
                                  + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in counted) if counted else ""),
                                  [v for _, v in counted]).fetchone()[0]
        if user and count:
            count -= self.conn.execute(f"SELECT count(*) FROM reviews WHERE {where} AND first_user = ?",
                                       [*args, user]).fetchone()[0]
        oldest = self.conn.execute(f"SELECT min(captured_at) FROM reviews WHERE {where}", args).fetchone()[0]
        return QueueStats(count, oldest)

    def next_items(self, user: str | None = None, line: str | None = None, camera: str | None = None,
                   limit: int = 1, offset: int = 0) -> list[sqlite3.Row]:
        where, args = self._queue_where(line, camera, user)
        return self.conn.execute(f"SELECT * FROM reviews WHERE {where} ORDER BY priority DESC, captured_at"
                                 " LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()

    def queue_filters(self) -> tuple[list[str], list[str]]:
        lines = [r[0] for r in self.conn.execute("SELECT DISTINCT line FROM sources ORDER BY line")]
        cams = [r[0] for r in self.conn.execute("SELECT DISTINCT camera FROM sources ORDER BY camera")]
        return lines, cams

    # --------------------------------------------------------------- verdicts
    @staticmethod
    def check_verdict(verdict: str, kind: str) -> None:
        """Raise StoreError naming a verdict or kind that is not one of the wire's."""
        if verdict not in wire.VERDICTS:
            raise StoreError(f"verdict must be one of {wire.VERDICTS}, got {verdict!r}")
        allowed = wire.FAULT_KINDS if verdict == "real_fault" else wire.NOT_DEFECT_KINDS
        if kind and kind not in allowed:
            raise StoreError(f"kind {kind!r} is not one of {allowed} for {verdict}")

    def record_verdict(self, review_id: str, verdict: str, kind: str, user: str, now: float | None = None) -> VerdictOutcome:
        """Record one reviewer's ruling; raise AlreadyDecided when it cannot count."""
        self.check_verdict(verdict, kind)
        now = now or time.time()
        with self.write() as conn:
            row = conn.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
            if row is None:
                raise ReviewNotFound(f"no review with id {review_id!r}")
            if row["state"] == "pending":
                seq = 1
            elif row["state"] == "awaiting_confirm":
                if row["first_user"] == user:
                    raise AlreadyDecided(f"review {review_id} needs a second reviewer other than {user}")
                seq = 2
            else:
                raise AlreadyDecided(f"review {review_id} is already {row['state']}")
            try:
                vid = conn.execute("INSERT INTO verdicts (review_id, verdict, kind, user, station, time, seq)"
                                   " VALUES (?,?,?,?,?,?,?)",
                                   (review_id, verdict, kind, user, self.station, now, seq)).lastrowid
                vid = cast(int, vid)  # an INSERT always gives its row id
            except sqlite3.IntegrityError as exc:
                raise AlreadyDecided(f"review {review_id} already has a verdict") from exc
            final_kind = kind
            if seq == 1:
                critical = conn.execute("SELECT critical FROM lines WHERE name = ?", (row["line"],)).fetchone()
                # Two reviewers: a real fault on a critical line, or anything a routing rule asks two for.
                if (verdict == "real_fault" and critical and critical[0]) or row["reviewers"] == 2:
                    state, counted = "awaiting_confirm", False
                    conn.execute("UPDATE reviews SET state = ?, first_user = ? WHERE id = ?", (state, user, review_id))
                else:
                    state, counted = "done", True
            else:
                first = conn.execute("SELECT verdict, kind FROM verdicts WHERE review_id = ? AND seq = 1 AND undone = 0",
                                     (review_id,)).fetchone()
                counted = first is not None and first["verdict"] == verdict
                state = "done" if counted else "disputed"
                final_kind = kind or (first["kind"] if first else "")
                if not counted:
                    conn.execute("UPDATE reviews SET state = 'disputed', open = 0 WHERE id = ?", (review_id,))
            if counted:
                conn.execute("UPDATE reviews SET state = 'done', open = 0, final_verdict = ?, final_kind = ?,"
                             " final_verdict_id = ?, decided_at = ? WHERE id = ?",
                             (verdict, final_kind, vid, now, review_id))
            self._audit(conn, user, "verdict", review_id,
                        {"verdict": verdict, "kind": kind, "seq": seq, "state": state, "verdict_id": vid}, now)
            message = None
            if counted:
                message = wire.Verdict(review_id=review_id, verdict=cast(wire.VerdictName, verdict), kind=final_kind,
                                       user=user, time=now, station=self.station, line=row["line"],
                                       camera=row["camera"], part_id=row["part_id"])
                self._queue_verdict(conn, message, now)
                self._recall_if_passed(conn, row, verdict, user, now)
        return VerdictOutcome(vid, review_id, state, counted, message)

    def _recall_if_passed(self, conn: sqlite3.Connection, row: sqlite3.Row, verdict: str, user: str,
                          now: float) -> None:
        """A part the line passed, ruled a real fault, has left the line: a recall, until acknowledged."""
        if verdict != "real_fault" or row["action_taken"] != "PASS":
            return
        conn.execute("INSERT OR IGNORE INTO recalls (review_id, part_id, line, camera, captured_at, lot, user, time)"
                     " VALUES (?,?,?,?,?,?,?,?)", (row["id"], row["part_id"], row["line"], row["camera"],
                                                   row["captured_at"], row["lot"], user, now))
        self._audit(conn, user, "recall", row["id"], {"part": row["part_id"], "lot": row["lot"]}, now)

    def recalls(self, include_acked: bool = False) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM recalls" + ("" if include_acked else " WHERE acked_by IS NULL")
                                 + " ORDER BY time DESC LIMIT 200").fetchall()

    def acknowledge_recall(self, review_id: str, user: str, now: float | None = None) -> bool:
        """An engineer has the recall in hand; False if there is no open recall for that review."""
        now = now or time.time()
        with self.write() as conn:
            cur = conn.execute("UPDATE recalls SET acked_by = ?, acked_at = ? WHERE review_id = ? AND acked_by IS NULL",
                               (user, now, review_id))
            if cur.rowcount:
                self._audit(conn, user, "recall-acknowledged", review_id, {}, now)
        return bool(cur.rowcount)

    def rule_dispute(self, review_id: str, verdict: str, kind: str, user: str,
                     now: float | None = None) -> VerdictOutcome:
        """An engineer's ruling on a disputed two-person item: it counts as the item's final verdict (published
        and exported like any other). Raise AlreadyDecided unless the item is disputed."""
        self.check_verdict(verdict, kind)
        now = now or time.time()
        with self.write() as conn:
            row = conn.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
            if row is None:
                raise ReviewNotFound(f"no review with id {review_id!r}")
            if row["state"] != "disputed":
                raise AlreadyDecided(f"review {review_id} is {row['state']}, not disputed: there is nothing to rule")
            vid = cast(int, conn.execute(
                "INSERT INTO verdicts (review_id, verdict, kind, user, station, time, seq) VALUES (?,?,?,?,?,?,3)",
                (review_id, verdict, kind, user, self.station, now)).lastrowid)
            conn.execute("UPDATE reviews SET state = 'done', open = 0, final_verdict = ?, final_kind = ?,"
                         " final_verdict_id = ?, decided_at = ? WHERE id = ?", (verdict, kind, vid, now, review_id))
            self._audit(conn, user, "ruling", review_id, {"verdict": verdict, "kind": kind, "verdict_id": vid}, now)
            message = wire.Verdict(review_id=review_id, verdict=cast(wire.VerdictName, verdict), kind=kind,
                                   user=user, time=now, station=self.station, line=row["line"],
                                   camera=row["camera"], part_id=row["part_id"])
            self._queue_verdict(conn, message, now)
            self._recall_if_passed(conn, row, verdict, user, now)
        return VerdictOutcome(vid, review_id, "done", True, message)

    def second_look(self, reviewer: str, since: float, engineer: str, now: float | None = None) -> list[wire.Verdict]:
        """Send ``reviewer``'s counted first verdicts since ``since`` for a second look: each item waits for a
        different reviewer again, as under the two-person rule (agreeing counts it again, disagreeing makes it
        a dispute for an engineer). Its label is withdrawn meanwhile: the messages (undone) to publish."""
        now = now or time.time()
        messages = []
        with self.write() as conn:
            rows = conn.execute(
                "SELECT r.*, v.id AS vid FROM reviews r JOIN verdicts v ON v.id = r.final_verdict_id"
                " WHERE v.user = ? AND v.seq = 1 AND v.time >= ? AND r.state = 'done'", (reviewer, since)).fetchall()
            for row in rows:
                conn.execute("UPDATE reviews SET state = 'awaiting_confirm', open = 1, first_user = ?,"
                             " final_verdict = NULL, final_kind = NULL, final_verdict_id = NULL, decided_at = NULL"
                             " WHERE id = ?", (reviewer, row["id"]))
                message = wire.Verdict(review_id=row["id"], verdict=row["final_verdict"], kind=row["final_kind"] or "",
                                       user=engineer, time=now, station=self.station, line=row["line"],
                                       camera=row["camera"], part_id=row["part_id"], undone=True)
                self._queue_verdict(conn, message, now)
                messages.append(message)
            self._audit(conn, engineer, "second-look", f"user:{reviewer}", {"since": since, "items": len(rows)}, now)
        return messages

    def undo_last(self, user: str, window_s: float = 10.0, now: float | None = None) -> UndoOutcome:
        """Undo this user's most recent live verdict if it is younger than window_s."""
        now = now or time.time()
        with self.write() as conn:
            v = conn.execute("SELECT * FROM verdicts WHERE user = ? ORDER BY id DESC LIMIT 1", (user,)).fetchone()
            if v is None or v["undone"]:
                raise UndoRefused(f"{user} has no verdict to undo")
            if now - v["time"] > window_s:
                raise UndoRefused(f"the last verdict of {user} is older than {window_s:g} s and can no longer be undone")
            row = conn.execute("SELECT * FROM reviews WHERE id = ?", (v["review_id"],)).fetchone()
            if v["seq"] == 1 and conn.execute("SELECT 1 FROM verdicts WHERE review_id = ? AND seq = 2 AND undone = 0",
                                              (v["review_id"],)).fetchone():
                raise UndoRefused("a second reviewer has already ruled on this item")
            had_counted = row["final_verdict_id"] is not None
            conn.execute("UPDATE verdicts SET undone = 1, undone_at = ? WHERE id = ?", (now, v["id"]))
            if v["seq"] == 1:
                conn.execute("UPDATE reviews SET state = 'pending', open = 1, first_user = NULL, final_verdict = NULL,"
                             " final_kind = NULL, final_verdict_id = NULL, decided_at = NULL WHERE id = ?", (row["id"],))
            elif v["seq"] == 3:  # an engineer's ruling on a dispute: disputed again
                conn.execute("UPDATE reviews SET state = 'disputed', open = 0, final_verdict = NULL,"
                             " final_kind = NULL, final_verdict_id = NULL, decided_at = NULL WHERE id = ?", (row["id"],))
            else:
                conn.execute("UPDATE reviews SET state = 'awaiting_confirm', open = 1, final_verdict = NULL,"
                             " final_kind = NULL, final_verdict_id = NULL, decided_at = NULL WHERE id = ?", (row["id"],))
            self._audit(conn, user, "undo", row["id"], {"verdict_id": v["id"], "verdict": v["verdict"]}, now)
            message = None
            if had_counted:
                message = wire.Verdict(review_id=row["id"], verdict=row["final_verdict"], kind=row["final_kind"] or "",
                                       user=user, time=now, station=self.station, line=row["line"],
                                       camera=row["camera"], part_id=row["part_id"], undone=True)
                self._queue_verdict(conn, message, now)
        return UndoOutcome(v["id"], row["id"], message)

    def _queue_verdict(self, conn: sqlite3.Connection, message: wire.Verdict, now: float) -> None:
        """Keep ``message`` for the ingest to publish, in the verdict's own transaction (none when MQTT is off)."""
        if self.queue_verdicts:
            conn.execute("INSERT INTO verdict_outbox (line, payload, created) VALUES (?,?,?)",
                         (message.line, message.encode().decode(), now))

    def unsent_verdicts(self, limit: int = 1000) -> list[sqlite3.Row]:
        """Verdict messages not yet acknowledged by the broker, oldest first."""
        return self.conn.execute("SELECT id, line, payload FROM verdict_outbox ORDER BY id LIMIT ?", (limit,)).fetchall()

    def verdicts_sent(self, ids: list[int]) -> None:
        """The broker has these verdict messages (PUBACK): forget them."""
        if ids:
            with self.write() as conn:
                conn.executemany("DELETE FROM verdict_outbox WHERE id = ?", [(i,) for i in ids])

    def live_verdicts(self, review_id: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM verdicts WHERE review_id = ? AND undone = 0 ORDER BY seq",
                                 (review_id,)).fetchall()

    # ------------------------------------------------------------------ alarms
    def acknowledge_alarm(self, source: str, name: str, message: str, user: str) -> None:
        """An engineer has seen the active alarm ``name`` of ``source`` (an edge "line/camera" or "station")."""
        with self.write() as conn:
            conn.execute("INSERT INTO alarm_acks (source, name, message, user, time) VALUES (?,?,?,?,?)"
                         " ON CONFLICT(source, name) DO UPDATE SET message = excluded.message, user = excluded.user,"
                         " time = excluded.time", (source, name, message, user, time.time()))
            self._audit(conn, user, "alarm-acknowledged", f"{source}:{name}", {"message": message[:500]})

    def alarm_acks(self) -> dict[tuple[str, str], sqlite3.Row]:
        return {(r["source"], r["name"]): r for r in self.conn.execute("SELECT * FROM alarm_acks")}

    # ------------------------------------------------------------------ lines
    def set_line_critical(self, line: str, critical: bool, user: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO lines (name, critical) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET"
                         " critical = excluded.critical", (line, int(critical)))
            self._audit(conn, user, "setting", f"line:{line}", {"critical": bool(critical)})

    def set_line_mode(self, line: str, mode: str, hold_time_s: float, fallback: str, user: str,
                      now: float | None = None, lot: str = "") -> wire.LineSettings:
        """An engineer sets how a line uses its people (and the lot it runs); audited. Returns the settings to
        send to its edges."""
        now = now or time.time()
        try:
            scale = self.conn.execute("SELECT band_scale FROM lines WHERE name = ?", (line,)).fetchone()
            settings = wire.LineSettings(line=line, mode=mode, hold_time_s=float(hold_time_s),  # type: ignore[arg-type]
                                         fallback=fallback, user=user, time=now, lot=lot.strip()[:100],  # type: ignore[arg-type]
                                         band_scale=float(scale[0]) if scale else 1.0)
            settings = wire.LineSettings.decode(settings.encode())  # the wire's own checks, naming the field
        except (ValueError, TypeError, wire.WireError) as exc:
            raise StoreError(f"line {line!r}: {exc}") from exc
        with self.write() as conn:
            conn.execute("INSERT INTO lines (name, mode, hold_time_s, fallback, mode_set_by, mode_set_at, lot)"
                         " VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET mode = excluded.mode,"
                         " hold_time_s = excluded.hold_time_s, fallback = excluded.fallback,"
                         " mode_set_by = excluded.mode_set_by, mode_set_at = excluded.mode_set_at, lot = excluded.lot",
                         (line, settings.mode, settings.hold_time_s, settings.fallback, user, now, settings.lot))
            self._audit(conn, user, "setting", f"line:{line}", {"mode": settings.mode,
                                                                "hold_time_s": settings.hold_time_s,
                                                                "fallback": settings.fallback, "lot": settings.lot}, now)
        return settings

    def band_scale(self) -> float:
        """The review band's width this station last asked of its lines (1.0: as calibrated)."""
        r = self.conn.execute("SELECT scale FROM band_log ORDER BY id DESC LIMIT 1").fetchone()
        return float(r[0]) if r else 1.0

    def set_band_scale(self, scale: float, reason: str, demand_per_h: float, queue: int, capacity_per_h: float,
                       now: float | None = None) -> list[wire.LineSettings]:
        """The band's new width for every line this station has seen, logged with its cause; the settings to send."""
        now = now or time.time()
        with self.write() as conn:
            conn.execute("INSERT INTO band_log (time, scale, demand_per_h, queue, capacity_per_h, reason)"
                         " VALUES (?,?,?,?,?,?)", (now, scale, demand_per_h, queue, capacity_per_h, reason))
            for (line,) in conn.execute("SELECT DISTINCT line FROM sources").fetchall():
                conn.execute("INSERT INTO lines (name, band_scale) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET"
                             " band_scale = excluded.band_scale", (line, scale))
        return [s for s in self.line_settings(include_unset=True)]

    def band_moves(self, since: float = 0.0) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM band_log WHERE time >= ? ORDER BY id", (since,)).fetchall()

    def line_mode(self, line: str) -> tuple[str, float, str]:
        """(mode, hold time, fallback) of one line; the defaults when no engineer has set them."""
        r = self.conn.execute("SELECT mode, hold_time_s, fallback FROM lines WHERE name = ?", (line,)).fetchone()
        return (r["mode"], r["hold_time_s"], r["fallback"]) if r else ("in-the-loop", 60.0, "REJECT")

    def line_settings(self, include_unset: bool = False) -> list[wire.LineSettings]:
        """Every line an engineer has set a mode for, or whose band the station's capacity moved (what the
        edges are sent, retained); ``include_unset``: every line with a row."""
        where = "" if include_unset else " WHERE mode_set_at > 0 OR band_scale != 1.0"
        return [wire.LineSettings(line=r["name"], mode=r["mode"], hold_time_s=r["hold_time_s"], fallback=r["fallback"],
                                  user=r["mode_set_by"], time=r["mode_set_at"], lot=r["lot"], band_scale=r["band_scale"])
                for r in self.conn.execute(f"SELECT * FROM lines{where} ORDER BY name")]

    def lines(self) -> list[sqlite3.Row]:
        """Every line seen or configured, with its two-person rule and operating mode (defaults where unset)."""
        return self.conn.execute(
            "SELECT l.name, coalesce(c.critical, 0) AS critical, coalesce(c.mode, 'in-the-loop') AS mode,"
            " coalesce(c.hold_time_s, 60) AS hold_time_s, coalesce(c.fallback, 'REJECT') AS fallback,"
            " coalesce(c.mode_set_by, '') AS mode_set_by, coalesce(c.lot, '') AS lot FROM"
            " (SELECT DISTINCT line AS name FROM sources UNION SELECT name FROM lines) l"
            " LEFT JOIN lines c ON c.name = l.name ORDER BY l.name").fetchall()

    # ----------------------------------------------------------------- export
    def export(self, since: int = 0, limit: int = 100) -> tuple[list[sqlite3.Row], int]:
        """Labelled reviews whose final verdict id is after the cursor, oldest first."""
        rows = self.conn.execute(
            "SELECT r.*, v.user AS verdict_user, v.time AS verdict_time, v.station AS verdict_station"
            " FROM reviews r JOIN verdicts v ON v.id = r.final_verdict_id"
            " WHERE r.final_verdict_id > ? ORDER BY r.final_verdict_id LIMIT ?", (since, limit)).fetchall()
        return rows, (rows[-1]["final_verdict_id"] if rows else since)

    # ------------------------------------------------------------ edge status
    def upsert_trainer_status(self, topic: str, status: wire.TrainStatus) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO trainer_status (topic, payload, updated_at) VALUES (?,?,?) ON CONFLICT(topic)"
                         " DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
                         (topic, status.encode().decode(), time.time()))

    def upsert_edge_status(self, line: str, camera: str, status: wire.EdgeStatus, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.write() as conn:
            conn.execute("INSERT INTO edge_status (line, camera, state, model, payload, updated_at) VALUES (?,?,?,?,?,?)"
                         " ON CONFLICT(line, camera) DO UPDATE SET state = excluded.state, model = excluded.model,"
                         " payload = excluded.payload, updated_at = excluded.updated_at",
                         (line, camera, status.state, status.model, status.encode().decode(), now))
            self._sample_models(conn, line, camera, status, now)

    def _sample_models(self, conn: sqlite3.Connection, line: str, camera: str, status: wire.EdgeStatus,
                       now: float) -> None:
        """Keep the edge's per-model counts every SAMPLE_EVERY_S (and its last before it stops)."""
        if not status.by_model:
            return
        last = conn.execute("SELECT max(time) FROM model_samples WHERE line = ? AND camera = ? AND since = ?",
                            (line, camera, status.since)).fetchone()[0]
        if last is not None and now - last < SAMPLE_EVERY_S and status.state == "running":
            return
        conn.executemany(
            "INSERT OR REPLACE INTO model_samples (line, camera, since, time, model, parts, pass, hold, reject,"
            " uncertain) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(line, camera, status.since, now, model, c.parts, c.actions.get("PASS", 0), c.actions.get("HOLD", 0),
              c.actions.get("REJECT", 0), c.reviews.get("uncertain", 0)) for model, c in status.by_model.items()])
