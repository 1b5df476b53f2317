"""Routing: which review a reviewer sees first, and how many reviewers it needs, by rules engineers edit.

Each stored review gets a priority and a number of reviewers when it arrives:

- a part held **in the loop** (action HOLD on a line in that mode) waits physically in the hold lane
  with its hold time running: it comes before everything else (``HELD_FIRST``);
- then the highest priority of the engineers' rules that match it (line, camera, why it was sent, a
  score range; e.g. "line2, score 0.5 and up: priority 50, two reviewers");
- ties, and items no rule matches, oldest first.

A rule with ``reviewers = 2`` makes any first verdict wait for a second, different reviewer (the
two-person rule, which critical lines apply to real faults).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qcloop import wire
from station_ui.errors import StoreError

#: Added to the priority of a part held in the loop: its hold time is running on the line.
HELD_FIRST = 1000
MAX_PRIORITY = 100


@dataclass(frozen=True)
class Rule:
    line: str = ""  # "" : any line
    camera: str = ""
    reason: str = ""  # uncertain | audit | fail-safe; "" : any
    min_score: float | None = None
    max_score: float | None = None
    priority: int = 0
    reviewers: int = 1
    id: int = 0

    def __post_init__(self) -> None:
        if self.reason and self.reason not in wire.REASONS:
            raise StoreError(f"rule reason must be one of {', '.join(wire.REASONS)} (or any), got {self.reason!r}")
        for name in ("min_score", "max_score"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise StoreError(f"rule {name} must be a number from 0 to 1, got {v!r}")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise StoreError(f"rule min_score {self.min_score} is above max_score {self.max_score}")
        if not (isinstance(self.priority, int) and 0 <= self.priority <= MAX_PRIORITY):
            raise StoreError(f"rule priority must be a whole number from 0 to {MAX_PRIORITY}, got {self.priority!r}")
        if self.reviewers not in (1, 2):
            raise StoreError(f"rule reviewers must be 1 or 2, got {self.reviewers!r}")
        for name in ("line", "camera"):
            v = getattr(self, name)
            if len(v) > 200 or any(c in v for c in "/+#"):
                raise StoreError(f"rule {name} {v!r} is not a line or camera name")

    def matches(self, h: wire.ReviewHeader) -> bool:
        if (self.line and h.line != self.line) or (self.camera and h.camera != self.camera):
            return False
        if self.reason and h.reason != self.reason:
            return False
        if self.min_score is not None and (h.score is None or h.score < self.min_score):
            return False
        return not (self.max_score is not None and (h.score is None or h.score > self.max_score))

    def words(self) -> str:
        where = " ".join(p for p in (f"line {self.line}" if self.line else "any line",
                                     f"camera {self.camera}" if self.camera else "",
                                     f"sent as {self.reason}" if self.reason else "") if p)
        lo = "" if self.min_score is None else f"{self.min_score:g}"
        hi = "" if self.max_score is None else f"{self.max_score:g}"
        scores = f", score {lo or '0'}-{hi or '1'}" if lo or hi else ""
        two = ", two reviewers" if self.reviewers == 2 else ""
        return f"{where}{scores}: priority {self.priority}{two}"


def rule_from_form(form: Any) -> Rule:
    """A rule from the Settings page's form; StoreError naming the bad field."""
    def number(name: str, kind: type) -> Any:
        raw = (form.get(name) or "").strip()
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError as exc:
            raise StoreError(f"rule {name} must be a number, got {raw!r}") from exc

    priority = number("priority", int)
    reviewers = number("reviewers", int)
    return Rule(line=(form.get("line") or "").strip(), camera=(form.get("camera") or "").strip(),
                reason=(form.get("reason") or "").strip(), min_score=number("min_score", float),
                max_score=number("max_score", float), priority=0 if priority is None else priority,
                reviewers=1 if reviewers is None else reviewers)


def route(h: wire.ReviewHeader, rules: list[Rule], held_in_the_loop: bool) -> tuple[int, int]:
    """(priority, reviewers) of one arriving review."""
    matching = [r for r in rules if r.matches(h)]
    priority = max((r.priority for r in matching), default=0)
    reviewers = max((r.reviewers for r in matching), default=1)
    return priority + (HELD_FIRST if held_in_the_loop else 0), reviewers
