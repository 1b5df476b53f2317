"""The decision: a pure function from a score and thresholds to an action on the line.

    score <  pass_below                 -> PASS    (band "pass")
    pass_below <= score < reject_above  -> HOLD    (band "uncertain"; configurable: REJECT), sent for review
    score >= reject_above               -> REJECT  (band "reject")
    no usable score (fail-safe)         -> REJECT  (band "none"), sent for review when a frame exists

A share of confident decisions (``audit_rate``) is also sent for review, so escapes
can be measured. The random draw is an argument, which keeps this function pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from qcloop.wire import Action, Band

PASS: Final = "PASS"
HOLD: Final = "HOLD"
REJECT: Final = "REJECT"
FAIL_SAFE_DETAILS = ("late", "camera-fault", "stale-frame", "model-error", "queue-full", "shutdown", "missed-trigger")


@dataclass(frozen=True)
class Ruling:
    action: Action
    band: Band
    review: str | None  # uncertain | audit | fail-safe | None (not sent)
    fail_safe: str = ""  # why the part was failed safe ("" when it was not)


@dataclass(frozen=True)
class Decision:
    """The one decision a part gets, with what the record and the review need."""

    part_id: str
    action: Action
    band: Band
    review: str | None
    score: float | None
    model: str
    captured_at: float
    latency_s: float  # trigger to decision
    fail_safe: str = ""


def decide(
    score: float,
    pass_below: float,
    reject_above: float,
    *,
    uncertain_action: Action = HOLD,
    audit_rate: float = 0.0,
    draw: float = 1.0,
) -> Ruling:
    """Rule on one score. ``draw`` is a uniform random number in [0, 1) for audit sampling."""
    if score >= reject_above:
        return Ruling(REJECT, "reject", "audit" if draw < audit_rate else None)
    if score >= pass_below:
        return Ruling(uncertain_action, "uncertain", "uncertain")
    return Ruling(PASS, "pass", "audit" if draw < audit_rate else None)


def fail_safe(detail: str, has_frame: bool) -> Ruling:
    """A part that cannot be decided in time or at all is rejected; the frame, if any, is reviewed."""
    if detail not in FAIL_SAFE_DETAILS:
        raise ValueError(f"unknown fail-safe reason {detail!r}")
    return Ruling(REJECT, "none", "fail-safe" if has_frame else None, fail_safe=detail)
