"""Warm start: a released ONNX model read back into the training network scores exactly as the
edge does, fine-tuning keeps its folded BatchNorm, and another architecture is refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from edge.detector import Detector
from models.builtin import DEFAULT_DIR
from models.manifest import MANIFEST_NAME, load_manifest
from training.errors import TrainError
from training.family import NetSpec
from training.net import DihedralMean
from training.train import TrainConfig, predict, train
from training.warmstart import load_parent, parent_spec

#: The built-in model's network and how many views of a part it scores, as its manifest says.
BUILTIN = load_manifest(DEFAULT_DIR / MANIFEST_NAME)
BUILTIN_NET = parent_spec(BUILTIN, NetSpec())
BUILTIN_VIEWS = (BUILTIN.detector or {}).get("views", 1)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 128), dtype=np.uint8)


def test_parent_weights_score_like_the_released_model():
    net, norm = load_parent(DEFAULT_DIR, BUILTIN_NET)
    if BUILTIN_VIEWS == 8:
        net = DihedralMean(net)
    detector = Detector.load(DEFAULT_DIR, roi=(0, 0, 128, 128))  # the images are already the model's region
    # Parts of the line, not noise: on noise the wide net saturates at 1.0, where float32 rounding
    # in the last digits of the logit is all that differs.
    from training.data import ImageSet

    images = np.stack([s.image for s in ImageSet.from_synthetic(6, (128, 128), seed=99, defect_rate=0.5).samples])
    ours = predict(net.eval(), images, norm).ravel()
    edge = np.array([detector.infer(detector.preprocess(img)) for img in images]).ravel()
    assert np.abs(ours - edge).max() < 1e-4


def test_fine_tuning_starts_from_the_parent_and_keeps_batchnorm_statistics():
    import torch

    images = _images(64, 1)
    labels = np.arange(64) % 2
    parent, _ = load_parent(DEFAULT_DIR, BUILTIN_NET)
    result = train(images, labels, images[:16], labels[:16],
                   TrainConfig(epochs=1, batch_size=32, lr=1e-4, progress=False, augment=None,
                               init_model=DEFAULT_DIR, net=BUILTIN_NET), log=None)
    bns = [m for m in result.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(bn.running_mean == 0) for bn in bns)  # batch statistics never replaced them
    conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv0 = next(m for m in parent.modules() if isinstance(m, torch.nn.Conv2d))
    delta = (conv.weight - conv0.weight).abs().max().item()
    assert 0 < delta < 0.05  # moved a little from the parent, not re-initialised


def test_another_architecture_is_refused_with_advice():
    with pytest.raises(TrainError, match="another architecture.*warm_start = false"):
        load_parent(DEFAULT_DIR, (4, 8))


def test_a_run_of_a_few_batches_trains_without_a_schedule():
    images = _images(80, 2)  # 5 batches: one-cycle's warm-up would be 0 steps (a division by zero)
    labels = np.arange(80) % 2
    result = train(images, labels, images[:8], labels[:8],
                   TrainConfig(epochs=1, batch_size=16, progress=False, augment=None), log=None)
    assert len(result.history) == 1 and np.isfinite(result.history[0].loss)
