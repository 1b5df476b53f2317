"""Detector families end to end: the pretrained lite0 family trains a few steps, exports, loads in the
edge's Detector and scores as PyTorch does; its ImageNet stem is folded to grey exactly; warm start
reads it back; int8 export checks its own parity; the trainer picks bf16 only where it is native."""
from __future__ import annotations

import numpy as np
import pytest

from edge.detector import Detector
from models.registry import Registry
from training.data import ImageSet
from training.defaults import PRETRAINED_BELOW, choose, epochs_for
from training.errors import TrainError
from training.family import NetSpec
from training.net import build
from training.pipeline import build_model
from training.train import TrainConfig, bf16_supported, predict, resolve_precision, train
from training.warmstart import load_parent

HW = (48, 48)
TINY = NetSpec("lite0", blocks=3, pretrained=False)  # the first three Lite0 blocks, random weights: fast


def _data(n: int = 96, seed: int = 21) -> ImageSet:
    data = ImageSet.from_synthetic(n, HW, seed=seed, defect_rate=0.5)
    for i, s in enumerate(data.samples):
        s.meta["split"] = ("train", "train", "val", "golden")[i % 4]
    return data.dedup()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    cfg = TrainConfig(epochs=2, batch_size=16, net=TINY, progress=False, seed=3)
    result = build_model(_data(), "2.0.0", cfg, log=None)
    where = Registry(tmp_path_factory.mktemp("registry")).add(result.manifest, result.model_bytes)
    return result, where


def test_the_manifest_says_which_network_the_file_is(released):
    result, _ = released
    det = result.manifest.detector
    assert det["family"] == "lite0"
    assert det["blocks"] == 3
    assert det["input_hw"] == list(HW)
    assert det["views"] == 1 and det["precision"] == "fp32"
    # The backbone's own scaling, pixel / 127.5 - 1, not one fitted to the data.
    assert result.manifest.input.mean == (0.5,) and result.manifest.input.std == (0.5,)


def test_edge_detector_scores_the_released_lite0_model_as_pytorch_does(released):
    result, where = released
    det = Detector.load(where)
    images, _ = _data(12, seed=99).arrays()
    edge = np.array([det.score(im) for im in images])
    ours = predict(result.training.model, images, result.training.norm)
    assert np.max(np.abs(edge - ours)) < 1e-4
    assert np.ptp(edge) > 0  # scores depend on the part, not a constant


def test_warm_start_reads_the_released_lite0_model_back(released):
    result, where = released
    net, norm = load_parent(where, TINY)
    images, _ = _data(8, seed=98).arrays()
    assert np.max(np.abs(predict(net, images, norm) - predict(result.training.model, images, norm))) < 1e-4
    with pytest.raises(TrainError, match="another architecture"):
        load_parent(where, NetSpec("lite0", blocks=4))
    with pytest.raises(TrainError, match="another architecture"):
        load_parent(where, NetSpec("defectnet"))


def test_imagenet_stem_folded_to_grey_equals_three_equal_channels():
    import torch

    from training.lite import LiteNet, imagenet_state_dict, load_imagenet

    state = imagenet_state_dict()
    net = load_imagenet(LiteNet(2), state)
    x = torch.randn(2, 1, 32, 32)
    three = torch.nn.functional.conv2d(x.repeat(1, 3, 1, 1), state["_conv_stem.weight"], stride=2, padding=1)
    assert torch.allclose(net.stem[0](x), three, atol=1e-5)
    assert torch.equal(net.blocks[1].depthwise[0].weight, state["_blocks.1._depthwise_conv.weight"])
    assert torch.equal(net.blocks[1].expand[1].running_var, state["_blocks.1._bn0.running_var"])


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_each_variant_matches_its_imagenet_checkpoint_block_for_block(variant):
    import torch

    from training.family import LITE_BLOCKS
    from training.lite import LiteNet, imagenet_state_dict, load_imagenet

    try:
        state = imagenet_state_dict(variant)
    except TrainError as exc:  # lite2's weights are an optional package
        pytest.skip(str(exc))
    n = LITE_BLOCKS[variant]
    net = load_imagenet(LiteNet(n, variant=variant), state)  # every shape must match, or it raises
    assert torch.equal(net.blocks[n - 1].project[0].weight, state[f"_blocks.{n - 1}._project_conv.weight"])
    assert f"_blocks.{n}._project_conv.weight" not in state  # the whole backbone, not a prefix of it


def test_frozen_blocks_keep_their_weights_while_the_rest_learns():
    import torch

    images, labels = _data(64).arrays()
    cfg = TrainConfig(epochs=1, batch_size=16, net=NetSpec("lite0", blocks=4, pretrained=False), freeze=2,
                      progress=False, augment=None, lr=0.05)
    torch.manual_seed(cfg.seed)
    before = build(cfg.net)
    result = train(images, labels, images[:8], labels[:8], cfg, log=None)
    after = result.model
    assert torch.equal(after.blocks[1].depthwise[0].weight, before.blocks[1].depthwise[0].weight)
    assert torch.equal(after.stem[1].running_mean, before.stem[1].running_mean)  # its BatchNorm stayed put
    assert not torch.equal(after.blocks[3].depthwise[0].weight, before.blocks[3].depthwise[0].weight)
    with pytest.raises(TrainError, match="freeze"):
        TrainConfig(net=NetSpec("defectnet"), freeze=1)


