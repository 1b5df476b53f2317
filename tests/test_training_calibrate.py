"""Threshold calibration on constructed score arrays: the escape budget always holds."""
from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import calibrate
from training.errors import CalibrationError
from training.metrics import auroc, decision_rates


def _scores(n_good, n_def, sep, seed):
    rng = np.random.default_rng(seed)
    good = np.clip(rng.beta(2, 2 + sep, n_good), 0, 1)
    bad = np.clip(rng.beta(2 + sep, 2, n_def), 0, 1)
    return np.concatenate([good, bad]), np.concatenate([np.zeros(n_good, int), np.ones(n_def, int)])


@pytest.mark.parametrize("escape_budget", [0.0, 0.005, 0.02, 0.1])
@pytest.mark.parametrize("review_budget", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("sep,seed", [(0, 1), (3, 2), (20, 3)])
def test_escape_budget_always_holds(escape_budget, review_budget, sep, seed):
    s, y = _scores(900, 400, sep, seed)
    cal = calibrate(s, y, escape_budget=escape_budget, review_budget=review_budget)
    rates = decision_rates(s, y, cal.pass_below, cal.reject_above)
    assert rates["escape_rate"] <= escape_budget
    assert rates["escape_rate"] == cal.escape_rate and cal.met["escape"]
    assert rates["review_rate"] <= review_budget + 1e-12 and cal.met["review"]
    assert 0.0 <= cal.pass_below <= cal.reject_above <= 1.0


def test_separable_scores_meet_every_budget():
    s = np.array([0.01, 0.02, 0.05, 0.1, 0.9, 0.95, 0.97, 0.99])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cal = calibrate(s, y, escape_budget=0.0, review_budget=0.0, false_reject_budget=0.0)
    assert 0.1 < cal.pass_below <= 0.9 and cal.reject_above == cal.pass_below
    assert cal.met == {"escape": True, "review": True, "false_reject": True}


def test_overlap_prefers_escape_then_review_and_says_so():
    s = np.linspace(0, 1, 200)
    y = (np.arange(200) % 2).astype(int)  # classes interleaved: no threshold separates them
    cal = calibrate(s, y, escape_budget=0.0, review_budget=0.05, false_reject_budget=0.0)
    assert cal.escape_rate == 0.0 and cal.review_rate <= 0.05
    assert not cal.met["false_reject"] and "review budget" in cal.note


def test_bad_input_is_named():
    with pytest.raises(CalibrationError, match="both classes"):
        calibrate([0.1, 0.2], [0, 0])
    with pytest.raises(CalibrationError, match="escape_budget"):
        calibrate([0.1, 0.9], [0, 1], escape_budget=1.5)
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        calibrate([0.1, 1.9], [0, 1])


def test_auroc_known_values():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert auroc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0
