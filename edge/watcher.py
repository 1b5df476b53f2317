"""The model watcher: takes new models from the registry topic, and local flips (rollback), into the line.

Everything slow happens on the watcher's own thread, off the hot path: download,
checks (manifest sha256 against the announcement, schema, version newer than the
running one, Ed25519 signature, model size and sha256), registry add, onnxruntime
load, warm-up and a self-test on a real frame. Only a fully loaded, tested detector is
handed to the pipeline, which uses it from the next part on; the previous version
stays in the registry for ``qc edge rollback``. A refused model leaves the running one
in place and raises an alarm naming why.

An announcement with ``mode: shadow`` installs the candidate beside the live model
instead: it scores the same frames after each actuation, never changes an action, and
its disagreements are counted and sampled for review.

The watcher also follows the registry's CURRENT pointer, so a rollback made with
``qc edge rollback`` (another process) reaches a running edge within a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from edge.decision import Decision
from edge.detector import Detector
from edge.errors import EdgeError
from edge.metrics import EdgeMetrics
from edge.pipeline import Pipeline
from edge.trust import ModelTrust
from models.errors import IntegrityError, ManifestError, ModelsError, VersionError
from models.manifest import Manifest, verify_model_bytes
from models.registry import Registry
from qcloop import wire
from qcloop.errors import QcError
from qcloop.versions import is_newer

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024


class ModelWatcher:
    def __init__(
        self,
        registry: Registry,
        pipeline: Pipeline,
        metrics: EdgeMetrics,
        *,
        load: Callable[[Path], Detector],
        trust: ModelTrust,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
    ):
        self.registry = registry
        self.pipeline = pipeline
        self.metrics = metrics
        self.load = load  # a trusted load: checks the manifest (edge.trust) before the Detector
        self.trust = trust
        self._refused_current: str | None = None  # a CURRENT on disk that could not be loaded
        self.kept_rolled_back: list[str] = []  # announced versions not installed because they were rolled back
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.swaps: list[dict] = []  # one record per swap, with its timings
        self.refused: list[str] = []  # why each refused model was refused
        self._announcements: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize=16)
        self._pending_first_part: dict[str, tuple[float, dict]] = {}  # version -> (t0, its swap record)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    # ------------------------------------------------------------------ inputs
    def start(self) -> None:
        self.pipeline.listeners.append(self._on_decision)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def on_announcement(self, payload: bytes) -> None:
        """MQTT handler for the retained model topic (runs on the network thread: only queue)."""
        try:
            self._announcements.put_nowait((time.monotonic(), payload))
        except queue.Full:
            log.warning("model announcements arrive faster than they can be checked; one dropped")

    def _on_decision(self, decision: Decision) -> None:
        pending = self._pending_first_part.pop(decision.model, None) if self._pending_first_part else None
        if pending is not None:
            t0, record = pending
            record["first_part_ms"] = round((time.monotonic() - t0) * 1000, 1)
            log.info(
                "model %s: first part %s inspected %.0f ms after the announcement",
                decision.model,
                decision.part_id,
                record["first_part_ms"],
            )

    # ------------------------------------------------------------------ work
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                t0, payload = self._announcements.get(timeout=self.poll_s)
            except queue.Empty:
                self._follow_current()
                continue
            try:
                self.install(wire.ModelAnnouncement.decode(payload), t0)
            except QcError as exc:
                self.refused.append(str(exc))
                self.metrics.alarms.raise_("model-refused", f"new model refused, previous kept: {exc}")
            except Exception as exc:  # a watcher crash would stop all future updates
                log.exception("model watcher: unexpected error")
                self.refused.append(repr(exc))

    def install(self, ann: wire.ModelAnnouncement, t0: float | None = None) -> None:
        """Fetch, check, load and swap in the announced model; raise a QcError when refused."""
        t0 = time.monotonic() if t0 is None else t0
        running = self.pipeline.detector.version
        shadow = getattr(self.pipeline, "shadow", None)
        if ann.version == running or (ann.mode == "shadow" and shadow is not None and shadow.version == ann.version):
            return  # the retained announcement of what already runs
        if ann.version in self.registry.rolled_back():
            # An engineer rolled back from it: its retained announcement must not bring it back at a restart.
            if ann.version not in self.kept_rolled_back:
                self.kept_rolled_back.append(ann.version)
                log.info(
                    "model %s stays rolled back (announce a newer one, or: qc edge allow-model %s)",
                    ann.version,
                    ann.version,
                )
            return
        if not is_newer(ann.version, running):
            raise VersionError(f"model {ann.version} is older than the running {running}; use rollback to go back")
        raw_manifest = self._fetch(ann.manifest_url)
        digest = hashlib.sha256(raw_manifest).hexdigest()
        if digest != ann.sha256:
            raise IntegrityError(
                f"manifest of {ann.version} has sha256 {digest[:12]}..., the announcement says {ann.sha256[:12]}..."
            )
        try:
            manifest = Manifest.from_dict(json.loads(raw_manifest))
        except ValueError as exc:
            raise ManifestError(f"manifest of {ann.version} at {ann.manifest_url} is not JSON: {exc}") from exc
        if manifest.version != ann.version:
            raise ManifestError(f"announcement names {ann.version} but the manifest is {manifest.version}")
        self.trust.check_announced(manifest)
        model_bytes = self._fetch(urllib.parse.urljoin(ann.manifest_url, manifest.file))
        verify_model_bytes(manifest, model_bytes, source=f"{ann.version}/{manifest.file}")
        if manifest.version not in self.registry.versions():
            self.registry.add(manifest, model_bytes)
        if ann.mode == "shadow":
            self._run_in_shadow(manifest.version)
        else:
            self._swap_to(manifest.version, t0, reason=f"announced ({ann.manifest_url})")

    def _run_in_shadow(self, version: str) -> None:
        """Score a candidate beside the live model (after each actuation); CURRENT does not move."""
        detector = self.load(self.registry.version_dir(version))
        self._self_test(detector)
        self.pipeline.shadow = detector
        log.info(
            "model %s runs in shadow beside %s: disagreements are counted and sampled for review",
            version,
            self.pipeline.detector.version,
        )

    def _follow_current(self) -> None:
        try:
            current = self.registry.current_version()
        except ModelsError as exc:
            log.warning("registry unreadable: %s", exc)
            return
        if current and current != self.pipeline.detector.version and current != self._refused_current:
            try:
                self._swap_to(
                    current, time.monotonic(), reason="registry CURRENT changed (rollback or flip)", flip=False
                )
            except QcError as exc:
                self._refused_current = current  # once per change of CURRENT, not at every poll
                self.refused.append(str(exc))
                self.metrics.alarms.raise_("model-refused", f"cannot load {current}, previous kept: {exc}")
        elif current != self._refused_current:
            self._refused_current = None

    def _swap_to(self, version: str, t0: float, reason: str, flip: bool = True) -> None:
        t_load = time.monotonic()
        detector = self.load(self.registry.version_dir(version))  # hash, schema, shape, warm-up
        self._self_test(detector)
        loaded_ms = (time.monotonic() - t_load) * 1000
        record = {
            "version": version,
            "previous": self.pipeline.detector.version,
            "load_ms": round(loaded_ms, 1),
            "reason": reason,
        }
        self.swaps.append(record)
        self._pending_first_part[version] = (t0, record)
        self.pipeline.swap_detector(detector)
        record["swap_ms"] = round((time.monotonic() - t0) * 1000, 1)
        if flip:
            self.registry.set_current(version, reason=reason)
        self.metrics.alarms.clear("model-refused")
        log.info("model %s live (was %s): %s; loaded in %.0f ms", version, record["previous"], reason, loaded_ms)

    def _self_test(self, detector: Detector) -> None:
        """Score a real frame from the line; a model that cannot is not let near the line."""
        frame = getattr(self.pipeline, "last_frame", None)
        if frame is None:
            return  # warm-up at load already ran the model on zeros and checked the score
        try:
            detector.score(frame.image)
        except EdgeError as exc:
            raise EdgeError(f"model {detector.version} failed its self-test on a line frame: {exc}") from exc

    def _fetch(self, url: str) -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                data = resp.read(MAX_DOWNLOAD_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ModelsError(f"cannot download {url}: {exc}") from exc
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise ModelsError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
        return data
