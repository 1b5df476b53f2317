"""`qc bench line`: the built-in model's decisions on fresh parts of its own line, counted against the truth."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from models.builtin import DEFAULT_DIR, available
from models.manifest import MANIFEST_NAME, Thresholds, load_manifest, write_manifest
from training import line_bench

pytestmark = pytest.mark.skipif(not available(), reason="models/default not built (qc train default-model)")


def _with_thresholds(tmp_path, pass_below: float, reject_above: float):
    folder = tmp_path / f"m-{pass_below}-{reject_above}"
    shutil.copytree(DEFAULT_DIR, folder)
    manifest = load_manifest(folder / MANIFEST_NAME)
    write_manifest(folder / MANIFEST_NAME, dataclasses.replace(manifest, thresholds=Thresholds(pass_below,
                                                                                                 reject_above)))
    return folder


def test_line_bench_counts_false_rejects_and_escapes_against_the_generators_truth(tmp_path):
    # Rejecting everything scraps every good part and passes no defect; passing everything the reverse.
    reject_all = line_bench.run(_with_thresholds(tmp_path, 0.0, 0.0), parts=60, progress=False)
    pass_all = line_bench.run(_with_thresholds(tmp_path, 1.0, 1.0), parts=60, progress=False)
    for result in (reject_all, pass_all):
        assert result["parts"] == 60
        assert result["good"] + result["defects"] == 60
        assert 0 < result["defects"] < 30  # the line's mix: about 10 % defects
        assert result["review_share"] == 0.0
    assert reject_all["false_reject_rate"] == 1.0
    assert reject_all["escape_rate"] == 0.0
    assert pass_all["false_reject_rate"] == 0.0
    assert pass_all["escape_rate"] == 1.0
    assert pass_all["met"] == {"review_share": True, "false_reject_rate": True, "escape_rate": False}
    low, high = pass_all["intervals95"]["escape_rate"]
    assert low < 1.0 and high == 1.0


def test_line_bench_holds_the_band_for_review_at_the_models_own_thresholds(tmp_path):
    hold_all = line_bench.run(_with_thresholds(tmp_path, 0.0, 1.0), parts=30, progress=False)
    assert hold_all["review_share"] == 1.0 and hold_all["held"] == 30
    assert hold_all["false_reject_rate"] == 0.0 and hold_all["escape_rate"] == 0.0
