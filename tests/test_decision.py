"""The decision table of DESIGN.md, as a pure function."""
import pytest

from edge.decision import decide, fail_safe

T = dict(pass_below=0.3, reject_above=0.7)


@pytest.mark.parametrize("score, action, band, review", [
    (0.0, "PASS", "pass", None),
    (0.2999, "PASS", "pass", None),
    (0.30, "HOLD", "uncertain", "uncertain"),
    (0.5, "HOLD", "uncertain", "uncertain"),
    (0.6999, "HOLD", "uncertain", "uncertain"),
    (0.70, "REJECT", "reject", None),
    (1.0, "REJECT", "reject", None),
])
def test_score_to_action(score, action, band, review):
    r = decide(score, **T)
    assert (r.action, r.band, r.review, r.fail_safe) == (action, band, review, "")


def test_uncertain_action_can_be_reject():
    assert decide(0.5, **T, uncertain_action="REJECT").action == "REJECT"


@pytest.mark.parametrize("score", [0.1, 0.9])
def test_confident_decisions_are_audited_when_the_draw_is_under_the_rate(score):
    assert decide(score, **T, audit_rate=0.01, draw=0.005).review == "audit"
    assert decide(score, **T, audit_rate=0.01, draw=0.5).review is None


def test_audit_does_not_change_the_action():
    assert decide(0.1, **T, audit_rate=1.0, draw=0.0).action == "PASS"


@pytest.mark.parametrize("detail", ["late", "camera-fault", "model-error", "queue-full"])
def test_fail_safe_rejects_and_reviews_only_with_a_frame(detail):
    assert fail_safe(detail, has_frame=True).action == "REJECT"
    assert fail_safe(detail, has_frame=True).review == "fail-safe"
    assert fail_safe(detail, has_frame=False).review is None


def test_unknown_fail_safe_reason_is_refused():
    with pytest.raises(ValueError):
        fail_safe("tired", True)


def test_the_operating_mode_changes_only_the_uncertain_band():
    t = {"pass_below": 0.3, "reject_above": 0.7}
    for mode in ("in-the-loop", "on-the-loop", "out-of-the-loop"):
        assert decide(0.1, **t, mode=mode).action == "PASS"  # confident decisions are the same in every mode
        assert decide(0.9, **t, mode=mode).action == "REJECT"
        assert decide(0.1, **t, mode=mode, audit_rate=0.5, draw=0.1).review == "audit"
    assert (decide(0.4, **t).action, decide(0.4, **t).review) == ("HOLD", "uncertain")  # in the loop: held
    on_low, on_high = decide(0.4, **t, mode="on-the-loop"), decide(0.6, **t, mode="on-the-loop")
    assert (on_low.action, on_high.action) == ("PASS", "REJECT")  # on the loop: the lean, at once ...
    assert on_low.review == on_high.review == "uncertain"  # ... and reviewed afterwards
    out = decide(0.4, **t, mode="out-of-the-loop")
    assert (out.action, out.review) == ("PASS", None)  # out of the loop: not reviewed ...
    assert decide(0.4, **t, mode="out-of-the-loop", audit_rate=0.5, draw=0.1).review == "audit"  # ... unless audited
