"""The ONNX defect detector that scores every part: frame -> tensor -> onnxruntime -> score in [0, 1].

``Detector.load`` trusts nothing: it reads the manifest, checks the model bytes
against its size and sha256 (and hands those same verified bytes to onnxruntime,
so the file cannot change between check and load), checks the session's input and
output against the manifest, and runs warm-up inferences through ``infer`` -- a
model that cannot produce a valid score is refused before it sees a real part.

This is the hot path (hundreds of parts a second), so everything that can be is
decided at load: scaling as per-channel float32 factors, the feed name, the output
list, the colour conversion, and the ROI in pixels for the last frame size seen.
``preprocess`` (OpenCV) and ``infer`` (onnxruntime) both release the GIL, which lets
the pipeline run them on different threads; neither keeps per-call state.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge.errors import InferenceError, ModelError, ModelMismatchError
from models.errors import IntegrityError
from models.manifest import MANIFEST_NAME, Manifest, Thresholds, load_manifest, verify_model_bytes
from models.preprocess import resize_to, roi_pixels

_ORT_TYPE = "tensor(float)"


class Detector:
    """A loaded, verified, warmed-up model. Build with ``Detector.load``."""

    def __init__(
        self,
        manifest: Manifest,
        session: ort.InferenceSession,
        roi: tuple[int, int, int, int] | None = None,
        source: str = "",
    ):
        self._manifest = manifest
        self._session = session
        self._source = source
        spec = manifest.input
        self._in_name = spec.name
        self._outputs = [manifest.output.name]
        self._channels = spec.channels
        self._hw = spec.hw
        c = self._channels
        mean = np.resize(np.asarray(spec.mean, dtype=np.float64), c)
        std = np.resize(np.asarray(spec.std, dtype=np.float64), c)
        # ((p * scale) - mean) / std == p * a + b, one multiply-add per pixel.
        self._a = tuple(np.float32(spec.scale / s) for s in std)
        self._b = tuple(np.float32(-m / s) for m, s in zip(mean, std))
        # Frames are BGR (hardware.base.Frame); an rgb model reads the channels reversed.
        self._src_channel = (2, 1, 0) if spec.colour == "rgb" else (0, 1, 2)
        if roi is not None:
            if len(roi) != 4 or min(roi[:2]) < 0 or min(roi[2:]) <= 0:
                raise ModelMismatchError(f"roi must be (x, y, w, h) pixels with x, y >= 0 and w, h > 0, got {roi}")
        self._roi_px = None if roi is None else (int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3]))
        self._roi_frac = spec.roi
        self._crop_cache: tuple[tuple[int, int], tuple[slice, slice]] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        threads: int = 1,
        spinning: bool = False,
        roi: tuple[int, int, int, int] | None = None,
        warmup: int = 3,
    ) -> Detector:
        """Load the version in ``model_dir`` (manifest.json + model file), or raise.

        Raises models.errors.ManifestError / IntegrityError for untrusted files,
        ModelMismatchError when the model does not match its manifest, ModelError when
        onnxruntime cannot load it, InferenceError when a warm-up run gives no valid score.
        """
        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir / MANIFEST_NAME)
        model_path = model_dir / manifest.file
        try:
            data = model_path.read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(f"{model_path}: model file missing (manifest {manifest.version})") from exc
        except OSError as exc:
            raise IntegrityError(f"{model_path}: cannot read model file: {exc}") from exc
        verify_model_bytes(manifest, data, source=str(model_path))
        session = _session(data, threads, spinning, model_path)
        _check_io(session, manifest, model_path)
        detector = cls(manifest, session, roi=roi, source=str(model_path))
        if warmup > 0:
            # A mid-grey tensor built directly: the frame size (and a pixel ROI) is not known yet.
            tensor = np.empty((1, detector._channels, *detector._hw), dtype=np.float32)
            for c in range(detector._channels):
                tensor[0, c] = 128 * detector._a[c] + detector._b[c]
            for _ in range(warmup):
                detector.infer(tensor)
        return detector

    # ------------------------------------------------------------------ properties
    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def thresholds(self) -> Thresholds:
        return self._manifest.thresholds

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self._hw

    def __repr__(self) -> str:
        return f"Detector(version={self.version!r}, input={self._manifest.input.shape}, source={self._source!r})"

    # ------------------------------------------------------------------ hot path
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Frame (HxW grey or HxWx3 BGR) -> (1, C, H, W) float32 tensor for this model."""
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ModelMismatchError(f"frame must be HxW grey or HxWx3 BGR, got shape {image.shape}")
        rows, cols = self._crop(image.shape[0], image.shape[1])
        crop = image[rows, cols]
        colour_frame = crop.ndim == 3
        if self._channels == 1 and colour_frame:
            # Convert before resizing: one channel is a third of the resize work.
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        if crop.shape[0] != self._hw[0] or crop.shape[1] != self._hw[1]:
            crop = resize_to(crop, self._hw)
        out = np.empty((1, self._channels, self._hw[0], self._hw[1]), dtype=np.float32)
        a, b = self._a, self._b
        if self._channels == 1:
            np.multiply(crop, a[0], out=out[0, 0], casting="unsafe")
            out[0, 0] += b[0]
        else:
            for c in range(3):
                # A grey frame feeds all three channels of a colour model.
                src = crop[:, :, self._src_channel[c]] if colour_frame else crop
                np.multiply(src, a[c], out=out[0, c], casting="unsafe")
                out[0, c] += b[c]
        return out

    def infer(self, tensor: np.ndarray) -> float:
        """Run the model on a prepared tensor; the score, or InferenceError."""
        try:
            result = self._session.run(self._outputs, {self._in_name: tensor})[0]
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise InferenceError(f"model {self.version}: inference failed: {exc}") from exc
        if result.size != 1:
            raise InferenceError(
                f"model {self.version}: output {self._outputs[0]!r} has {result.size} values, expected 1"
            )
        score = float(result.reshape(-1)[0])
        if not 0.0 <= score <= 1.0:  # also catches NaN
            raise InferenceError(f"model {self.version}: score {score} is not a finite value in [0, 1]")
        return score

    def score(self, image: np.ndarray) -> float:
        return self.infer(self.preprocess(image))

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region of the frame the model inspects (a view, not a copy): what a reviewer needs to see."""
        rows, cols = self._crop(image.shape[0], image.shape[1])
        return image[rows, cols]

    def region(self, height: int, width: int) -> tuple[slice, slice]:
        """The rows and columns of a ``height`` x ``width`` frame the model inspects."""
        return self._crop(height, width)

    def _crop(self, height: int, width: int) -> tuple[slice, slice]:
        cached = self._crop_cache  # one read: another thread may replace it, never mutate it
        if cached is not None and cached[0] == (height, width):
            return cached[1]
        if self._roi_px is not None:
            x, y, w, h = self._roi_px
            what = "configured roi"
        elif self._roi_frac is not None:
            x, y, w, h = roi_pixels(self._roi_frac, width, height)
            what = f"manifest roi {list(self._roi_frac)}"
        else:
            x, y, w, h = 0, 0, width, height
            what = "frame"
        if w < 1 or h < 1 or x + w > width or y + h > height:
            raise ModelMismatchError(
                f"frame {width}x{height} is too small for the {what} "
                f"(x={x}, y={y}, w={w}, h={h}) of model {self.version}"
            )
        slices = (slice(y, y + h), slice(x, x + w))
        self._crop_cache = ((height, width), slices)
        return slices


def _session(data: bytes, threads: int, spinning: bool, source: Path) -> ort.InferenceSession:
    if threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        # Spinning workers busy-wait between parts and starve the capture thread of its core.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidGraph, InvalidProtobuf, Fail ... from the C++ runtime
        raise ModelError(f"{source}: onnxruntime cannot load the model: {exc}") from exc


def _check_io(session: ort.InferenceSession, manifest: Manifest, source: Path) -> None:
    spec = manifest.input
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelMismatchError(
            f"{source}: model has {len(inputs)} inputs "
            f"({', '.join(i.name for i in inputs)}), expected one: {spec.name!r}"
        )
    actual = inputs[0]
    if actual.name != spec.name:
        raise ModelMismatchError(f"{source}: input name: manifest says {spec.name!r}, model has {actual.name!r}")
    if actual.type != _ORT_TYPE:
        raise ModelMismatchError(f"{source}: input {spec.name!r} type: expected {_ORT_TYPE}, model has {actual.type}")
    dims = list(actual.shape)
    # A symbolic dimension (str or None) accepts the manifest's fixed size.
    if len(dims) != 4 or any(isinstance(d, int) and d != want for d, want in zip(dims, spec.shape)):
        raise ModelMismatchError(
            f"{source}: input {spec.name!r} shape: manifest says {list(spec.shape)}, model has {dims}"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    out = manifest.output.name
    if out not in outputs:
        raise ModelMismatchError(f"{source}: output name: manifest says {out!r}, model has {sorted(outputs)}")
    shape = outputs[out].shape
    if all(isinstance(d, int) for d in shape) and int(np.prod(shape)) != 1:
        raise ModelMismatchError(f"{source}: output {out!r} shape: expected one score, model has {list(shape)}")
