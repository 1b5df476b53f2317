"""Known-answer items: settled reviews served again to a reviewer, to measure the reviewer.

A review is *settled* when its counted verdict was given by an engineer or an admin, or was
the agreeing second verdict of the two-person rule. At ``[review].known_answer_rate`` of the
items a reviewer is shown (only while live items wait, so the queue never shows an item it
does not count), one of the recent settled reviews the reviewer has never judged is served
again under a fresh id, exactly as a live item is drawn: the same template and fields, the
score drawn inside its review band (station_ui.present.draw_in_band, as an audit's is), the
capture time of the live item it stands before. It stays the reviewer's next item until it
is answered (a reload shows it again), counts in their queue, and can be undone like a
verdict.

The answer is kept here only: it never becomes a verdict, so it never reaches a line, the
verdict topic, the export or the training set. What it measures, per reviewer
(``figures``): accuracy on known answers, and how often they followed the model's lean
(the side of the band the shown score lies on) where that lean was wrong -- the shown score
is drawn at random, so following it is automation bias, not judgement.
"""
from __future__ import annotations

import functools
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from sqlite3 import Row
from typing import Any

from station_ui import present
from station_ui.store import Store

#: How many of the most recent settled reviews a known answer is drawn from.
SOURCE_POOL = 200
#: Whether to serve a known answer, and which: one generator for the station (a test may seed its own).
DRAWS = random.Random()


#: A gap between two verdicts of one reviewer longer than this is a break, not the time one item took.
PACE_BREAK_S = 120.0


@dataclass(frozen=True)
class ReviewerFigures:
    user: str
    answered: int
    correct: int
    wrong_lean: int  # answered items whose shown lean was wrong ...
    followed_wrong_lean: int  # ... and the reviewer followed it
    flagged: bool
    verdicts: int = 0  # live verdicts in the window
    median_s: float | None = None  # seconds per verdict while working (gaps under PACE_BREAK_S)
    by_day: tuple[tuple[str, int, int], ...] = ()  # (day, known answers, right): drift over time
    by_shift_hour: tuple[tuple[int, int, int], ...] = ()  # (hour of the shift from 1, answered, right)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None

    @property
    def automation_bias(self) -> float | None:
        return self.followed_wrong_lean / self.wrong_lean if self.wrong_lean else None


def is_known_answer(db: Store, item_id: str) -> bool:
    return db.conn.execute("SELECT 1 FROM known_answers WHERE id = ?", (item_id,)).fetchone() is not None


def pending(db: Store, user: str) -> sqlite3.Row | None:
    """The known answer served to ``user`` and not answered yet (their next item), if any."""
    return db.conn.execute("SELECT * FROM known_answers WHERE user = ? AND answered_at IS NULL "
                           "ORDER BY served_at DESC LIMIT 1", (user,)).fetchone()


def maybe_serve(db: Store, user: str, live_head: Row | None, rate: float,
                line: str | None = None, camera: str | None = None, rng: random.Random | None = None,
                now: float | None = None) -> sqlite3.Row | None:
    """With probability ``rate``, and only while a live item waits, serve ``user`` a known answer."""
    rng = rng or DRAWS
    if rate <= 0 or live_head is None or rng.random() >= rate:
        return None
    source = _pick_source(db, user, line, camera, rng)
    if source is None:
        return None
    now = time.time() if now is None else now
    ka_id = str(uuid.uuid4())
    thresholds = present.thresholds_of(source)
    shown = present.draw_in_band(ka_id, thresholds)
    lo, hi = present.band_of(thresholds)
    lean = "real_fault" if shown is not None and lo is not None and hi is not None and shown >= (lo + hi) / 2 \
        else "not_defect"
    with db.write() as conn:
        conn.execute("INSERT INTO known_answers (id, source_id, user, served_at, shown_at, truth, truth_kind, lean)"
                     " VALUES (?,?,?,?,?,?,?,?)",
                     (ka_id, source["id"], user, now, float(live_head["captured_at"]) - 1.0,
                      source["final_verdict"], source["final_kind"] or "", lean))
    return pending(db, user)


def _pick_source(db: Store, user: str, line: str | None, camera: str | None,
                 rng: random.Random) -> sqlite3.Row | None:
    where, args = ["r.final_verdict_id IS NOT NULL", "r.state = 'done'",
                   "(u.role IN ('engineer', 'admin') OR v.seq = 2)"], []
    if line:
        where.append("r.line = ?")
        args.append(line)
    if camera:
        where.append("r.camera = ?")
        args.append(camera)
    rows = db.conn.execute(
        "SELECT r.* FROM reviews r JOIN verdicts v ON v.id = r.final_verdict_id JOIN users u ON u.name = v.user"
        f" WHERE {' AND '.join(where)} ORDER BY r.final_verdict_id DESC LIMIT ?", [*args, SOURCE_POOL]).fetchall()
    ids = [r["id"] for r in rows]
    marks = ",".join("?" * len(ids))
    judged = {r[0] for r in db.conn.execute(
        f"SELECT review_id FROM verdicts WHERE user = ? AND review_id IN ({marks}) UNION "
        f"SELECT source_id FROM known_answers WHERE user = ? AND source_id IN ({marks})",
        [user, *ids, user, *ids])} if ids else set()
    fresh = [r for r in rows if r["id"] not in judged]
    return rng.choice(fresh) if fresh else None


def as_review(db: Store, ka: Row) -> dict[str, Any]:
    """The known answer as the review screen's row: the source's fields, its own id, time and score."""
    source = db.get_review(ka["source_id"])
    row = {k: source[k] for k in source.keys()}
    row.update(id=ka["id"], captured_at=ka["shown_at"], reason="uncertain", detail="", state="pending",
               score=present.draw_in_band(ka["id"], present.thresholds_of(source)))
    return row


