"""How a review is shown to a reviewer: words for image-quality hints, and audit blinding.

Audit items (confident decisions sampled for a second look) are presented exactly
like uncertain ones: the reason reads the same and the band is not shown for
either, so a reviewer cannot tell which items measure them and the escape
estimate stays unbiased. Only fail-safe items say why they are different.
"""
from __future__ import annotations

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
    return out or ["no image-quality warnings"]


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


def item_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the review screen shows for one stored review."""
    quality = json.loads(row["quality"] or "{}")
    failsafe = row["reason"] == "fail-safe"
    return {
        "id": row["id"],
        "part_id": row["part_id"],
        "line": row["line"],
        "camera": row["camera"],
        "captured": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["captured_at"])),
        "captured_at": row["captured_at"],
        "score": "-" if row["score"] is None else f"{row['score']:.3f}",
        "band": row["band"] if failsafe else None,
        "model": row["model"] or "-",
        "why": why_sent(row["reason"], row["detail"]),
        "hints": quality_words(quality),
        "awaiting_confirm": row["state"] == "awaiting_confirm",
    }


VERDICT_WORDS = {"real_fault": "Real fault", "not_defect": "Not a defect"}
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
