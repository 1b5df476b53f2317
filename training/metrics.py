"""Score metrics shared by training, calibration and (later) the gate: AUROC, accuracy, decision rates.

Rates follow the edge's decision rule (edge.decision): score < pass_below passes,
score >= reject_above is rejected, the band between goes to review.
"""
from __future__ import annotations

import math

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when a class is missing."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties.
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    s = np.asarray(scores).reshape(-1)
    if s.size == 0:
        return float("nan")
    return float(np.mean((s >= threshold) == np.asarray(labels).reshape(-1).astype(bool)))


def decision_rates(scores: np.ndarray, labels: np.ndarray, pass_below: float, reject_above: float,
                   prevalence: float | None = None, weights: np.ndarray | None = None) -> dict[str, float]:
    """escape_rate: share of defects passed; false_reject_rate: share of good parts rejected;
    review_rate: share of all parts in the band (at ``prevalence`` if given, else as in the data).

    With ``weights`` each image counts as that many line parts (training.data.Sample.weight):
    the rates are then the line's, not the labelled sample's. The counts stay image counts.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    passed, rejected = s < pass_below, s >= reject_above
    band = ~passed & ~rejected
    d, g = s[y], s[~y]

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        total = float(w[of].sum())
        return float(w[mask & of].sum()) / total if total > 0 else float("nan")

    escape = share(passed, y) if d.size else float("nan")
    false_reject = share(rejected, ~y) if g.size else float("nan")
    everything = np.ones_like(y)
    if prevalence is None or not d.size or not g.size:
        review = share(band, everything) if s.size else float("nan")
    else:
        review = prevalence * share(band, y) + (1 - prevalence) * share(band, ~y)
    return {"escape_rate": escape, "false_reject_rate": false_reject, "review_rate": review,
            "escapes": int(passed[y].sum()), "defects": int(d.size), "good": int(g.size)}


def binomial_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen k times in n (1.0 when n == 0)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1.0 - confidence
    i = np.arange(k + 1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    log_choose = log_fact[n] - log_fact[i] - log_fact[n - i]

    def cdf(p: float) -> float:  # P(X <= k) for X ~ Binomial(n, p)
        if p <= 0:
            return 1.0
        if p >= 1:
            return 0.0
        terms = log_choose + i * math.log(p) + (n - i) * math.log1p(-p)
        top = float(terms.max())
        return math.exp(top) * float(np.exp(terms - top).sum())

    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi
