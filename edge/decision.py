"""The decision: a pure function from a score and thresholds to an action on the line.

    score <  pass_below                 -> PASS    (band "pass")
    pass_below <= score < reject_above  -> HOLD    (band "uncertain"; configurable: REJECT), sent for review
    score >= reject_above               -> REJECT  (band "reject")
    no usable score (fail-safe)         -> REJECT  (band "none"), sent for review when a frame exists

A share of confident decisions (``audit_rate``) is also sent for review, so escapes
can be measured. The random draw is an argument, which keeps this function pure.

The line's operating mode (wire.OperatingMode) changes only the uncertain band:

    in-the-loop      HOLD (or ``uncertain_action``), reviewed: the verdict releases or rejects it
    on-the-loop      decided at once on the model's lean -- PASS below the band's middle, REJECT
                     from it -- and reviewed afterwards (an overruled PASS is a recall)
    out-of-the-loop  decided at once on the lean; reviewed only when drawn as an audit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from qcloop.wire import Action, Band, OperatingMode

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
    mode: OperatingMode = "in-the-loop",
) -> Ruling:
    """Rule on one score. ``draw`` is a uniform random number in [0, 1) for audit sampling."""
    audit = "audit" if draw < audit_rate else None
    if score >= reject_above:
        return Ruling(REJECT, "reject", audit)
    if score >= pass_below:
        if mode == "in-the-loop":
            return Ruling(uncertain_action, "uncertain", "uncertain")
        lean: Action = REJECT if score >= (pass_below + reject_above) / 2 else PASS
        return Ruling(lean, "uncertain", "uncertain" if mode == "on-the-loop" else audit)
    return Ruling(PASS, "pass", audit)


def fail_safe(detail: str, has_frame: bool) -> Ruling:
    """A part that cannot be decided in time or at all is rejected; the frame, if any, is reviewed."""
    if detail not in FAIL_SAFE_DETAILS:
        raise ValueError(f"unknown fail-safe reason {detail!r}")
    return Ruling(REJECT, "none", "fail-safe" if has_frame else None, fail_safe=detail)


def scaled_band(pass_below: float, reject_above: float, scale: float) -> tuple[float, float]:
    """The review band at ``scale`` times its width. Narrower (scale < 1): the top comes down, so parts
    leave review as REJECTs and never as PASSes (the escape budget holds). Wider (scale > 1): both sides
    move out, so fewer parts are passed or rejected without a look."""
    width = reject_above - pass_below
    if scale <= 1.0:
        return pass_below, pass_below + width * scale
    extra = width * (scale - 1.0) / 2
    return max(0.0, pass_below - extra), min(1.0, reject_above + extra)
