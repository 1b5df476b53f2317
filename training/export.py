"""ONNX export with a parity check on real images, and a single-thread latency measurement.

The model is exported in eval mode (BatchNorm folded into the convolutions by the
exporter's constant folding) with a fixed input of (1, C, H, W) named as the
manifest says and one output ``score`` of shape (1, 1). The export is refused
(ParityError) unless onnxruntime and PyTorch agree on every check image to within
``tolerance`` -- images the caller takes from validation, preprocessed exactly as
the edge preprocesses frames.
"""
from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass

import numpy as np

from training.errors import ExportError, ParityError
from training.scaling import Normalisation, to_tensor

OPSET = 17
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    model_bytes: bytes
    parity_max_diff: float  # max |torch - onnxruntime| score over the check images
    parity_images: int


def export_onnx(model, input_hw: tuple[int, int], norm: Normalisation, check_images: np.ndarray,
                input_name: str = "image", output_name: str = "score", tolerance: float = PARITY_TOLERANCE,
                max_check: int = 256) -> ExportResult:
    """Export ``model`` (training.net.DefectNet) and prove parity on ``check_images`` (N, H, W uint8)."""
    import torch

    if len(check_images) == 0:
        raise ExportError("parity check needs at least one real image")
    model = model.to("cpu").eval()
    dummy = torch.zeros(1, 1, *input_hw)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is still supported
            torch.onnx.export(model, (dummy,), buf, input_names=[input_name], output_names=[output_name],
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
    except Exception as exc:  # torch raises many kinds (OnnxExporterError, RuntimeError, ...)
        raise ExportError(f"ONNX export failed: {exc}") from exc
    data = _tidy(buf.getvalue())
    from training.train import predict  # batched by pixel count: 256 images of 300 px in 8 views are 24 GB at once

    images = check_images[:max_check]
    tensors = to_tensor(images, norm)
    ref = predict(model, images, norm).astype(np.float64)
    session = session_for(data, threads=1)
    got = np.array([session.run([output_name], {input_name: tensors[i:i + 1]})[0].reshape(-1)[0]
                    for i in range(len(images))], dtype=np.float64)
    diff = float(np.max(np.abs(ref - got)))
    if not np.isfinite(diff) or diff >= tolerance:
        raise ParityError(f"onnxruntime and PyTorch scores differ by up to {diff:.3g} on {len(images)} "
                          f"validation images (tolerance {tolerance:g}); export refused")
    return ExportResult(data, diff, len(images))


def _tidy(data: bytes) -> bytes:
    """Check the graph and drop the exporter's doc strings (smaller file, no local paths inside)."""
    import onnx

    try:
        model = onnx.load_from_string(data)
        for node in model.graph.node:
            node.doc_string = ""
        model.producer_name = "qcloop.training"
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and protobuf decode errors
        raise ExportError(f"exported ONNX model is invalid: {exc}") from exc
    return model.SerializeToString()


def session_for(data: bytes, threads: int = 1):
    """An onnxruntime session configured like the edge's (no spinning, full graph optimisation)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the exported model: {exc}") from exc


def latency_ms(data: bytes, input_shape: tuple[int, ...], input_name: str = "image", runs: int = 200,
               warmup: int = 20) -> float:
    """Median single-thread onnxruntime inference time in milliseconds."""
    session = session_for(data, threads=1)
    x = np.random.default_rng(0).normal(0, 1, input_shape).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {input_name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {input_name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)
