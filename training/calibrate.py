"""Threshold calibration on validation scores: ``pass_below`` and ``reject_above`` from budgets.

Priorities, highest first:

1. Escape budget (default 0.5 % of defects may pass). ``pass_below`` is the highest
   threshold at which at most ``floor(budget * defects)`` validation defects score
   below it. It is never traded away.
2. Review budget (default 5 % of parts in the uncertain band). ``reject_above``
   starts where good parts stop being rejected beyond the false-reject budget; if
   that band is too wide for the review budget, ``reject_above`` comes down until
   it fits, and what no longer goes to review is rejected -- the safe side, paid
   for in false rejects, which the report names.
3. False-reject budget (default 1 % of good parts rejected): met when 1 and 2 allow.
4. Spare review budget: when the band holds less than the review budget,
   ``reject_above`` rises while the band still fits, to where ``false_reject_rate +
   review_cost * review_rate`` is lowest (the promotion gate's cost,
   training.gate.GateRule.review_weight): a look at a part is cheaper than a scrapped
   good part, so review capacity the line has goes to the good parts the model is
   least sure of. ``review_cost=None`` leaves ``reject_above`` at the false-reject budget.

Thresholds sit halfway between neighbouring validation scores rather than on one,
so a part scoring like its nearest validation example lands on the same side.
**A stated confidence** (``confidence``, default 0.95). A rate seen on a few hundred
validation parts is an estimate; the line sees parts not yet seen. So each budget is
turned into the largest count of the validation sample whose one-sided Clopper-Pearson
upper bound stays within the budget (training.metrics.binomial_upper; weighted images
count by Kish's effective sample size), and the thresholds are chosen for those
counts. The escape budget then holds for unseen parts at that confidence. When no
count can certify it (0.25 % at 95 % takes 1,197 defects passing none), no
validation defect is passed: ``pass_below`` sits under the lowest defect, more parts
go to review, ``certified["escape"]`` is False and ``defects_to_certify`` says how many
more labelled defects certifying would take. The band is then not narrowed to the review
budget (priority 2): what the uncertified escape budget put in the band is reviewed, at
a review rate over budget that ``met`` reports, rather than rejected as good parts. A
review or false-reject budget that no count can certify on this sample (an empty band
already has an upper bound above it) falls back to its point estimate, and the note
says so: an empty band is not the safe side of a review budget. ``confidence=None``
chooses on point estimates alone.

``weights`` (optional) says how many line parts each validation image stands for,
when the images were not drawn uniformly from the line: every part of the uncertain
band is reviewed (weight 1) but only a share of the confident ones is audited
(weight 1 / audit rate). The review and false-reject budgets then hold for the
line's parts, not for the over-represented hard cases. The escape budget takes the
stricter of the weighted and the plain count: a few heavy audit images make the
weighted low tail of the defects noisy, while counting the over-sampled hard defects
once each errs on the safe side, and escapes are never traded away. Without weights
every image counts once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from training.errors import CalibrationError
from training.metrics import binomial_upper, decision_rates


@dataclass(frozen=True)
class Calibration:
    pass_below: float
    reject_above: float
    escape_rate: float  # share of validation defects passed
    escape_rate_upper: float  # its upper bound at ``confidence`` (the rate itself when confidence is None)
    review_rate: float  # share of validation parts in the band
    false_reject_rate: float  # share of validation good parts rejected
    escape_budget: float
    review_budget: float
    false_reject_budget: float
    met: dict  # budget name -> bool: the validation rate is within the budget
    note: str
    confidence: float | None = 0.95
    certified: dict = field(default_factory=dict)  # budget name -> bool: the rate's upper bound is within it
    review_rate_upper: float = float("nan")
    false_reject_rate_upper: float = float("nan")
    defects_to_certify: int = 0  # more labelled defects (none passed) that would certify the escape budget

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(scores, labels, escape_budget: float = 0.005, review_budget: float = 0.05,
              false_reject_budget: float = 0.01, prevalence: float | None = None, weights=None,
              review_cost: float | None = 0.25, confidence: float | None = 0.95) -> Calibration:
    """Choose thresholds on validation ``scores`` (0..1) with ``labels`` (1 = defect)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise CalibrationError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and (w.shape != s.shape or not np.all(np.isfinite(w)) or np.any(w <= 0)):
        raise CalibrationError(f"weights must be {s.size} finite numbers > 0, one per score")
    if s.size == 0 or not np.all(np.isfinite(s)) or s.min() < 0 or s.max() > 1:
        raise CalibrationError("scores must be a non-empty array of finite values in [0, 1]")
    if review_cost is not None and not (math.isfinite(review_cost) and review_cost >= 0):
        raise CalibrationError(f"review_cost must be a finite number >= 0, got {review_cost}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise CalibrationError(f"labels must be 0 (good) or 1 (defect), got {sorted(set(np.unique(y).tolist()))}")
    for name, value in (("escape_budget", escape_budget), ("review_budget", review_budget),
                        ("false_reject_budget", false_reject_budget)):
        if not 0.0 <= value < 1.0:
            raise CalibrationError(f"{name} must be in [0, 1), got {value}")
    if confidence is not None and not 0.5 <= confidence < 1.0:
        raise CalibrationError(f"confidence must be in [0.5, 1) or None, got {confidence}")
    y = y.astype(bool)
    if not y.any() or y.all():
        raise CalibrationError(f"calibration needs both classes; got {int(y.sum())} defects and "
                               f"{int((~y).sum())} good parts")
    defects, w_def = _sorted_with_weights(s[y], None if w is None else w[y])
    good, w_good = _sorted_with_weights(s[~y], None if w is None else w[~y])

    notes = []
    # The budgets as shares of this sample that certify them at ``confidence`` (module docstring).
    w_all = np.ones(s.size) if w is None else w
    escape_w = _certifiable(w_def, escape_budget, confidence)
    escape_n = _certifiable(np.ones(defects.size), escape_budget, confidence)
    review_share = _certifiable(w_all, review_budget, confidence)
    fr_share = _certifiable(w_good, false_reject_budget, confidence)
    if review_share is None:
        review_share = review_budget
        notes.append(f"{_n_eff(w_all):.0f} validation parts cannot certify a review rate under {review_budget} "
                     f"at {confidence:.0%}: the band is sized on the observed rate")
    if fr_share is None:
        fr_share = false_reject_budget
        notes.append(f"{_n_eff(w_good):.0f} good validation parts cannot certify a false-reject rate under "
                     f"{false_reject_budget} at {confidence:.0%}: the observed rate is used")

    # 1. pass_below: the lowest k defects (at most the certifiable share of the defects' weight, and of
    # their number) may pass; none when the budget cannot be certified.
    k = min(_leading(w_def, escape_w or 0.0), _leading(np.ones(defects.size), escape_n or 0.0))
    pass_below = _between(defects[k - 1] if k > 0 else None, defects[k], s)

    # 2. reject_above from the false-reject budget: the highest m good parts may be rejected.
    m = _leading(w_good[::-1], fr_share)
    top = good.size - 1 - m  # the highest good score that must not be rejected
    reject_above = max(pass_below, _above(good[top], s)) if top >= 0 else pass_below
    band = _share_in_band(s, y, pass_below, reject_above, prevalence, w)
    escape_certifiable = confidence is None or (escape_w is not None and escape_n is not None)
    if band > review_share and not escape_certifiable:
        # pass_below sits under every defect because the labels cannot certify the budget: the parts that
        # puts in the band are reviewed, not rejected (a wider band, not a scrapped line).
        notes.append("the escape budget cannot be certified, so the band is kept wide: review is over its "
                     "budget rather than good parts rejected")
    elif band > review_share:
        # Lower reject_above until the band fits; ties can force a little under the budget.
        above = np.sort(s[(s >= pass_below) & (s < reject_above)])
        allowed = int(math.floor(review_share * s.size + 1e-9)) if prevalence is None and w is None else None
        if allowed is not None:
            reject_above = pass_below if allowed == 0 else _above(above[min(allowed, above.size) - 1], s)
        while reject_above > pass_below and _share_in_band(s, y, pass_below, reject_above, prevalence, w) > review_share:
            reject_above = _below_value(reject_above, s, pass_below)
        notes.append("review budget too small for the false-reject budget: the uncertain band was narrowed "
                     "and the parts above it are rejected")
    elif review_cost is not None:
        reject_above = _spend_spare_review(s, y, pass_below, reject_above, review_share, review_cost, prevalence, w)
    rates = decision_rates(s, y, pass_below, reject_above, prevalence, w)
    met = {"escape": rates["escape_rate"] <= escape_budget + 1e-12,
           "review": rates["review_rate"] <= review_budget + 1e-12,
           "false_reject": rates["false_reject_rate"] <= false_reject_budget + 1e-12}
    escape_upper = max(_upper(rates["escape_rate"], w_def, confidence),
                       _upper(rates["escapes"] / defects.size, np.ones(defects.size), confidence))
    review_upper = _upper(rates["review_rate"], w_all, confidence)
    fr_upper = _upper(rates["false_reject_rate"], w_good, confidence)
    certified = {"escape": escape_upper <= escape_budget + 1e-12, "review": review_upper <= review_budget + 1e-12,
                 "false_reject": fr_upper <= false_reject_budget + 1e-12}
    more = 0 if certified["escape"] or confidence is None else _defects_to_certify(
        rates["escapes"], defects.size, escape_budget, confidence)
    if more:
        notes.append(f"{defects.size} validation defects cannot certify an escape rate under {escape_budget} "
                     f"at {confidence:.0%} (upper bound {escape_upper:.4f}): none of them is passed, and about "
                     f"{more} more labelled defects would certify it")
    return Calibration(pass_below=pass_below, reject_above=reject_above, escape_rate=rates["escape_rate"],
                       escape_rate_upper=escape_upper, review_rate=rates["review_rate"],
                       false_reject_rate=rates["false_reject_rate"], escape_budget=escape_budget,
                       review_budget=review_budget, false_reject_budget=false_reject_budget, met=met,
                       note="; ".join(notes), confidence=confidence, certified=certified,
                       review_rate_upper=review_upper, false_reject_rate_upper=fr_upper, defects_to_certify=more)


def _n_eff(w: np.ndarray) -> float:
    """Kish's effective sample size of weighted items: (sum w)^2 / sum w^2 (their number for unit weights)."""
    return float(w.sum()) ** 2 / float(np.square(w).sum()) if w.size else 0.0


def _upper(share: float, w: np.ndarray, confidence: float | None) -> float:
    """The upper bound at ``confidence`` on a share observed over items of weights ``w``."""
    if confidence is None or not math.isfinite(share):
        return share
    n = int(math.floor(_n_eff(w) + 1e-9))
    return binomial_upper(int(math.ceil(share * n - 1e-9)), n, confidence)


def _certifiable(w: np.ndarray, budget: float, confidence: float | None) -> float | None:
    """The largest share of items of weights ``w`` whose upper bound stays within ``budget`` (None: not even 0)."""
    if confidence is None:
        return budget
    n = int(math.floor(_n_eff(w) + 1e-9))
    if n == 0 or binomial_upper(0, n, confidence) > budget:
        return None
    lo, hi = 0, min(n, int(budget * n) + 1)  # the bound is above k / n: no count past budget * n can do
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if binomial_upper(mid, n, confidence) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo / n


def _defects_to_certify(escapes: int, defects: int, budget: float, confidence: float) -> int:
    """How many more labelled defects, none of them passed, would bring the escape bound within ``budget``."""
    if budget <= 0:
        return 0  # a zero budget is never certified by a sample; it is held on the sample only
    hi = max(defects, 1)
    while binomial_upper(escapes, hi, confidence) > budget:
        hi *= 2
    lo = defects
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_upper(escapes, mid, confidence) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return max(0, lo - defects)


def _spend_spare_review(s, y, pass_below, reject_above, review_budget, review_cost, prevalence, w) -> float:
    """The ``reject_above`` at or above the given one with the lowest false-reject + review cost in budget."""
    def cost(t: float) -> tuple[float, float]:
        r = decision_rates(s, y, pass_below, t, prevalence, w)
        return r["false_reject_rate"] + review_cost * r["review_rate"], r["review_rate"]

    best, best_cost = reject_above, cost(reject_above)[0]
    t = reject_above
    while t < 1.0:
        higher = s[s >= t]
        if higher.size == 0:
            break
        t = _above(float(higher.min()), s)  # the next threshold that moves one more score into the band
        c, review = cost(t)
        if review > review_budget + 1e-12:
            break
        if c < best_cost - 1e-12:
            best, best_cost = t, c
    return best


def _share_in_band(s, y, lo, hi, prevalence, w=None) -> float:
    return decision_rates(s, y, lo, hi, prevalence, w)["review_rate"]


def _sorted_with_weights(scores: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(scores, kind="mergesort")
    w = np.ones(scores.size) if weights is None else weights[order]
    return scores[order], w


def _leading(weights: np.ndarray, budget: float) -> int:
    """How many leading items fit in ``budget`` of the total weight (floor(budget * n) for unit weights)."""
    allowed = budget * float(weights.sum()) + 1e-9
    return int(np.searchsorted(np.cumsum(weights), allowed, side="right"))


def _between(lower: float | None, upper: float, s: np.ndarray) -> float:
    """A threshold t with lower < t <= upper: midway to the highest score below ``upper``."""
    below = s[s < upper]
    if lower is not None:
        below = below[below >= lower]
    if below.size == 0:
        return float(upper)
    return float((below.max() + upper) / 2.0)


def _above(value: float, s: np.ndarray) -> float:
    """A threshold just above ``value``: midway to the next higher score, or above it within [0, 1]."""
    higher = s[s > value]
    if higher.size:
        return float((value + higher.min()) / 2.0)
    return float(min(1.0, value + max(1e-6, (1.0 - value) / 2.0))) if value < 1.0 else 1.0


def _below_value(threshold: float, s: np.ndarray, floor: float) -> float:
    """The next lower candidate threshold (halfway below the next score under ``threshold``)."""
    lower = s[(s < threshold) & (s >= floor)]
    if lower.size == 0:
        return floor
    v = lower.max()
    below = s[s < v]
    return float(max(floor, (v + below.max()) / 2.0)) if below.size else float(max(floor, v))
