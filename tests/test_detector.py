"""The edge's ONNX detector against real models: verification at load, preprocessing, scoring, failures."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from models_support import build_version, tiny_model

from edge.detector import Detector
from edge.errors import InferenceError, ModelError, ModelMismatchError
from models.errors import IntegrityError
from models.manifest import Thresholds
from models.onnx_build import constant_model_bytes, threshold_model_bytes


def _frame(h: int, w: int, value: int = 200, colour: bool = False) -> np.ndarray:
    return np.full((h, w, 3) if colour else (h, w), value, dtype=np.uint8)


def test_tiny_model_scores_a_frame_like_onnxruntime_does(tmp_path):
    path = build_version(tmp_path, "1.0.0", thresholds=(0.2, 0.8))
    det = Detector.load(path)
    assert det.version == "1.0.0" and det.input_hw == (64, 64)
    assert det.thresholds == Thresholds(0.2, 0.8) and det.manifest.version == "1.0.0"
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    tensor = det.preprocess(frame)
    assert tensor.shape == (1, 1, 64, 64)
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    np.testing.assert_allclose(tensor[0, 0], frame / 255.0, rtol=1e-6)
    reference = ort.InferenceSession(tiny_model((64, 64)), providers=["CPUExecutionProvider"])
    expected = float(reference.run(["score"], {"image": tensor})[0][0, 0])
    score = det.score(frame)
    assert 0.0 <= score <= 1.0 and score == pytest.approx(expected, abs=1e-6)
    assert det.score(frame) == score  # deterministic


def test_dark_spot_scores_higher_than_clean_part(tmp_path):
    path = build_version(tmp_path, "1.0.0", model_bytes=threshold_model_bytes((64, 64)))
    det = Detector.load(path, warmup=1)
    clean = _frame(1024, 1280, 190)
    spotted = clean.copy()
    spotted[500:540, 600:640] = 60  # a pit, about 0.5 darker than the part
    assert det.score(clean) < 0.05 < 0.95 < det.score(spotted)


def test_sha256_mismatch_refused(tmp_path):
    path = build_version(tmp_path, "1.0.0")
    model = path / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        Detector.load(path)


def test_wrong_input_shape_in_manifest_refused(tmp_path):
    path = build_version(tmp_path, "1.0.0")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["input"]["shape"] = [1, 1, 32, 32]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelMismatchError, match=r"manifest says \[1, 1, 32, 32\], model has \[1, 1, 64, 64\]"):
        Detector.load(path)


def test_wrong_output_name_refused(tmp_path):
    path = build_version(tmp_path, "1.0.0")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["output"]["name"] = "probability"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelMismatchError, match="'probability'.*'score'"):
        Detector.load(path)


def test_nan_model_raises_inference_error(tmp_path):
    path = build_version(tmp_path, "1.0.0", model_bytes=constant_model_bytes(float("nan")))
    with pytest.raises(InferenceError, match="nan"):
        Detector.load(path)  # the warm-up is the self-test
    det = Detector.load(path, warmup=0)
    with pytest.raises(InferenceError, match="not a finite value"):
        det.score(_frame(64, 64))


def test_constant_and_out_of_range_models(tmp_path):
    det = Detector.load(build_version(tmp_path / "a", "1.0.0", model_bytes=constant_model_bytes(0.9)))
    assert det.score(_frame(480, 640, colour=True)) == pytest.approx(0.9)
    over = Detector.load(build_version(tmp_path / "b", "1.0.0", model_bytes=constant_model_bytes(1.5)), warmup=0)
    with pytest.raises(InferenceError, match="1.5"):
        over.score(_frame(64, 64))


def test_runtime_errors_are_wrapped(tmp_path):
    det = Detector.load(build_version(tmp_path, "1.0.0"))
    with pytest.raises(InferenceError, match="inference failed"):
        det.infer(np.zeros((1, 1, 32, 32), dtype=np.float32))


def test_roi_crop_and_colour_conversion(tmp_path):
    # A colour (rgb) model with a manifest ROI of the right half of the frame.
    path = build_version(tmp_path, "1.0.0", input_hw=(32, 48), colour="rgb", roi=(0.5, 0.0, 0.5, 1.0))
    det = Detector.load(path)
    bgr = np.zeros((64, 192, 3), dtype=np.uint8)
    bgr[:, 96:] = (10, 20, 30)  # right half: B=10, G=20, R=30
    tensor = det.preprocess(bgr)
    assert tensor.shape == (1, 3, 32, 48)
    np.testing.assert_allclose(tensor[0, :, 5, 5], np.array([30, 20, 10]) / 255.0, rtol=1e-6)  # RGB order
    grey = np.full((64, 192), 100, dtype=np.uint8)
    assert np.allclose(det.preprocess(grey), 100 / 255.0)  # grey feeds all three channels
    # A pixel ROI overrides the manifest's: the left half (black) now.
    left = Detector.load(path, roi=(0, 0, 96, 64))
    assert np.allclose(left.preprocess(bgr), 0.0)
    # A grey model fed a colour frame converts it to grey.
    grey_det = Detector.load(build_version(tmp_path / "g", "1.0.0"))
    t = grey_det.preprocess(_frame(128, 128, 77, colour=True))
    assert t.shape == (1, 1, 64, 64) and np.allclose(t, 77 / 255.0)


def test_frame_too_small_for_roi_refused(tmp_path):
    det = Detector.load(build_version(tmp_path, "1.0.0"), roi=(600, 400, 200, 200))
    with pytest.raises(ModelMismatchError, match="frame 640x480 is too small"):
        det.preprocess(_frame(480, 640))
    assert det.preprocess(_frame(1024, 1280)).shape == (1, 1, 64, 64)


def test_grey_1280x1024_frame_accepted(tmp_path):
    det = Detector.load(build_version(tmp_path, "1.0.0"), threads=1, spinning=False)
    frame = _frame(1024, 1280, 128)
    frame[:512] = 255
    tensor = det.preprocess(frame)
    assert tensor.shape == (1, 1, 64, 64)
    # INTER_AREA averages: the top half white, the bottom half mid-grey.
    assert np.allclose(tensor[0, 0, :32], 1.0) and np.allclose(tensor[0, 0, 32:], 128 / 255.0)
    assert 0.0 <= det.score(frame) <= 1.0


def test_scaling_uses_manifest_mean_and_std(tmp_path):
    path = build_version(tmp_path, "1.0.0")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["input"].update(mean=[0.5], std=[0.25])
    (path / "manifest.json").write_text(json.dumps(manifest))
    det = Detector.load(path)
    assert np.allclose(det.preprocess(_frame(64, 64, 255)), (1.0 - 0.5) / 0.25)


def test_bad_arguments_refused(tmp_path):
    path = build_version(tmp_path, "1.0.0")
    with pytest.raises(ModelError, match="threads"):
        Detector.load(path, threads=0)
    with pytest.raises(ModelMismatchError, match="roi"):
        Detector.load(path, roi=(0, 0, 0, 10))
    with pytest.raises(ModelMismatchError, match="shape"):
        Detector.load(path).preprocess(np.zeros((10, 10, 4), dtype=np.uint8))
