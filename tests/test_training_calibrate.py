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
    assert 0.0 <= cal.pass_below <= cal.reject_above <= 1.0
    if cal.certified["escape"]:
        assert rates["review_rate"] <= review_budget + 1e-12 and cal.met["review"]
    else:
        # 400 defects certify neither 0 nor 0.5 % at 95 %: none passes, and the band that leaves is
        # reviewed, never narrowed into rejected good parts (the false-reject budget holds).
        assert rates["false_reject_rate"] <= cal.false_reject_budget + 1e-12
        assert rates["review_rate"] <= review_budget + 1e-12 or "kept wide" in cal.note


def test_separable_scores_meet_every_budget():
    s = np.array([0.01, 0.02, 0.05, 0.1, 0.9, 0.95, 0.97, 0.99])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cal = calibrate(s, y, escape_budget=0.0, review_budget=0.0, false_reject_budget=0.0)
    assert 0.1 < cal.pass_below <= 0.9 and cal.reject_above == cal.pass_below
    assert cal.met == {"escape": True, "review": True, "false_reject": True}


def test_overlap_prefers_escape_then_review_and_says_so():
    s = np.linspace(0, 1, 200)
    y = (np.arange(200) % 2).astype(int)  # classes interleaved: no threshold separates them
    cal = calibrate(s, y, escape_budget=0.0, review_budget=0.05, false_reject_budget=0.0, confidence=None)
    assert cal.escape_rate == 0.0 and cal.review_rate <= 0.05
    assert not cal.met["false_reject"] and "review budget" in cal.note


def test_an_uncertified_escape_budget_widens_the_band_instead_of_rejecting_good_parts():
    rng = np.random.default_rng(4)
    good, bad = rng.beta(2, 8, 2000), rng.beta(8, 2, 60)  # 60 defects cannot certify 0.5 % at 95 %
    s, y = np.concatenate([good, bad]), np.concatenate([np.zeros(2000, int), np.ones(60, int)])
    cal = calibrate(s, y, escape_budget=0.005, review_budget=0.05, false_reject_budget=0.01)
    assert not cal.certified["escape"]
    assert cal.escape_rate == 0.0
    assert cal.defects_to_certify > 0
    assert cal.pass_below <= bad.min()
    # The band from under the lowest defect to the false-reject budget holds more than 5 % of the parts:
    # they are reviewed, and the good parts rejected stay within their budget.
    assert cal.review_rate > 0.05
    assert not cal.met["review"]
    assert "kept wide" in cal.note
    assert cal.false_reject_rate <= 0.01 and cal.met["false_reject"]
    # Certified on point estimates instead, the same scores keep the band to the review budget.
    point = calibrate(s, y, escape_budget=0.005, review_budget=0.05, false_reject_budget=0.01, confidence=None)
    assert point.review_rate <= 0.05


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


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budgets", [(0.0, 0.05, 0.01), (0.0, 0.03, 0.02), (0.0, 0.25, 0.05)])
def test_weighted_calibration_equals_calibrating_on_the_parts_each_image_stands_for(seed, budgets):
    """For review and false rejects an image of weight w counts as w identical parts: the same
    decisions as on the replicated sample (the escape side is the stricter count, tested below)."""
    s, y = _scores(300, 200, 4, seed)
    w = np.random.default_rng(seed).integers(1, 6, s.size)
    # On point estimates (confidence=None): the bounds' effective sample sizes differ by design.
    weighted = calibrate(s, y, *budgets, weights=w, confidence=None)
    replicated = calibrate(np.repeat(s, w), np.repeat(y, w), *budgets, confidence=None)

    def actions(cal):  # a tie the weighted form cannot split may leave the threshold elsewhere between scores
        return np.digitize(s, [cal.pass_below, cal.reject_above], right=False)

    assert np.array_equal(actions(weighted), actions(replicated))
    assert weighted.review_rate == pytest.approx(replicated.review_rate)
    assert weighted.escape_rate == pytest.approx(replicated.escape_rate)
    assert weighted.false_reject_rate == pytest.approx(replicated.false_reject_rate)


