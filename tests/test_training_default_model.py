"""The built-in default model (models/default) loads in the edge and separates clear defects from good parts."""
from __future__ import annotations

import numpy as np
import pytest

from edge.detector import Detector
from hardware.synthetic import DEFECT_KINDS, PartGenerator, add_defect
from models.builtin import DEFAULT_DIR, available
from models.manifest import load_manifest
from training.data import _find_part

pytestmark = pytest.mark.skipif(not available(), reason="models/default not built (qc train default-model)")


def test_default_model_is_small_and_described():
    manifest = load_manifest(DEFAULT_DIR / "manifest.json")
    assert manifest.version == "0.1.0"
    assert manifest.bytes < 1_000_000
    assert manifest.input.roi is not None and manifest.input.colour == "gray"
    assert manifest.metrics["parity_max_abs_diff"] < 1e-4
    assert 0.0 <= manifest.thresholds.pass_below <= manifest.thresholds.reject_above <= 1.0


def test_default_model_scores_clear_defects_above_good_parts():
    det = Detector.load(DEFAULT_DIR)
    gen = PartGenerator(seed=4242, defect_rate=0.0, artefact_rate=0.0)  # not a seed the model saw
    rng = np.random.default_rng(1)
    good, bad = [], []
    for i in range(20):
        clean = gen.render_clean(i)
        good.append(det.score(clean))
        frame, _ = add_defect(clean, DEFECT_KINDS[i % len(DEFECT_KINDS)], rng, severity=1.0, part=_find_part(clean))
        bad.append(det.score(frame))
    assert np.mean(bad) > np.mean(good)
