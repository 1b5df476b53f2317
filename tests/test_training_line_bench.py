"""`qc bench line`: a model's decisions on fresh parts of the synthetic line, counted against the truth."""
from __future__ import annotations

from models_support import build_version

from models.onnx_build import constant_model_bytes
from training import line_bench


def _constant(tmp_path, score: float, thresholds: tuple[float, float]):
    """A real ONNX model that scores every part ``score``, at ``thresholds``."""
    return build_version(tmp_path / f"reg-{thresholds}", "1.0.0", input_hw=(64, 64), thresholds=thresholds,
                         model_bytes=constant_model_bytes(score, (64, 64)))


def test_line_bench_counts_false_rejects_and_escapes_against_the_generators_truth(tmp_path):
    # Every part scores 0.5: above both thresholds everything is rejected, below both everything passes.
    reject_all = line_bench.run(_constant(tmp_path, 0.5, (0.1, 0.2)), parts=60, progress=False)
    pass_all = line_bench.run(_constant(tmp_path, 0.5, (0.8, 0.9)), parts=60, progress=False)
    for result in (reject_all, pass_all):
        assert result["parts"] == 60
        assert result["good"] + result["defects"] == 60
        assert 0 < result["defects"] < 30  # the line's mix: about 10 % defects
        assert result["review_share"] == 0.0
    assert reject_all["false_reject_rate"] == 1.0
    assert reject_all["escape_rate"] == 0.0
    assert reject_all["artefact_false_reject_rate"] == 1.0
    assert pass_all["false_reject_rate"] == 0.0
    assert pass_all["escape_rate"] == 1.0
    assert pass_all["met"] == {"review_share": True, "false_reject_rate": True, "escape_rate": False}
    low, high = pass_all["intervals95"]["escape_rate"]
    assert low < 1.0
    assert high == 1.0


def test_line_bench_holds_the_band_for_review_at_the_models_own_thresholds(tmp_path):
    hold_all = line_bench.run(_constant(tmp_path, 0.5, (0.1, 0.9)), parts=30, progress=False)
    assert hold_all["review_share"] == 1.0
    assert hold_all["held"] == 30
    assert hold_all["false_reject_rate"] == 0.0
    assert hold_all["escape_rate"] == 0.0