def test_weights_hold_the_review_budget_on_the_line_not_on_the_over_sampled_hard_cases():
    """Every uncertain part reviewed (weight 1), confident ones audited at 2 % (weight 50): unweighted,
    the hard cases look like most of the line and the band is squeezed; weighted, it fits the line."""
    rng = np.random.default_rng(0)
    line_s, line_y = _scores(20000, 15000, 6, 7)
    hard = (line_s > 0.3) & (line_s < 0.7)
    audited = ~hard & (rng.random(line_s.size) < 0.02)
    keep = hard | audited
    s, y, w = line_s[keep], line_y[keep], np.where(hard[keep], 1.0, 50.0)
    plain = calibrate(s, y, 0.002, 0.05, 0.01, confidence=None)  # the weighting itself, on point estimates
    weighted = calibrate(s, y, 0.002, 0.05, 0.01, weights=w, confidence=None)
    on_line = decision_rates(line_s, line_y, weighted.pass_below, weighted.reject_above)
    assert on_line["review_rate"] == pytest.approx(weighted.review_rate, abs=0.005) and on_line["review_rate"] <= 0.055
    plain_on_line = decision_rates(line_s, line_y, plain.pass_below, plain.reject_above)
    assert on_line["escape_rate"] <= min(0.002, plain_on_line["escape_rate"])
    assert plain_on_line["review_rate"] < on_line["review_rate"] / 3  # squeezed: the rest is rejected
    assert plain_on_line["false_reject_rate"] > 2 * on_line["false_reject_rate"]


@pytest.mark.parametrize("seed", range(4))
def test_weighted_escape_threshold_is_the_stricter_of_weight_and_count(seed):
    s, y = _scores(300, 200, 4, seed)
    w = np.random.default_rng(seed).uniform(0.2, 30, s.size)
    got = calibrate(s, y, 0.02, 0.1, 0.02, weights=w)
    by_weight = calibrate(np.repeat(s, np.ceil(w).astype(int)), np.repeat(y, np.ceil(w).astype(int)), 0.02, 0.1, 0.02)
    by_count = calibrate(s, y, 0.02, 0.1, 0.02)
    passed = np.sum((s < got.pass_below) & (y == 1))
    assert passed <= np.sum((s < by_count.pass_below) & (y == 1))  # never more escapes than counting allows
    assert got.escape_rate <= 0.02 + 1e-12  # nor more than the weights allow
    assert got.pass_below <= max(by_count.pass_below, by_weight.pass_below)


def test_weights_are_checked():
    with pytest.raises(CalibrationError, match="weights"):
        calibrate([0.1, 0.9], [0, 1], weights=[1.0, 0.0])
    with pytest.raises(CalibrationError, match="weights"):
        calibrate([0.1, 0.9], [0, 1], weights=[1.0])


def test_spare_review_budget_goes_to_the_good_parts_the_model_is_least_sure_of():
    # Defects all score >= 0.6; the good parts' tail reaches into them. At the false-reject
    # budget alone the band is empty and the two good parts above 0.6 are rejected; the review budget
    # can take them with the three defects among them.
    good = np.concatenate([np.linspace(0.0, 0.3, 96), [0.55, 0.58, 0.605, 0.61]])
    bad = np.linspace(0.6, 1.0, 100)
    s, y = np.concatenate([good, bad]), np.concatenate([np.zeros(100, int), np.ones(100, int)])
    plain = calibrate(s, y, 0.0, 0.05, 0.05, review_cost=None, confidence=None)  # exact counts of 100 parts
    spent = calibrate(s, y, 0.0, 0.05, 0.05, review_cost=0.25, confidence=None)
    assert plain.false_reject_rate == pytest.approx(0.02) and plain.review_rate <= 0.01
    assert spent.pass_below == plain.pass_below and spent.reject_above > plain.reject_above
    assert spent.false_reject_rate == 0.0
    assert spent.review_rate <= 0.05
    assert spent.escape_rate == 0.0
    # A review costs more than the false reject it saves: the band stays where it was.
    assert calibrate(s, y, 0.0, 0.05, 0.05, review_cost=30.0, confidence=None).reject_above == plain.reject_above


