"""Train -> export -> calibrate on a tiny synthetic set; the result loads in the edge and scores alike."""
from __future__ import annotations

import numpy as np
import pytest

from edge.detector import Detector
from hardware.synthetic import PartGenerator
from models.registry import Registry
from training.data import ImageSet, fit_input, roi_fractions
from training.errors import ParityError
from training.export import export_onnx
from training.family import NetSpec
from training.pipeline import build_model
from training.train import TrainConfig, predict

HW = (48, 48)
SEED = 11


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    gen = PartGenerator(seed=SEED, defect_rate=0.5)
    roi = roi_fractions(gen.roi(), gen.width, gen.height)
    data = ImageSet.from_synthetic(96, HW, seed=SEED, defect_rate=0.5)
    for i, s in enumerate(data.samples):
        s.meta["split"] = ("train", "train", "val", "golden")[i % 4]
    cfg = TrainConfig(epochs=1, batch_size=16, net=NetSpec(widths=(8, 8, 16)), progress=False, seed=SEED)
    result = build_model(data.dedup(), "1.2.3", cfg, roi=roi, log=None)
    root = tmp_path_factory.mktemp("registry")
    where = Registry(root).add(result.manifest, result.model_bytes)
    return result, where, gen


def test_manifest_carries_dataset_calibration_and_parity(built):
    result, _, _ = built
    m = result.manifest
    assert m.input.shape == (1, 1, *HW)
    assert m.input.name == "image"
    assert m.output.name == "score"
    assert m.thresholds.pass_below == result.calibration.pass_below
    assert m.dataset["counts"]["val"]["def"] > 0 and len(m.dataset["hash"]) == 64
    assert m.metrics["parity_max_abs_diff"] < 1e-4 and m.metrics["parity_images"] == 24
    assert m.metrics["calibration"]["escape_budget"] == 0.005
    assert m.metrics["infer_ms_1thread"] > 0 and "golden" in m.metrics


def test_edge_detector_loads_and_matches_training_scores(built):
    result, where, gen = built
    det = Detector.load(where)
    frames = [gen.render(i)[0] for i in range(200, 206)]
    edge_scores = np.array([det.score(f) for f in frames])
    crops = np.stack([fit_input(f, HW, result.manifest.input.roi) for f in frames])
    train_scores = predict(result.training.model, crops, result.training.norm)
    assert np.max(np.abs(edge_scores - train_scores)) < 1e-4


def test_export_refuses_when_parity_fails(built):
    result, _, _ = built
    crops = np.zeros((2, *HW), np.uint8)
    with pytest.raises(ParityError, match="export refused"):
        export_onnx(result.training.model, HW, result.training.norm, crops, tolerance=0.0)


def test_training_is_reproducible():
    data = ImageSet.from_synthetic(32, HW, seed=3, defect_rate=0.5)
    X, y = data.arrays()
    cfg = TrainConfig(epochs=1, batch_size=16, net=NetSpec(widths=(8, 8)), progress=False, seed=5)
    from training.train import train

    a = train(X, y, X[:8], y[:8], cfg, log=None)
    b = train(X, y, X[:8], y[:8], cfg, log=None)
    np.testing.assert_array_equal(predict(a.model, X, a.norm), predict(b.model, X, b.norm))


def test_dihedral_mean_model_scores_every_rotation_and_flip_alike_on_the_edge(tmp_path):
    """The released graph averages the 8 views: the edge scores a part the same however it lies,
    and the plain net (one view) does not."""
    data = ImageSet.from_synthetic(64, HW, seed=SEED, defect_rate=0.5).dedup()
    cfg = TrainConfig(epochs=1, batch_size=16, net=NetSpec(widths=(8, 8, 16)), progress=False, seed=SEED, dihedral_mean=True)
    result = build_model(data, "1.0.0", cfg, log=None)
    assert result.export.parity_max_diff < 1e-4
    det = Detector.load(Registry(tmp_path).add(result.manifest, result.model_bytes), roi=(0, 0, HW[1], HW[0]))
    image = data.samples[0].image
    views = [np.rot90(image, k) for k in range(4)] + [np.rot90(image, k)[:, ::-1] for k in range(4)]
    scores = np.array([det.score(np.ascontiguousarray(v)) for v in views])
    assert np.ptp(scores) < 1e-5
    single = result.training.model.net
    one_view = predict(single, np.stack(views), result.training.norm)
    assert np.ptp(one_view) > 1e-3 and abs(scores[0] - one_view.mean()) < 1e-4


def test_export_parity_check_scores_in_batches_of_the_pixel_budget():
    """The parity check must not push all its images through the net at once: 256 images of
    300 px in 8 views held 24 GB and were killed. It scores within training.train.PREDICT_PIXELS."""
    from training.net import DihedralMean, build
    from training.scaling import Normalisation
    from training.train import PREDICT_PIXELS

    side = 64
    net = DihedralMean(build(NetSpec("defectnet", widths=(4, 8)))).eval()
    seen: list[int] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[0])))
    images = np.random.default_rng(0).integers(0, 256, (256, side, side), dtype=np.uint8)
    exported = export_onnx(net, (side, side), Normalisation(1 / 255, 0.5, 0.5), images)
    assert exported.parity_images == 256
    budget = PREDICT_PIXELS // (8 * side * side)
    assert budget < 256
    assert max(seen) <= budget
    assert sum(seen[1:]) >= 256


def test_hard_negatives_from_verdicts_are_shown_more_often_per_epoch():
    """A good part a reviewer ruled "not a defect: glare" is the line's own lighting: each training
    epoch shows it HARD_NEGATIVE_REPEATS times; the class mix the head is shifted back to is the images'."""
    import io

    from training.data import HARD_NEGATIVE_REPEATS
    from training.errors import TrainError
    from training.train import train

    data = ImageSet.from_synthetic(48, HW, seed=SEED, defect_rate=0.5)
    good = [s for s in data.samples if s.label == 0][:6]
    for s in good:
        s.meta["hard_negative"] = True
    reps = data.repeats()
    assert reps.sum() == len(data) + 6 * (HARD_NEGATIVE_REPEATS - 1) and set(reps.tolist()) == {1, HARD_NEGATIVE_REPEATS}
    X, y = data.arrays()
    cfg = TrainConfig(epochs=1, batch_size=16, net=NetSpec(widths=(8, 8)), progress=False, seed=SEED)
    log = io.StringIO()
    result = train(X, y, X[:8], y[:8], cfg, log=log, repeats=reps)
    assert f"on 48 images and {6 * (HARD_NEGATIVE_REPEATS - 1)} more showings of hard negatives" in log.getvalue()
    assert result.train_counts == {"ok": int((y == 0).sum()), "def": int(y.sum())}
    with pytest.raises(TrainError, match="repeats"):
        train(X, y, X[:8], y[:8], cfg, log=None, repeats=np.zeros(len(y), int))


def test_the_loop_files_a_ruled_out_artefact_as_a_hard_negative():
    from training.loop_sim import Item, _sample

    image = np.zeros(HW, np.uint8)
    glare = _sample(Item(image, 0, 1, "train", artefact="glare"))
    assert glare.meta["hard_negative"] and glare.meta["artefacts"] == ["glare"]
    assert not _sample(Item(image, 0, 2, "train")).meta.get("hard_negative")
    assert not _sample(Item(image, 1, 3, "train", artefact="glare")).meta.get("hard_negative")
