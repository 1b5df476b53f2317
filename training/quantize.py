"""Optional int8 static quantisation of an exported model, with its own parity check and both timings.

onnxruntime's static quantiser (QDQ format, per-channel int8 weights, uint8
activations) is calibrated on real training images, preprocessed exactly as the edge
preprocesses frames. The int8 graph is accepted only when its scores stay within
``tolerance`` of the float32 graph's on the check images (a score off by more would
move parts across the calibrated thresholds); otherwise QuantizationError says by
how much, and the caller keeps the float32 model. Both single-thread timings are
reported, so an engineer sees what int8 buys on this CPU before choosing it.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import ExportError
from training.export import latency_ms, session_for

INT8_TOLERANCE = 0.02


class _QuietRootLogger:
    def __enter__(self) -> None:
        self._level = logging.getLogger().level
        logging.getLogger().setLevel(max(self._level, logging.WARNING))

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        logging.getLogger().setLevel(self._level)


class QuantizationError(ExportError):
    """The int8 graph cannot be built, or it scores too far from the float32 one."""


@dataclass(frozen=True)
class QuantizeResult:
    model_bytes: bytes
    max_diff: float  # max |int8 - float32| score over the check images
    check_images: int
    fp32_ms: float
    int8_ms: float

    def summary(self) -> str:
        return (f"int8: {self.int8_ms:.3f} ms vs float32 {self.fp32_ms:.3f} ms on 1 thread; scores within "
                f"{self.max_diff:.2g} of float32 on {self.check_images} images; {len(self.model_bytes) / 1e6:.2f} MB")


def quantize_int8(fp32_bytes: bytes, calib_tensors: np.ndarray, check_tensors: np.ndarray, input_name: str = "image",
                  output_name: str = "score", tolerance: float = INT8_TOLERANCE) -> QuantizeResult:
    """Quantise ``fp32_bytes``; calibrate on (N, C, H, W) float32 ``calib_tensors``, check on ``check_tensors``."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise QuantizationError(f"int8 quantisation needs onnxruntime's quantisation tools (and onnx): {exc}") from exc
    if len(calib_tensors) == 0 or len(check_tensors) == 0:
        raise QuantizationError("int8 quantisation needs real images to calibrate and check on")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib_tensors[i:i + 1] for i in range(len(calib_tensors)))

        def get_next(self):  # noqa: ANN201
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    quiet = _QuietRootLogger()  # the quantiser logs every rescaled bias at INFO on the root logger
    with quiet, tempfile.TemporaryDirectory(prefix="qc-int8-") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32_bytes)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # the quantiser raises many kinds (ValueError, onnx errors, RuntimeError)
            raise QuantizationError(f"int8 quantisation failed: {exc}") from exc
        data = dst.read_bytes()
    fp32, int8 = session_for(fp32_bytes), session_for(data)

    def scores(session) -> np.ndarray:  # noqa: ANN001
        return np.array([session.run([output_name], {input_name: check_tensors[i:i + 1]})[0].reshape(-1)[0]
                         for i in range(len(check_tensors))], dtype=np.float64)

    diff = float(np.max(np.abs(scores(fp32) - scores(int8))))
    if not np.isfinite(diff) or diff > tolerance:
        raise QuantizationError(f"int8 scores differ from float32 by up to {diff:.3g} on {len(check_tensors)} "
                                f"images (tolerance {tolerance:g}); keeping float32")
    shape = (1, *check_tensors.shape[1:])
    return QuantizeResult(data, diff, len(check_tensors), latency_ms(fp32_bytes, shape, input_name),
                          latency_ms(data, shape, input_name))