def test_spare_review_is_not_spent_on_defects():
    # Above the false-reject point there are only defects: reviewing them saves no good part.
    s = np.concatenate([np.linspace(0.0, 0.4, 100), np.linspace(0.6, 1.0, 100)])
    y = np.concatenate([np.zeros(100, int), np.ones(100, int)])
    plain = calibrate(s, y, 0.0, 0.3, 0.01, review_cost=None)
    assert calibrate(s, y, 0.0, 0.3, 0.01).reject_above == plain.reject_above


def _line(n_good, n_def, rng):
    """A line whose true score distributions are known: good ~ Beta(2, 6), defects ~ Beta(6, 2)."""
    return (np.concatenate([rng.beta(2, 6, n_good), rng.beta(6, 2, n_def)]),
            np.concatenate([np.zeros(n_good, int), np.ones(n_def, int)]))


def test_the_escape_budget_holds_on_unseen_parts_at_the_stated_confidence():
    rng = np.random.default_rng(5)
    unseen = rng.beta(6, 2, 1_000_000)  # the line's defects not yet seen
    budget, trials = 0.01, 120

    def exceeded(confidence):
        over = 0
        for _ in range(trials):
            s, y = _line(1500, 1500, rng)
            cal = calibrate(s, y, escape_budget=budget, review_budget=0.1, false_reject_budget=0.05,
                            confidence=confidence)
            over += float(np.mean(unseen < cal.pass_below)) > budget
        return over / trials

    # On the point estimate about half the calibrations pass more unseen defects than the budget allows;
    # on the 95 % bound at most about 5 % do (binomial slack for 120 trials).
    assert exceeded(None) > 0.25
    assert exceeded(0.95) <= 0.1


def test_too_few_defects_to_certify_pass_none_of_them_and_say_how_many_more_would():
    s, y = _line(2000, 300, np.random.default_rng(8))
    cal = calibrate(s, y, escape_budget=0.0025, review_budget=0.2, false_reject_budget=0.02)
    assert not cal.certified["escape"] and cal.escape_rate == 0.0
    assert cal.pass_below <= s[y == 1].min()  # every validation defect is held or rejected
    # 0.25 % at 95 % takes 1,197 defects none of which passes: 897 more than these 300.
    assert cal.defects_to_certify == 897 and "897 more labelled defects" in cal.note
    point = calibrate(s, y, escape_budget=0.0025, review_budget=0.2, false_reject_budget=0.02, confidence=None)
    assert point.defects_to_certify == 0 and point.pass_below >= cal.pass_below


def test_enough_defects_certify_the_escape_budget_and_report_the_bounds():
    s, y = _line(3000, 3000, np.random.default_rng(9))
    cal = calibrate(s, y, escape_budget=0.01, review_budget=0.2, false_reject_budget=0.05)
    assert cal.certified["escape"] and cal.defects_to_certify == 0
    assert cal.escape_rate <= cal.escape_rate_upper <= 0.01
    assert cal.review_rate <= cal.review_rate_upper and cal.false_reject_rate <= cal.false_reject_rate_upper
    assert cal.to_dict()["confidence"] == 0.95


def test_a_sample_too_small_to_certify_a_review_budget_still_gets_a_review_band():
    s, y = _line(30, 10, np.random.default_rng(4))  # 40 parts: even an empty band's bound is above 5 %
    cal = calibrate(s, y, escape_budget=0.1, review_budget=0.05, false_reject_budget=0.5)
    assert not cal.certified["review"] and "review rate" in cal.note
    assert 0 < cal.review_rate <= 0.05  # sized on the observed rate, not collapsed to an empty band


def test_confidence_out_of_range_is_named():
    with pytest.raises(CalibrationError, match="confidence"):
        calibrate([0.1, 0.9], [0, 1], confidence=1.0)
