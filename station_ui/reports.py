"""Read-only queries behind the dashboard and the history search.

Escape rate is estimated from audit items: confident PASS decisions sampled at
random and reviewed blind, so the share of them ruled "real fault" estimates how
many defects the model lets through. Likewise audited REJECTs ruled "not a
defect" estimate the false-reject rate.
"""
from __future__ import annotations

import json
import time
from typing import Any

from qcloop import wire
from qcloop.errors import WireError
from qcloop.versions import version_key
from station_ui import present
from station_ui.store import Store


def summary(db: Store, since: float) -> dict[str, Any]:
    c = db.conn
    q = db.queue_stats()
    out: dict[str, Any] = {"queue": q.count, "oldest_age_s": q.oldest_age_s()}
    out["received"] = c.execute("SELECT count(*) FROM reviews WHERE captured_at >= ?", (since,)).fetchone()[0]
    out["decided"] = c.execute("SELECT count(*) FROM reviews WHERE decided_at >= ?", (since,)).fetchone()[0]
    out["per_reviewer"] = [(r[0], r[1]) for r in c.execute(
        "SELECT user, count(*) FROM verdicts WHERE undone = 0 AND time >= ? GROUP BY user ORDER BY 2 DESC",
        (since,))]
    out["verdict_mix"] = [(present.verdict_words(r[0], r[1], "done"), r[2]) for r in c.execute(
        "SELECT final_verdict, final_kind, count(*) FROM reviews WHERE decided_at >= ? GROUP BY 1, 2 ORDER BY 3 DESC",
        (since,))]
    pairs = c.execute(
        "SELECT sum(a.verdict = b.verdict), count(*) FROM verdicts a JOIN verdicts b ON a.review_id = b.review_id"
        " AND a.seq = 1 AND b.seq = 2 AND a.undone = 0 AND b.undone = 0 WHERE b.time >= ?", (since,)).fetchone()
    out["agreement"] = {"agree": pairs[0] or 0, "pairs": pairs[1] or 0,
                        "share": (pairs[0] or 0) / pairs[1] if pairs[1] else None}
    faults, passes = _all_models(_audited(db, "PASS", since))
    false, rejects = _all_models(_audited(db, "REJECT", since))
    out["escape"] = {"faults": faults, "audited": passes, "rate": faults / passes if passes else None}
    out["false_reject"] = {"false": false, "audited": rejects, "rate": false / rejects if rejects else None}
    out["disputed"] = c.execute("SELECT * FROM reviews WHERE state = 'disputed' ORDER BY captured_at DESC LIMIT 50").fetchall()
    hours = {}
    for r in c.execute("SELECT CAST(decided_at / 3600 AS INTEGER) h, count(*) FROM reviews WHERE decided_at >= ?"
                       " GROUP BY h", (since,)):
        hours[r[0]] = r[1]
    now_h = int(time.time() // 3600)
    first_h = int(since // 3600)
    out["per_hour"] = [(time.strftime("%H:00", time.localtime(h * 3600)), hours.get(h, 0))
                       for h in range(max(first_h, now_h - 47), now_h + 1)]
    return out


def edges(db: Store) -> list[dict[str, Any]]:
    """Per line/camera: the edge's own counters and model (from status) and the latest reviewed model."""
    rows = {(r["line"], r["camera"]): dict(r) for r in db.conn.execute("SELECT * FROM edge_status")}
    for r in db.conn.execute("SELECT line, camera, model, max(captured_at) t FROM reviews GROUP BY line, camera"):
        rows.setdefault((r["line"], r["camera"]), {"line": r["line"], "camera": r["camera"], "state": "-",
                                                  "model": r["model"], "payload": None, "updated_at": None})
    out = []
    for (line, cam), r in sorted(rows.items()):
        s = _stored_status(r["payload"])
        parts = s.parts if s else 0
        out.append({"line": line, "camera": cam, "state": r["state"], "model": r["model"] or "-", "parts": parts,
                    "reject_rate": _per_part(s.actions.get("REJECT", 0), parts) if s else None,
                    "hold_rate": _per_part(s.actions.get("HOLD", 0), parts) if s else None,
                    "review_rate": _per_part(s.reviews_queued, parts) if s else None,
                    "shadow": _shadow_words(s.shadow) if s and s.shadow else "-",
                    "mode": present.mode_words(s.mode, *db.line_mode(line)[1:]) if s and s.mode else "-",
                    "held": s.held if s else None, "fallbacks": s.holds.get("fallback", 0) if s else 0,
                    "updated_at": r.get("updated_at")})
    return out


def _shadow_words(c: wire.ShadowCounts) -> str:
    """A shadow candidate's agreement with the live model, as the Edges table shows it."""
    agree = f"{c.agree / c.parts:.1%} agree" if c.parts else "no parts yet"
    return f"{c.version}: {agree} on {c.parts} parts" + (f", {c.skipped} skipped" if c.skipped else "")


def _stored_status(payload: str | None) -> wire.EdgeStatus | None:
    """An edge status as the ingest stored it (validated then); None when absent or unreadable."""
    if not payload:
        return None
    try:
        return wire.EdgeStatus.decode(payload)
    except WireError:
        return None


def _per_part(count: int, parts: int) -> float | None:
    """``count`` as a share of ``parts`` (None before the first part)."""
    return count / parts if parts else None


#: Rows on one history page.
HISTORY_PAGE = 100


def history(db: Store, *, part_id: str = "", verdict: str = "", user: str = "", t0: float | None = None,
            t1: float | None = None, limit: int = HISTORY_PAGE, offset: int = 0) -> tuple[list[Any], int]:
    """One page of matching reviews, newest first, and how many match in all."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if part_id:
        where.append("r.part_id LIKE ?")
        args.append(part_id.replace("%", "") + "%")
    if verdict:
        where.append("r.final_verdict = ?" if verdict != "open" else "r.open = 1")
        if verdict != "open":
            args.append(verdict)
    if user:
        where.append("EXISTS (SELECT 1 FROM verdicts v WHERE v.review_id = r.id AND v.user = ?)")
        args.append(user)
    if t0 is not None:
        where.append("r.captured_at >= ?")
        args.append(t0)
    if t1 is not None:
        where.append("r.captured_at < ?")
        args.append(t1)
    clause = " AND ".join(where)
    total = db.conn.execute(f"SELECT COUNT(*) FROM reviews r WHERE {clause}", args).fetchone()[0]
    rows = db.conn.execute(
        "SELECT r.*, (SELECT group_concat(v.user, ', ') FROM verdicts v WHERE v.review_id = r.id AND v.undone = 0)"
        f" AS reviewers FROM reviews r WHERE {clause} ORDER BY r.captured_at DESC LIMIT ? OFFSET ?",
        [*args, limit, offset]).fetchall()
    return rows, total


def record(db: Store, review_id: str) -> dict[str, Any]:
    row = db.get_review(review_id)
    verdicts = db.conn.execute("SELECT * FROM verdicts WHERE review_id = ? ORDER BY id", (review_id,)).fetchall()
    audit = db.conn.execute("SELECT * FROM audit_log WHERE target = ? ORDER BY id", (review_id,)).fetchall()
    return {"review": row, "thresholds": json.loads(row["thresholds"]), "quality": json.loads(row["quality"]),
            "verdicts": verdicts, "audit": audit}


def models(db: Store) -> list[dict[str, Any]]:
    """Per model version: parts, review and reject rates (from the edges' status, summed over edges),
    a false-reject estimate from that model's audited REJECTs (share ruled "not a defect") and an
    escape estimate from its audited PASSes (share ruled "real fault"), both as shares of all parts."""
    totals: dict[str, dict[str, Any]] = {}
    for r in db.conn.execute("SELECT payload FROM edge_status"):
        status = _stored_status(r["payload"])
        for version, counts in (status.by_model if status else {}).items():
            t = totals.setdefault(version, {"parts": 0, "reject": 0, "hold": 0, "pass": 0, "uncertain": 0})
            t["parts"] += counts.parts
            t["reject"] += counts.actions.get("REJECT", 0)
            t["pass"] += counts.actions.get("PASS", 0)
            t["hold"] += counts.actions.get("HOLD", 0)
            t["uncertain"] += counts.reviews.get("uncertain", 0)
    audits, pass_audits = _audited(db, "REJECT"), _audited(db, "PASS")
    out = []
    for version, t in sorted(totals.items(), key=lambda kv: version_key(kv[0])):
        parts = t["parts"]
        reject_rate = t["reject"] / parts if parts else None
        pass_rate = t["pass"] / parts if parts else None
        wrong, audited = audits.get(version, (0, 0))
        escaped, audited_passes = pass_audits.get(version, (0, 0))
        out.append({"model": version, "parts": parts, "review_rate": t["uncertain"] / parts if parts else None,
                    "reject_rate": reject_rate, "audited_rejects": audited,
                    "false_reject_rate": (reject_rate * wrong / audited) if audited and reject_rate is not None
                    else None, "audited_passes": audited_passes,
                    "escape_rate": (pass_rate * escaped / audited_passes) if audited_passes and pass_rate is not None
                    else None})
    return out


#: The verdict that says an audited confident action was wrong: a PASSed defect, a REJECTed good part.
_WRONG = {"PASS": "real_fault", "REJECT": "not_defect"}


def _audited(db: Store, action: str, since: float = float("-inf")) -> dict[str, tuple[int, int]]:
    """Per model: (audits of ``action`` ruled wrong, audits of ``action`` ruled), of parts captured since ``since``."""
    return {r[0]: (r[1] or 0, r[2]) for r in db.conn.execute(
        "SELECT model, sum(final_verdict = ?), count(*) FROM reviews WHERE reason = 'audit' AND action_taken = ?"
        " AND final_verdict IS NOT NULL AND captured_at >= ? GROUP BY model", (_WRONG[action], action, since))}


def _all_models(per_model: dict[str, tuple[int, int]]) -> tuple[int, int]:
    return sum(wrong for wrong, _ in per_model.values()), sum(n for _, n in per_model.values())


_LINE_RATES = (("false_reject_rate", "False rejects"), ("escape_rate", "Escapes"), ("review_rate", "Review"))


def trainer(db: Store) -> dict[str, Any] | None:
    """The retraining server's last status for the dashboard: its state, the last run's gate decision
    (the paired comparison on the line's parts, with intervals) and the candidate's calibration.

    The ingest stored only statuses that decoded (wire.TrainStatus); one that no longer does shows as none.
    """
    row = db.conn.execute("SELECT payload, updated_at FROM trainer_status ORDER BY updated_at DESC LIMIT 1").fetchone()
    if row is None:
        return None
    try:
        p = wire.TrainStatus.decode(row["payload"] or "{}")
    except WireError:
        return None
    last = p.last
    gate = last.gate if last else None
    line = gate.line if gate else None
    cal = last.calibration if last else None
    comparison = []
    if line is not None:
        for key, label in _LINE_RATES:
            d = line.delta.get(key)
            comparison.append({"rate": label, "candidate": getattr(line.candidate, key),
                               "current": getattr(line.current, key), "difference": d.value if d else None,
                               "low": d.low if d else None, "high": d.high if d else None})
    return {
        "state": p.state, "current": p.current or "", "updated_at": row["updated_at"],
        "product": p.product, "lines": list(p.lines),
        "runs": p.runs, "verdicts_since_last": p.verdicts_since_last,
        "last": None if last is None else {
            "version": last.version, "ok": last.ok, "promoted": last.promoted, "error": last.error,
            "reason": gate.reason if gate else "", "run_reason": last.reason, "finished": last.finished,
            "rule": gate.rule_text if gate else "", "line_images": line.images if line else None,
            "interval": line.interval if line else None, "comparison": comparison,
            "calibration": None if cal is None else {
                "confidence": cal.confidence, "escape_budget": cal.escape_budget,
                "escape_rate_upper": cal.escape_rate_upper, "escape_certified": cal.certified.get("escape") is True,
                "defects_to_certify": cal.defects_to_certify, "note": cal.note},
        },
    }


def alarms(db: Store, station_alarms: dict[str, str]) -> list[dict[str, Any]]:
    """Every active alarm, the station's and each edge's (from its last status), with its acknowledgement:
    one an engineer acknowledged stays listed, marked; an acknowledgement of an alarm that has since
    cleared or changed its message no longer counts."""
    active: list[tuple[str, str, str]] = [("station", n, m) for n, m in sorted(station_alarms.items())]
    for r in db.conn.execute("SELECT line, camera, state, payload FROM edge_status ORDER BY line, camera"):
        status = _stored_status(r["payload"])
        if status is not None and r["state"] not in ("offline", "stopped"):
            active += [(f"{r['line']}/{r['camera']}", n, m) for n, m in sorted(status.alarms.items())]
    acks = db.alarm_acks()
    out = []
    for source, name, message in active:
        ack = acks.get((source, name))
        if ack is not None and ack["message"] != message:
            ack = None  # acknowledged as it was; it has changed since
        out.append({"source": source, "name": name, "message": message,
                    "acked_by": ack["user"] if ack else None, "acked_at": ack["time"] if ack else None})
    return out


def model_rates_over_time(db: Store, since: float, bucket_s: float) -> dict[str, list[dict[str, Any]]]:
    """Per model version, per time bucket since ``since``: parts, review share, and the false-reject and
    escape rates estimated from that bucket's audits (as ``models`` does for all time). The parts of a
    bucket are the growth of each edge's counts between its samples (store.SAMPLE_EVERY_S)."""
    grown: dict[tuple[str, float], dict[str, int]] = {}
    previous: dict[tuple, Any] = {}
    rows = db.conn.execute("SELECT * FROM model_samples WHERE time >= ? ORDER BY line, camera, since, model, time",
                           (since - SAMPLE_WINDOW_S,)).fetchall()
    first_of_edge: dict[tuple, float] = {}
    for r in rows:
        edge = (r["line"], r["camera"], r["since"])
        first_of_edge[edge] = min(first_of_edge.get(edge, r["time"]), r["time"])
    zero = {"parts": 0, "pass": 0, "reject": 0, "uncertain": 0}
    for r in rows:
        edge = (r["line"], r["camera"], r["since"])
        series = edge + (r["model"],)
        before = previous.get(series)
        previous[series] = r
        if before is None:
            # A model first seen after the edge's earlier samples, or on an edge started in the window,
            # counted from 0; else this sample is only the baseline of an edge that started before the window.
            if first_of_edge[edge] < r["time"] or r["since"] >= since:
                before = zero
            else:
                continue
        if r["time"] < since:
            continue
        b = grown.setdefault((r["model"], since + (r["time"] - since) // bucket_s * bucket_s), dict(zero))
        for k in b:
            b[k] += r[k] - before[k]
    audits: dict[tuple[Any, ...], tuple[int, int]] = {}
    for r in db.conn.execute(
            "SELECT model, action_taken, captured_at, final_verdict FROM reviews WHERE reason = 'audit'"
            " AND action_taken IN ('PASS', 'REJECT') AND final_verdict IS NOT NULL AND captured_at >= ?", (since,)):
        at = (r["model"], since + (r["captured_at"] - since) // bucket_s * bucket_s, r["action_taken"])
        wrong, n = audits.get(at, (0, 0))
        audits[at] = (wrong + (r["final_verdict"] == _WRONG[r["action_taken"]]), n + 1)
    out: dict[str, list[dict[str, Any]]] = {}
    for (model, start), b in sorted(grown.items(), key=lambda kv: (version_key(kv[0][0]), kv[0][1])):
        parts = b["parts"]
        if parts <= 0:
            continue

        def estimate(action: str, count: int, model: str = model, start: float = start, parts: int = parts) -> Any:
            wrong, n = audits.get((model, start, action), (0, 0))
            return count / parts * wrong / n if n else None

        out.setdefault(model, []).append({
            "start": start, "parts": parts, "review_rate": b["uncertain"] / parts,
            "false_reject_rate": estimate("REJECT", b["reject"]), "escape_rate": estimate("PASS", b["pass"])})
    return out


#: How far before the window a sample is read, so the window's first bucket grows from the one before it.
SAMPLE_WINDOW_S = 3600.0
