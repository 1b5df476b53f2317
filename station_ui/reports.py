"""Read-only queries behind the dashboard and the history search.

Escape rate is estimated from audit items: confident PASS decisions sampled at
random and reviewed blind, so the share of them ruled "real fault" estimates how
many defects the model lets through. Likewise audited REJECTs ruled "not a
defect" estimate the false-reject rate.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

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
    out["verdict_mix"] = [(f"{r[0]} {r[1] or ''}".strip(), r[2]) for r in c.execute(
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
                                                  "model": r["model"], "payload": "{}", "updated_at": None})
    out = []
    for (line, cam), r in sorted(rows.items()):
        p = json.loads(r.get("payload") or "{}")
        actions = p.get("actions") or {}
        parts = int(p.get("parts") or 0)
        rate = (lambda k: (actions.get(k, 0) / parts) if parts else None)
        out.append({"line": line, "camera": cam, "state": r["state"], "model": r["model"] or "-", "parts": parts,
                    "reject_rate": rate("REJECT"), "hold_rate": rate("HOLD"),
                    "review_rate": (int(p.get("reviews_queued") or 0) / parts) if parts else None,
                    "updated_at": r.get("updated_at")})
    return out


def history(db: Store, *, part_id: str = "", verdict: str = "", user: str = "", t0: float | None = None,
            t1: float | None = None, limit: int = 200) -> list[Any]:
    where, args = ["1 = 1"], []
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
    return db.conn.execute(
        "SELECT r.*, (SELECT group_concat(v.user, ', ') FROM verdicts v WHERE v.review_id = r.id AND v.undone = 0)"
        f" AS reviewers FROM reviews r WHERE {' AND '.join(where)} ORDER BY r.captured_at DESC LIMIT ?",
        [*args, limit]).fetchall()


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
        for version, row in (json.loads(r["payload"] or "{}").get("by_model") or {}).items():
            t = totals.setdefault(version, {"parts": 0, "reject": 0, "hold": 0, "pass": 0, "uncertain": 0})
            actions = row.get("actions") or {}
            t["parts"] += int(row.get("parts") or 0)
            t["reject"] += int(actions.get("REJECT", 0))
            t["pass"] += int(actions.get("PASS", 0))
            t["hold"] += int(actions.get("HOLD", 0))
            t["uncertain"] += int((row.get("reviews") or {}).get("uncertain", 0))
    audits, pass_audits = _audited(db, "REJECT"), _audited(db, "PASS")
    out = []
    for version, t in sorted(totals.items(), key=lambda kv: _version_key(kv[0])):
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


def _version_key(version: str) -> tuple:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (float("inf"), version)


_LINE_RATES = (("false_reject_rate", "False rejects"), ("escape_rate", "Escapes"), ("review_rate", "Review"))


def trainer(db: Store) -> dict[str, Any] | None:
    """The retraining server's last status for the dashboard: its state, the last run's gate decision
    (the paired comparison on the line's parts, with intervals) and the candidate's calibration.

    Whatever the message holds, this returns plain values or None: a malformed field shows as "-".
    """
    row = db.conn.execute("SELECT payload, updated_at FROM trainer_status ORDER BY updated_at DESC LIMIT 1").fetchone()
    if row is None:
        return None
    p = _obj(json.loads(row["payload"] or "{}"))
    last = _obj(p.get("last"))
    gate = _obj(last.get("gate"))
    line = _obj(gate.get("line"))
    cal = _obj(last.get("calibration"))
    comparison = []
    for key, label in _LINE_RATES:
        d = _obj(_obj(line.get("delta")).get(key))
        comparison.append({"rate": label, "candidate": _num(_obj(line.get("candidate")).get(key)),
                           "current": _num(_obj(line.get("current")).get(key)), "difference": _num(d.get("value")),
                           "low": _num(d.get("low")), "high": _num(d.get("high"))})
    certified = _obj(cal.get("certified"))
    return {
        "state": _text(p.get("state")), "current": _text(p.get("current")), "updated_at": row["updated_at"],
        "runs": _num(p.get("runs")), "verdicts_since_last": _num(p.get("verdicts_since_last")),
        "last": None if not last else {
            "version": _text(last.get("version")), "ok": last.get("ok") is True,
            "promoted": last.get("promoted") is True, "error": _text(last.get("error")),
            "reason": _text(gate.get("reason")), "run_reason": _text(last.get("reason")),
            "finished": _num(last.get("finished")), "rule": _text(gate.get("rule_text")),
            "line_images": _num(line.get("images")), "interval": _num(line.get("interval")),
            "comparison": comparison if line else [],
            "calibration": None if not cal else {
                "confidence": _num(cal.get("confidence")), "escape_budget": _num(cal.get("escape_budget")),
                "escape_rate_upper": _num(cal.get("escape_rate_upper")),
                "escape_certified": certified.get("escape") is True,
                "defects_to_certify": _num(cal.get("defects_to_certify")), "note": _text(cal.get("note"))},
        },
    }


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
