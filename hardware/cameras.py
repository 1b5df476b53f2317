"""Camera backends: synthetic line, folder and video replay, live OpenCV sources.

All implement ``hardware.base.Camera``: ``capture(part_id) -> Frame`` and ``close()``,
and raise ``CameraError`` when they cannot deliver a fresh, readable frame.
``StaleGuard`` wraps any of them to catch a frozen camera that repeats one image.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from hardware.base import Camera, Frame, PartTruth
from hardware.errors import CameraError
from hardware.synthetic import ARTEFACT_KINDS, PartGenerator, add_artefact

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}


def _frame(part_id: str, image: np.ndarray, truth: PartTruth | None = None, source: str = "",
           captured_at: float | None = None, captured_mono: float | None = None, **meta) -> Frame:
    return Frame(part_id=part_id,
                 captured_at=time.time() if captured_at is None else captured_at,
                 captured_mono=time.monotonic() if captured_mono is None else captured_mono,
                 image=image, truth=truth, source=source, meta=meta)


def _to_grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class SyntheticCamera:
    """Part i of a synthetic line on the i-th capture.

    With ``prerender=N`` the first N parts are rendered up front and replayed in a
    cycle, so a benchmark times the inspection and not the renderer.
    """

    def __init__(self, generator: PartGenerator, prerender: int = 0):
        if prerender < 0:
            raise ValueError(f"prerender must be >= 0, got {prerender}")
        self.generator = generator
        self._count = 0
        self._lock = threading.Lock()
        self._closed = False
        self._cache = [generator.render(i) for i in range(prerender)]

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        with self._lock:
            if self._closed:
                raise CameraError("no frame: synthetic camera is closed")
            i = self._count
            self._count += 1
        if self._cache:
            image, truth = self._cache[i % len(self._cache)]
            index = i % len(self._cache)
        else:
            image, truth = self.generator.render(i)
            index = i
        return _frame(part_id, image, truth, source=f"synthetic:{self.generator.seed}:{index}", index=index)

    def close(self) -> None:
        self._closed = True


def _folder_truth(path: Path) -> PartTruth | None:
    """Labels from the folder layout used by inspection datasets: .../ok/x.png, .../def/y.png."""
    name = path.parent.name.lower()
    if name == "ok" or name.startswith("ok_"):
        return PartTruth()
    if name == "def" or name.startswith("def_"):
        return PartTruth(defect="unknown")
    return None


class FolderCamera:
    """Replays the image files under ``path`` (recursively) in sorted order.

    With ``shuffle`` (a seed) each pass over the folder plays the files in a new random
    order: a labelled folder (ok/, def/) then arrives mixed, as parts do on a line.
    """

    def __init__(self, path: str | Path, pattern: str = "*", loop: bool = True, grey: bool = True,
                 shuffle: int | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CameraError(f"image folder {self.path} does not exist")
        self.files = sorted(p for p in self.path.rglob(pattern)
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CameraError(f"no image files matching {pattern!r} under {self.path}")
        self.loop, self.grey = loop, grey
        self._rng = None if shuffle is None else np.random.default_rng(shuffle)
        self._order = self._pass_order()
        self._next = 0
        self._lock = threading.Lock()

    def _pass_order(self) -> list[Path]:
        if self._rng is None:
            return self.files
        return [self.files[i] for i in self._rng.permutation(len(self.files))]

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        with self._lock:
            if self._next >= len(self._order):
                if not self.loop:
                    raise CameraError(f"no frame: all {len(self.files)} images of {self.path} replayed")
                self._order = self._pass_order()
                self._next = 0
            path = self._order[self._next]
            self._next += 1
        try:
            data = np.fromfile(path, dtype=np.uint8)  # imdecode: also handles non-ASCII paths
        except OSError as exc:
            raise CameraError(f"cannot read image file {path}: {exc}") from exc
        flag = cv2.IMREAD_GRAYSCALE if self.grey else cv2.IMREAD_COLOR
        image = cv2.imdecode(data, flag) if data.size else None
        if image is None:
            raise CameraError(f"unreadable image file {path}")
        return _frame(part_id, image, _folder_truth(path), source=str(path))

    def close(self) -> None:
        pass


def _open_capture(source: int | str) -> cv2.VideoCapture:
    if isinstance(source, str) and "!" in source:  # a GStreamer pipeline description
        cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"cannot open video source {source!r}")
    return cap


class VideoFileCamera:
    """Replays the frames of a video file, one per capture."""

    def __init__(self, path: str | Path, loop: bool = True, grey: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise CameraError(f"video file {self.path} does not exist")
        self.loop, self.grey = loop, grey
        self._cap: cv2.VideoCapture | None = _open_capture(str(self.path))
        self._lock = threading.Lock()
        self._index = 0

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        with self._lock:
            if self._cap is None:
                raise CameraError(f"no frame: video camera {self.path} is closed")
            ok, image = self._cap.read()
            if not ok and self.loop and self._index > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._index = 0
                ok, image = self._cap.read()
            if not ok or image is None:
                raise CameraError(f"no frame: end of video {self.path} after {self._index} frames")
            index = self._index
            self._index += 1
        image = _to_grey(image) if self.grey else image
        return _frame(part_id, image, source=f"{self.path}#{index}", index=index)

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


class OpenCVCamera:
    """A live source (USB index, RTSP/HTTP URL, GStreamer pipeline, or a file).

    A grab thread reads continuously and keeps only the newest frame, so a capture
    never gets a frame that sat in a driver buffer. ``capture`` returns the newest
    frame not returned before, waiting up to ``stale_after_s`` for one; a frame older
    than that is stale. A file source is paced at its frame rate, like a camera.
