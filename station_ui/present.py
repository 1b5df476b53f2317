"""How a review is shown to a reviewer: why it was asked, in words; image-quality hints; audit blinding.

The screen says why the model asked ("score 0.41 in the review band 0.30-0.70 of model
1.2.0; 14 % saturated pixels: glare likely"), with the thresholds.

Audit items (confident decisions sampled for a second look) are presented exactly
like uncertain ones: the reason reads the same, and the score shown is drawn inside the
item's review band as a live uncertain item's would be (seeded by the review id, so a
reload shows the same number), so a reviewer cannot tell which items measure them (a
score of 0.004 would say "the model is sure", and invite agreeing with it) and the
escape estimate stays unbiased. The true score is kept and shown to engineers in the
history. Only fail-safe items say why they are different.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from qcloop import wire


def quality_words(quality: Mapping[str, Any]) -> list[str]:
    """Plain-language hints from the edge's image-quality numbers."""
    out = []
    sat = _num(quality.get("saturated"))
    if sat is not None and sat >= 0.02:
        out.append(f"{sat * 100:.0f} % saturated pixels: glare likely")
    dark = _num(quality.get("dark"))
    if dark is not None and dark >= 0.15:
        out.append(f"{dark * 100:.0f} % very dark pixels: shadow or under-exposure likely")
    sharp = _num(quality.get("sharpness"))
    if sharp is not None and sharp < 50:
        out.append(f"low sharpness ({sharp:.0f}): motion blur or focus problem likely")
    mean = _num(quality.get("mean"))
    if mean is not None and mean < 40:
        out.append(f"dark frame (mean brightness {mean:.0f} of 255)")
    elif mean is not None and mean > 215:
        out.append(f"very bright frame (mean brightness {mean:.0f} of 255)")
    return out or [NO_WARNINGS]


NO_WARNINGS = "no image-quality warnings"


def _threshold_words(thresholds: Mapping[str, Any]) -> str | None:
    lo, hi = _num(thresholds.get("pass_below")), _num(thresholds.get("reject_above"))
    if lo is None or hi is None:
        return None
    return f"pass below {lo:.2f}, review {lo:.2f}\u2013{hi:.2f}, reject from {hi:.2f}"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def why_sent(reason: str, detail: str) -> str:
    if reason == "fail-safe":
        return f"Fail-safe reject: {detail or 'no decision in time'}"
    return "Sent for review"  # uncertain and audit read the same, on purpose


def age_words(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def shown_score(review_id: str, reason: str, score: float | None, thresholds: Mapping[str, Any]) -> float | None:
    """The score a reviewer sees: the true one, except for an audit, whose score is drawn inside its
    review band as an uncertain item's would lie (draw_in_band)."""
    if reason != "audit" or score is None:
        return score
    return draw_in_band(review_id, thresholds)


def draw_in_band(seed_id: str, thresholds: Mapping[str, Any]) -> float | None:
    """A score inside the review band (uniformly, seeded by ``seed_id``: the same on every look); None
    when there is no band to draw from (show no score rather than a telling one)."""
    lo, hi = band_of(thresholds)
    if lo is None or hi is None or not 0.0 <= lo < hi <= 1.0:
        return None
    u = int.from_bytes(hashlib.sha256(f"shown-score:{seed_id}".encode()).digest()[:8], "big") / 2.0**64
    return lo + (hi - lo) * (0.05 + 0.9 * u)  # not on the band's edges, where an uncertain score rarely lies


def band_of(thresholds: Mapping[str, Any]) -> tuple[float | None, float | None]:
    return _num(thresholds.get("pass_below")), _num(thresholds.get("reject_above"))


def thresholds_of(row: Any) -> dict[str, Any]:
    """A stored review's thresholds (a JSON column)."""
    return json.loads(row["thresholds"] or "{}")


def why_asked(score: float | None, thresholds: Mapping[str, Any], model: str, hints: list[str]) -> str:
    """Why the model asked, in words, with the thresholds and the image-quality hints."""
    lo, hi = _num(thresholds.get("pass_below")), _num(thresholds.get("reject_above"))
    of_model = f"of model {model}" if model else "(no model)"
    if score is None:
        words = f"no score {of_model}"
    elif lo is not None and hi is not None:
        words = f"score {score:.2f} in the review band {lo:.2f}\u2013{hi:.2f} {of_model}"
    else:
        words = f"score {score:.2f} {of_model}"
    warnings = [h for h in hints if h != NO_WARNINGS]
    return "; ".join([words, *warnings])


def item_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the review screen shows for one stored review."""
    quality = json.loads(row["quality"] or "{}")
    thresholds = thresholds_of(row)
    failsafe = row["reason"] == "fail-safe"
    score = shown_score(row["id"], row["reason"], row["score"], thresholds)
    hints = quality_words(quality)
    return {
        "id": row["id"],
        "part_id": row["part_id"],
        "line": row["line"],
        "camera": row["camera"],
        "captured": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["captured_at"])),
        "captured_at": row["captured_at"],
        "score": "-" if score is None else f"{score:.3f}",
        "band": row["band"] if failsafe else None,
        "model": row["model"] or "-",
        "why": why_sent(row["reason"], row["detail"]),
        "asked": None if failsafe else why_asked(score, thresholds, row["model"], hints),
        "thresholds": _threshold_words(thresholds),
        "hints": hints,
        "awaiting_confirm": row["state"] == "awaiting_confirm",
    }


VERDICT_WORDS = {"real_fault": "Real fault", "not_defect": "Not a defect"}
MODE_WORDS = {"in-the-loop": "In the loop", "on-the-loop": "On the loop", "out-of-the-loop": "Out of the loop"}


def mode_words(mode: str, hold_time_s: float, fallback: str) -> str:
    """A line's operating mode as the review screen and the dashboard say it."""
    words = MODE_WORDS.get(mode, mode)
    if mode == "in-the-loop":
        return f"{words}: the part waits {hold_time_s:.0f} s for you, then {fallback.lower()}"
    if mode == "on-the-loop":
        return f"{words}: decided; you can overrule"
    return f"{words}: audits only"
STATE_WORDS = {"pending": "Open", "awaiting_confirm": "Waits for a second reviewer", "disputed": "Disputed",
               "done": "Done"}
ACTION_WORDS = {"PASS": "Passed", "HOLD": "Held", "REJECT": "Rejected"}


def verdict_words(verdict: str | None, kind: str | None, state: str) -> str:
    """A stored review's outcome as a person reads it: "Not a defect: glare", "Real fault", "Open"."""
    if not verdict:
        return STATE_WORDS.get(state, state)
    words = VERDICT_WORDS.get(verdict, verdict)
    return f"{words}: {KIND_LABELS.get(kind, kind)}" if kind else words


FAULT_CHOICES = list(enumerate(wire.FAULT_KINDS, start=1))
NOT_DEFECT_CHOICES = list(enumerate(wire.NOT_DEFECT_KINDS, start=1))
KIND_LABELS = {"glare": "Glare / reflection", "shadow": "Shadow", "dust": "Dust / debris",
               "mis-trigger": "Mis-trigger", "other": "Other", "pit": "Pit", "crack": "Crack", "burr": "Burr",
               "chip": "Chip", "porosity": "Porosity"}