def source_of(db: Store, item_id: str) -> str | None:
    """The settled review a known answer shows, or None when ``item_id`` is not a known answer."""
    row = db.conn.execute("SELECT source_id FROM known_answers WHERE id = ?", (item_id,)).fetchone()
    return None if row is None else row[0]


def image_path(db: Store, item_id: str) -> str | None:
    row = db.conn.execute("SELECT r.image_path FROM known_answers k JOIN reviews r ON r.id = k.source_id "
                          "WHERE k.id = ?", (item_id,)).fetchone()
    return None if row is None else row[0]


def answer(db: Store, item_id: str, user: str, verdict: str, kind: str, now: float | None = None) -> bool:
    """Record ``user``'s answer to their pending known answer ``item_id``; False if it is not one."""
    now = time.time() if now is None else now
    with db.write() as conn:
        ka = conn.execute("SELECT * FROM known_answers WHERE id = ? AND user = ? AND answered_at IS NULL",
                          (item_id, user)).fetchone()
        if ka is None:
            return False
        conn.execute("UPDATE known_answers SET verdict = ?, kind = ?, answered_at = ? WHERE id = ?",
                     (verdict, kind, now, item_id))
        db._audit(conn, user, "known-answer", item_id, {"source": ka["source_id"], "verdict": verdict,
                                                         "correct": verdict == ka["truth"]}, now)
    return True


def undo_if_last(db: Store, user: str, window_s: float, now: float | None = None) -> str | None:
    """Undo ``user``'s last known answer when it is their last ruling and within the window; its id, or None."""
    now = time.time() if now is None else now
    last = db.conn.execute("SELECT * FROM known_answers WHERE user = ? AND answered_at IS NOT NULL "
                           "ORDER BY answered_at DESC LIMIT 1", (user,)).fetchone()
    if last is None or now - last["answered_at"] > window_s:
        return None
    verdict = db.conn.execute("SELECT time FROM verdicts WHERE user = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
                              (user,)).fetchone()
    if verdict is not None and verdict["time"] > last["answered_at"]:
        return None  # a live verdict came after it: that is what undo takes back
    with db.write() as conn:
        # One known answer waits per reviewer: one served since (not answered, so nothing is lost) gives way.
        conn.execute("DELETE FROM known_answers WHERE user = ? AND answered_at IS NULL", (user,))
        conn.execute("UPDATE known_answers SET verdict = NULL, kind = NULL, answered_at = NULL WHERE id = ?",
                     (last["id"],))
        db._audit(conn, user, "undo", last["id"], {"known_answer": True}, now)
    return last["id"]


def figures(db: Store, min_accuracy: float, min_answers: int, since: float = 0.0) -> list[ReviewerFigures]:
    """Per reviewer since ``since``: accuracy on known answers, following a wrong lean, pace, and drift --
    per day, and per hour of the shift (from the reviewer's first ruling of that day)."""
    answers: dict[str, list[sqlite3.Row]] = {}
    for r in db.conn.execute("SELECT user, verdict, truth, lean, answered_at FROM known_answers"
                             " WHERE answered_at IS NOT NULL AND answered_at >= ? ORDER BY answered_at", (since,)):
        answers.setdefault(r["user"], []).append(r)
    times: dict[str, list[float]] = {}
    for user, t in db.conn.execute("SELECT user, time FROM verdicts WHERE undone = 0 AND time >= ? ORDER BY time",
                                   (since,)):
        times.setdefault(user, []).append(t)
    out = []
    for user in sorted(set(answers) | set(times)):
        rows = answers.get(user, [])
        answered = len(rows)
        correct = sum(r["verdict"] == r["truth"] for r in rows)
        wrong_lean = [r for r in rows if r["lean"] != r["truth"]]
        ruled = sorted(times.get(user, []) + [r["answered_at"] for r in rows])
        gaps = [b - a for a, b in zip(ruled, ruled[1:]) if b - a < PACE_BREAK_S]
        out.append(ReviewerFigures(
            user, answered, correct, len(wrong_lean), sum(r["verdict"] == r["lean"] for r in wrong_lean),
            flagged=answered >= min_answers and correct / answered < min_accuracy,
            verdicts=len(times.get(user, [])), median_s=statistics.median(gaps) if gaps else None,
            by_day=_tally(rows, lambda r: time.strftime("%Y-%m-%d", time.localtime(r["answered_at"]))),
            by_shift_hour=_tally(rows, functools.partial(_shift_hour_of, ruled=ruled))))
    return out


def _shift_hour_of(row: sqlite3.Row, ruled: list[float]) -> int:
    return _shift_hour(row["answered_at"], ruled)


def _shift_hour(t: float, ruled: list[float]) -> int:
    """Hour of the shift (1, 2, ...) of time ``t``: from the reviewer's first ruling that day."""
    day = time.strftime("%Y-%m-%d", time.localtime(t))
    start = next(x for x in ruled if time.strftime("%Y-%m-%d", time.localtime(x)) == day)
    return int((t - start) // 3600) + 1


def _tally(rows: list[sqlite3.Row], key: Callable[[sqlite3.Row], Any]) -> tuple:
    groups: dict[Any, list[int]] = {}
    for r in rows:
        g = groups.setdefault(key(r), [0, 0])
        g[0] += 1
        g[1] += r["verdict"] == r["truth"]
    return tuple((k, n, right) for k, (n, right) in sorted(groups.items()))