A frame's ``captured_at``/``captured_mono`` are the times it was grabbed, not the
time ``capture`` handed it over, so latency is measured from the sensor.
    """

    def __init__(self, source: int | str, stale_after_s: float = 0.5, grey: bool = True,
                 width: int | None = None, height: int | None = None, reopen_after: int = 20):
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source)
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s}")
        self.source, self.stale_after_s, self.grey = source, stale_after_s, grey
        self.reopen_after = reopen_after
        self._cap = _open_capture(source)
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._is_file = isinstance(source, str) and Path(source).is_file()
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._is_file else 0.0
        self._period = 1.0 / fps if fps and 0 < fps < 1000 else 0.0
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray, float, float] | None = None  # seq, image, wall, mono
        self._returned = 0
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab_loop, name=f"camera-grab-{source}", daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        seq, failures = 0, 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            ok, image = self._cap.read()
            mono, wall = time.monotonic(), time.time()
            if not ok or image is None:
                if self._is_file:
                    break  # end of the recording: from now on every capture is stale
                failures += 1
                if failures >= self.reopen_after:
                    log.warning("camera %r: %d failed reads, reopening", self.source, failures)
                    self._cap.release()
                    try:
                        self._cap = _open_capture(self.source)
                    except CameraError as exc:
                        log.warning("%s", exc)
                    failures = 0
                self._stop.wait(0.05)
                continue
            failures = 0
            seq += 1
            with self._cond:
                self._latest = (seq, image, wall, mono)
                self._cond.notify_all()
            if self._period:
                next_at += self._period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        deadline = time.monotonic() + self.stale_after_s
        with self._cond:
            while True:
                latest = self._latest
                if (latest is not None and latest[0] > self._returned
                        and time.monotonic() - latest[3] <= self.stale_after_s
                        and (not_before is None or latest[3] >= not_before)):
                    break  # a fresh frame, grabbed after the part's trigger
                remaining = deadline - time.monotonic()
                if self._stop.is_set():
                    raise CameraError(f"no frame: camera {self.source!r} is closed")
                if remaining <= 0 or self._ended:
                    if latest is None:
                        raise CameraError(f"no frame from camera {self.source!r} within {self.stale_after_s} s")
                    why = "source ended" if self._ended else f"none after the trigger within {self.stale_after_s} s"
                    raise CameraError(f"stale: no new frame from camera {self.source!r} ({why})")
                self._cond.wait(remaining)
            seq, image, wall, mono = latest
            self._returned = seq
        image = _to_grey(image) if self.grey else image
        return _frame(part_id, image, source=str(self.source), captured_at=wall, captured_mono=mono, seq=seq)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._cap.release()


class ArtefactCamera:
    """Wraps a camera; gives a share of its frames one lighting artefact (glare, streak, shadow, dust).

    The artefacts are the synthetic line's (hardware.synthetic.add_artefact), drawn on the
    frame as it is; the frame's truth lists them, and a defect stays a defect. So a folder of
    real photographs is played with the same lighting faults the synthetic line has.
    """

    def __init__(self, camera: Camera, rate: float = 0.2, seed: int = 0):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"artefact rate must be in [0, 1], got {rate}")
        self.camera, self.rate = camera, float(rate)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        frame = self.camera.capture(part_id, not_before)
        with self._lock:
            if self._rng.random() >= self.rate:
                return frame
            kind = ARTEFACT_KINDS[int(self._rng.integers(len(ARTEFACT_KINDS)))]
            rng = np.random.default_rng(self._rng.integers(2**63))
        image = frame.image if frame.image.ndim == 2 else _to_grey(frame.image)
        truth = frame.truth  # an unlabelled frame stays unlabelled: an artefact does not make it good
        return replace(frame, image=add_artefact(image, kind, rng),
                       truth=None if truth is None else replace(truth, artefacts=(*truth.artefacts, kind)))

    def close(self) -> None:
        self.camera.close()


class StaleGuard:
    """Wraps a camera; refuses the same image content ``repeat_limit`` times in a row.

    A frozen camera or a hung driver keeps delivering its last frame; inspecting it
    again would pass or reject a part nobody looked at.
    """

    def __init__(self, camera: Camera, repeat_limit: int = 3):
        if repeat_limit < 2:
            raise ValueError(f"repeat_limit must be >= 2, got {repeat_limit}")
        self.camera, self.repeat_limit = camera, repeat_limit
        self._last: bytes | None = None
        self._repeats = 0

    @staticmethod
    def fingerprint(image: np.ndarray) -> bytes:
        # About 64x64 samples: cheap, and sensor noise makes it differ between real frames.
        sy, sx = max(1, image.shape[0] // 64), max(1, image.shape[1] // 64)
        sample = np.ascontiguousarray(image[::sy, ::sx])
        return hashlib.blake2b(sample.tobytes(), digest_size=16).digest() + bytes(str(image.shape), "ascii")

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        frame = self.camera.capture(part_id, not_before)
        fp = self.fingerprint(frame.image)
        if fp == self._last:
            self._repeats += 1
        else:
            self._last, self._repeats = fp, 1
        if self._repeats >= self.repeat_limit:
            raise CameraError(f"stale: the same image {self._repeats} times in a row (frozen camera?)")
        return frame

    def close(self) -> None:
        self.camera.close()