def test_int8_release_keeps_scores_within_tolerance_and_reports_both_timings():
    from training.quantize import QuantizationError, quantize_int8
    from training.train import to_tensor

    cfg = TrainConfig(epochs=1, batch_size=16, net=TINY, progress=False)
    result = build_model(_data(), "3.0.0", cfg, int8=True, log=None)
    if result.quantized is None:
        pytest.fail("the tiny model's int8 graph was refused")
    assert result.manifest.detector["precision"] == "int8"
    assert result.manifest.metrics["int8"]["max_abs_diff_vs_fp32"] <= 0.02
    assert result.manifest.metrics["int8"]["fp32_ms_1thread"] > 0 and result.quantized.int8_ms > 0
    images, _ = _data(16, seed=5).arrays()
    x = to_tensor(images, result.training.norm)
    with pytest.raises(QuantizationError, match="keeping float32"):
        quantize_int8(result.export.model_bytes, x, x, tolerance=0.0)


def test_precision_is_bf16_only_where_it_is_native():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") == ("bf16" if bf16_supported("cpu") else "fp32")
    images, labels = _data(32).arrays()
    for precision in ("fp32", "bf16"):
        r = train(images, labels, images[:8], labels[:8],
                  TrainConfig(epochs=1, batch_size=16, net=TINY, precision=precision, progress=False), log=None)
        assert r.precision == precision
        assert np.isfinite(r.history[0].loss)
        assert r.history[0].images_per_s > 0


def test_defaults_pick_the_family_and_epochs_by_data_size():
    few = choose(None, None, n_images=PRETRAINED_BELOW - 1)
    assert (few.net.family, few.size, few.views) == ("lite2", 300, 8)  # pretrained, native size, 8 views
    assert choose(None, None, n_images=PRETRAINED_BELOW).net.family == "defectnet"
    plan = choose("defectnet", 96, n_images=500, epochs=3)
    assert (plan.net.family, plan.size, plan.epochs) == ("defectnet", 96, 3)
    cfg = plan.train_config()
    assert cfg.dihedral_mean and cfg.ema is None  # the from-scratch net scores 8 views, cheaply
    lite = choose(None, None, n_images=400).train_config()
    assert lite.net.blocks == 21
    assert lite.dihedral_mean
    assert lite.ema == 0.99
    assert not choose("lite0", None).train_config().dihedral_mean
    assert choose("lite0", None, views=8).train_config().dihedral_mean
    assert epochs_for("lite0", 200) > epochs_for("lite0", 20_000)  # small sets get more passes
    with pytest.raises(TrainError, match="unknown detector family"):
        choose("resnet", None)


def test_bench_train_reports_the_trainer_against_the_raw_step():
    from training.train_bench import bench_family

    row = bench_family("lite0", 64, batch_size=16, size=HW[0], spec=TINY)
    assert row["family"] == "lite0" and row["size"] == HW[0]
    assert row["trainer_img_per_s"] > 0 and row["raw_img_per_s"] > 0
    # both throughputs are printed to 0.1 img/s, so their quotient is known to about 0.1 / raw
    assert row["ratio"] == pytest.approx(row["trainer_img_per_s"] / row["raw_img_per_s"],
                                         abs=0.1 / row["raw_img_per_s"] + 0.001)
    assert row["infer_ms_fp32"] > 0 and row["epoch_s_per_5000"] > row["epoch_s"]


def test_weight_averaging_releases_the_running_average_not_the_last_step():
    import torch

    images, labels = _data(64).arrays()
    base = dict(epochs=2, batch_size=16, net=TINY, progress=False, augment=None, lr=0.02)
    last = train(images, labels, images[:8], labels[:8], TrainConfig(**base), log=None).model
    averaged = train(images, labels, images[:8], labels[:8], TrainConfig(**base, ema=0.5), log=None).model
    # Same seed, same steps: the averaged weights lag behind the last step's.
    w_last, w_avg = last.blocks[2].project[0].weight, averaged.blocks[2].project[0].weight
    assert not torch.equal(w_last, w_avg) and torch.isfinite(w_avg).all()
    with pytest.raises(TrainError, match="ema"):
        TrainConfig(ema=1.0)


def test_the_small_data_default_lite2_with_eight_views_scores_at_the_edge_as_in_pytorch(tmp_path):
    # The default family for few labels (training.defaults): lite2 with its ImageNet weights from the
    # installed package, cut short here for speed, scoring the mean of the 8 rotations/flips.
    spec = NetSpec("lite2", blocks=3)
    cfg = TrainConfig(epochs=1, batch_size=16, net=spec, dihedral_mean=True, progress=False, seed=5)
    result = build_model(_data(), "3.0.0", cfg, log=None)
    det = result.manifest.detector
    assert (det["family"], det["blocks"], det["pretrained"], det["views"]) == ("lite2", 3, "imagenet", 8)
    edge_model = Detector.load(Registry(tmp_path).add(result.manifest, result.model_bytes))
    images, _ = _data(12, seed=98).arrays()
    edge = np.array([edge_model.score(im) for im in images])
    ours = predict(result.training.model, images, result.training.norm)
    assert np.max(np.abs(edge - ours)) < 1e-4 and np.ptp(edge) > 0
    # Eight views: a part and its mirror image score the same.
    assert abs(edge_model.score(images[0]) - edge_model.score(images[0][:, ::-1].copy())) < 1e-4
