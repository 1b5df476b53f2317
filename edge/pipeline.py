"""The inspection pipeline: every triggered part gets exactly one decision, in time or fail-safe.

Three threads, joined by bounded queues::

    line thread:    trigger -> capture -> preprocess ----(frames, bounded)----> inspect thread
    inspect thread: infer -> decide -> actuate -> record ----(reviews, bounded)----> review thread
    review thread:  JPEG + quality hints -> outbox (durable) -> wake the sender

Capture and preprocessing (OpenCV) overlap inference (onnxruntime) on the second
core; both release the GIL. A part fails safe (REJECT, counted, alarm) when its
frame cannot be read, when the frame queue is full, when the model fails, or when
its decision would come after the deadline, which runs from the part's trigger (a
part read from the trigger's queue after its deadline is not captured: it has left the
camera). The frame queue is bounded; a full one never blocks the line unless
``backpressure`` is set (benchmarks: "as fast as it can"), and then the review queue
blocks as well, so every review is stored.

The detector is read once per part from ``self.detector``; a hot-swap assigns a fully
loaded, warmed-up detector there, so no part is inspected by a half-loaded model.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

import cv2
import numpy as np

from edge.config import DecisionSection
from edge.decision import HOLD, Decision, Ruling, decide, fail_safe, scaled_band
from edge.errors import EdgeError, OutboxError, OutboxFullError
from edge.journal import DecisionJournal
from edge.metrics import EdgeMetrics
from edge.quality import quality_hints
from hardware.base import Actuator, Camera, Frame, Trigger
from hardware.errors import CameraError
from models.manifest import Manifest, Thresholds
from qcloop import wire

log = logging.getLogger(__name__)


def _lower_this_threads_priority() -> None:
    """Nice the calling thread (Linux threads have their own niceness); best effort, elsewhere a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class ScoringModel(Protocol):
    """What the pipeline needs of a detector (edge.detector.Detector)."""

    @property
    def version(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def thresholds(self) -> Thresholds: ...

    def preprocess(self, image: np.ndarray) -> np.ndarray: ...

    def infer(self, tensor: np.ndarray) -> float: ...

    def crop(self, image: np.ndarray) -> np.ndarray: ...


class ReviewStore(Protocol):
    def put(self, header: wire.ReviewHeader, jpeg: bytes) -> None: ...


@dataclass
class _Job:
    frame: Frame
    model: ScoringModel | None  # the model the tensor was prepared for
    tensor: np.ndarray | None
    error: str = ""


@dataclass
class _ReviewJob:
    image: np.ndarray  # the inspected region of the frame
    decision: Decision
    thresholds: dict[str, float]
    reason: str
    detail: str
    review_id: str


class Pipeline:
    def __init__(
        self,
        *,
        camera: Camera,
        trigger: Trigger,
        actuator: Actuator,
        detector: ScoringModel,
        decision: DecisionSection,
        line: str,
        camera_name: str,
        metrics: EdgeMetrics | None = None,
        outbox: ReviewStore | None = None,
        jpeg_quality: int = 90,
        review_queue_size: int = 64,
        backpressure: bool = False,
        max_parts: int | None = None,
        journal: DecisionJournal | None = None,
    ):
        self.camera, self.trigger, self.actuator = camera, trigger, actuator
        self.detector = detector
        self.shadow: ScoringModel | None = None  # a candidate scored beside the live model, never actuated
        self.shadow_parts = 0
        self.shadow_disagreements = 0
        self.shadow_skipped = 0  # parts the shadow did not score because it was behind (never the line waits)
        # The shadow scores on its own thread from a small queue: a slow candidate skips parts, it never
        # delays a decision.
        self._shadow_jobs: queue.Queue[tuple | None] = queue.Queue(maxsize=8)
        self._shadow_rng = random.Random(None if decision.seed is None else decision.seed + 1)
        self.cfg = decision
        # The line's operating mode, hold time and fallback: from the config until the station's line
        # settings arrive (apply_settings). ``holds``: the hold lane (edge.holds), when the service runs one.
        self.mode: str = decision.mode
        self.hold_time_s: float = decision.hold_time_s
        self.hold_fallback: str = decision.hold_fallback
        self.holds: Any = None
        self.lot = ""  # the production lot, sent with each review
        self.band_scale = 1.0  # the review band's width against the calibrated one (the station's capacity)
        self.line, self.camera_name = line, camera_name
        self.metrics = metrics or EdgeMetrics()
        self.outbox = outbox
        self.journal = journal  # optional audit trail: one line per decision and per stored review
        self.jpeg_quality = jpeg_quality
        self.backpressure = backpressure
        self.max_parts = max_parts
        self.listeners: list[Callable[[Decision], None]] = []  # called for every decision
        self.review_listeners: list[Callable[[wire.ReviewHeader], None]] = []  # after a review is durable
        self.deadline_s = decision.deadline_ms / 1000.0
        self._frames: queue.Queue[_Job | None] = queue.Queue(maxsize=decision.queue_size)
        self._reviews: queue.Queue[_ReviewJob | None] = queue.Queue(maxsize=review_queue_size)
        self._rng = random.Random(decision.seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Milliseconds: an edge restarted within the same second must not number its parts again.
        self._run_id = f"{time.time_ns() // 1_000_000:x}"
        self._lock = threading.Lock()
        # Actuation in trigger order (_actuate_in_trigger_order): each part's place, and decisions waiting
        # for the parts before them.
        self._order_lock = threading.Lock()
        self._seq_of: dict[str, int] = {}
        self._ready: dict[int, tuple[str, str]] = {}
        self._next_seq = 1
        # Counters read by status, health and tests.
        self.triggered = 0
        self._missed_seen = 0  # the trigger's missed count already turned into decisions
        self.decided = 0
        self.reviews_queued = 0
        self.reviews_dropped = 0
        self.last_decision_mono = 0.0
        self.last_frame: Frame | None = None  # for a new model's self-test on a real frame
        self.camera_detect_s: float | None = None  # last good frame to the camera alarm, latest fault
        self.finished = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.metrics.set_model(self.detector.version)
        for name, target in (
            ("line", self._line_loop),
            ("inspect", self._inspect_loop),
            ("shadow", self._shadow_loop),
            ("review", self._review_loop),
        ):
            t = threading.Thread(target=target, name=f"{name}-{self.camera_name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop triggering; every part already triggered is still decided, every review still stored."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the line stopped (max_parts reached or stop()), every part is decided and
        every review is in the outbox."""
        return self.finished.wait(timeout)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def swap_detector(self, detector: ScoringModel) -> None:
        """Use a loaded, warmed-up detector from the next part on."""
        self.detector = detector
        self.metrics.set_model(detector.version)

    # ------------------------------------------------------------------ line thread
    def _line_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self._all_parts_triggered():
                    break
                arrived = self.trigger.wait(timeout=0.2)
                if arrived is None:
                    continue
                self._decide_missed_parts()
                if self._all_parts_triggered():
                    break
                self._capture_one(self._next_part_id(), arrived)
        finally:
            self._frames.put(None)  # after every part: the inspect thread drains, then stops

    def _decide_missed_parts(self) -> None:
        """Parts that passed while this thread was busy (a camera that hung, a stalled capture) still
        get their decision: REJECT without a frame. A trigger that cannot see missed parts has no
        ``missed`` count, and then there is nothing to do."""
        missed = int(getattr(self.trigger, "missed", 0) or 0)
        new, self._missed_seen = missed - self._missed_seen, missed
        if new <= 0:
            return
        self.metrics.alarms.raise_(
            "missed-trigger", f"{new} part(s) passed while the line thread was busy: rejected without a frame"
        )
        for _ in range(new):
            if self._all_parts_triggered():
                return
            self._reject_without_frame(self._next_part_id(), "missed-trigger", time.monotonic())

    def _all_parts_triggered(self) -> bool:
        return self.max_parts is not None and self.triggered >= self.max_parts

    def _next_part_id(self) -> str:
        self.triggered += 1
        part_id = f"{self.camera_name}-{self._run_id}-{self.triggered:07d}"
        with self._order_lock:
            self._seq_of[part_id] = self.triggered
        return part_id

    def _actuate_in_trigger_order(self, part_id: str, action: str) -> int | None:
        """Hand decisions to the actuator in the order the parts were triggered, whichever thread decided
        them: a reject gate tracks parts by their order on the belt, so a fail-safe decided at once by the
        line thread (queue full, camera fault, missed trigger) waits for the parts before it, which are
        decided within their own deadlines. Returns the part's place in trigger order (None for a part
        this pipeline did not trigger)."""
        with self._order_lock:
            seq = self._seq_of.pop(part_id, None)
            if seq is None:  # not a part this pipeline triggered: nothing to keep in order with
                self.actuator.actuate(part_id, action)
                return None
            self._ready[seq] = (part_id, action)
            while self._next_seq in self._ready:
                pid, act = self._ready.pop(self._next_seq)
                self.actuator.actuate(pid, act)
                self._next_seq += 1
            return seq

    def _reject_without_frame(self, part_id: str, why: str, mono: float) -> None:
        stub = Frame(part_id, time.time(), mono, np.zeros((0, 0), np.uint8), triggered_mono=mono)
        self._finish(stub, fail_safe(why, has_frame=False), None, "")

    def _capture_one(self, part_id: str, arrived: float) -> None:
        """Capture the part that arrived at ``arrived`` (monotonic); its deadline runs from then."""
        if time.monotonic() - arrived > self.deadline_s:
            # Read from the trigger's queue after its deadline: no decision could be in time, and the
            # part has moved on from the camera, so a frame now would show another part.
            self._reject_without_frame(part_id, "late", arrived)
            return
        try:
            frame = self.camera.capture(part_id, not_before=arrived)
        except CameraError as exc:
            now = time.monotonic()
            alarms = self.metrics.alarms
            if alarms.raised_at("camera") is None and self.last_frame is not None:
                # How long the line ran on a dead or frozen camera before anyone knew: the
                # fault began after the last good frame, so this bounds the detection delay.
                self.camera_detect_s = now - self.last_frame.captured_mono
                self.metrics.camera_detect.set(self.camera_detect_s)
            alarms.raise_("camera", f"camera fault: {exc}")
            self._reject_without_frame(part_id, "camera-fault", arrived)
            return
        if frame.captured_mono < arrived:
            # A frame grabbed before the trigger shows whatever was in front of the camera then: the part
            # before, or an empty belt. Deciding on it would be deciding on the wrong part.
            self.metrics.alarms.raise_("camera", "the camera returned a frame grabbed before its part's trigger")
            self._reject_without_frame(part_id, "stale-frame", arrived)
            return
        frame = replace(frame, triggered_mono=arrived)
        self.metrics.alarms.clear("camera")
        self.last_frame = frame
        model = self.detector
        job = _Job(frame, model, None)
        try:
            job.tensor = model.preprocess(frame.image)
        except (EdgeError, cv2.error, ValueError) as exc:
            job.error = str(exc)  # decided (fail-safe) on the inspect thread, in order
        if self.backpressure:
            self._frames.put(job)
            return
        try:
            self._frames.put_nowait(job)
        except queue.Full:
            self.metrics.alarms.raise_("queue-full", "inspection cannot keep up with the line: parts failed safe")
            self._finish(frame, fail_safe("queue-full", has_frame=True), None, model.version)

    # ------------------------------------------------------------------ inspect thread
    def _inspect_loop(self) -> None:
        try:
            while True:
                job = self._frames.get()
                if job is None:
                    break
                self._inspect(job)
        finally:
            self._shadow_jobs.put(None)  # the shadow thread ends the review queue after its own audits

    def _inspect(self, job: _Job) -> None:
        frame = job.frame
        model = self.detector
        if job.error:
            self.metrics.alarms.raise_("model", f"frame cannot be prepared for the model: {job.error}")
            self._finish(frame, fail_safe("model-error", True), None, model.version)
            return
        if time.monotonic() - frame.part_mono > self.deadline_s:
            self._finish(frame, fail_safe("late", True), None, model.version)
            return
        try:
            prepared = job.tensor if job.model is model else None  # prepared ahead for this very model
            tensor = prepared if prepared is not None else model.preprocess(frame.image)
            score = model.infer(tensor)
        except (EdgeError, cv2.error, ValueError) as exc:
            self.metrics.alarms.raise_("model", f"model error: {exc}")
            self._finish(frame, fail_safe("model-error", True), None, model.version)
            return
        self.metrics.alarms.clear("model")
        pass_below, reject_above = self._thresholds(model)
        ruling = decide(
            score,
            pass_below,
            reject_above,
            uncertain_action=self.cfg.uncertain_action,
            audit_rate=self.cfg.audit_rate,
            draw=self._rng.random(),
            mode=cast(wire.OperatingMode, self.mode),
        )
        if time.monotonic() - frame.part_mono > self.deadline_s:
            ruling = fail_safe("late", True)
        decision = self._finish(frame, ruling, score, model.version)
        shadow = self.shadow
        if shadow is not None:
            try:
                self._shadow_jobs.put_nowait((shadow, frame, tensor, model, decision))
            except queue.Full:
                self.shadow_skipped += 1
                self.metrics.shadow.labels(shadow.version, "skipped").inc()

    # ------------------------------------------------------------------ shadow thread
    def _shadow_loop(self) -> None:
        _lower_this_threads_priority()  # the live model's inspection comes first on a busy box
        try:
            while True:
                job = self._shadow_jobs.get()
                if job is None:
                    break
                self._shadow_score(*job)
        finally:
            self._reviews.put(None)

    def _shadow_score(
        self, shadow: ScoringModel, frame: Frame, tensor: np.ndarray, live: ScoringModel, decision: Decision
    ) -> None:
        """Score the shadow candidate on the same frame, after actuation: it never changes an action."""
        try:
            same_input = shadow.manifest.input == live.manifest.input  # then the live tensor fits as it is
            score = shadow.infer(tensor if same_input else shadow.preprocess(frame.image))
        except (EdgeError, cv2.error, ValueError) as exc:
            self.metrics.alarms.raise_("shadow", f"shadow model {shadow.version} failed: {exc}")
            return
        t = shadow.thresholds
        action = decide(score, t.pass_below, t.reject_above, uncertain_action=self.cfg.uncertain_action).action
        self.shadow_parts += 1
        agree = action == decision.action
        self.metrics.shadow.labels(shadow.version, "agree" if agree else "disagree").inc()
        if agree:
            return
        self.shadow_disagreements += 1
        if not decision.review and self._shadow_rng.random() < self.cfg.shadow_review_rate:
            # Sent as an audit: the reviewer is never told which model doubted the part.
            self._queue_review(
                frame, decision, reason="audit", detail=f"shadow {shadow.version} would {action} (score {score:.3f})"
            )

    def _thresholds(self, model: Any) -> tuple[float, float]:
        if self.cfg.pass_below is not None and self.cfg.reject_above is not None:
            pass_below, reject_above = self.cfg.pass_below, self.cfg.reject_above
        else:
            t = model.thresholds
            pass_below, reject_above = t.pass_below, t.reject_above
        if self.band_scale != 1.0:
            return scaled_band(pass_below, reject_above, self.band_scale)
        return pass_below, reject_above

    def _finish(self, frame: Frame, ruling: Ruling, score: float | None, model_version: str) -> Decision:
        """The one place a part's decision is made final: actuate, count, publish, queue review."""
        number = self._actuate_in_trigger_order(frame.part_id, ruling.action)
        latency = time.monotonic() - frame.part_mono  # from the trigger: what the line waits
        decision = Decision(
            frame.part_id,
            ruling.action,
            ruling.band,
            ruling.review,
            score,
            model_version,
            frame.captured_at,
            latency,
            ruling.fail_safe,
        )
        with self._lock:
            self.decided += 1
            self.last_decision_mono = time.monotonic()
        m = self.metrics
        m.parts.labels(ruling.action).inc()
        m.latency.observe(latency)
        if ruling.fail_safe:
            m.failsafe.labels(ruling.fail_safe).inc()
        if ruling.fail_safe == "late":
            m.alarms.raise_("late", "decisions missed the deadline: parts failed safe")
        # The review id is fixed at actuation, so the journal can name the review a part is owed.
        review_id = wire.new_review_id() if ruling.review and frame.image.size and self.outbox else None
        if self.journal:
            self.journal.decision(frame.part_id, ruling.action, review_id, number, ruling.fail_safe or "")
        for listener in self.listeners:
            listener(decision)
        if review_id and ruling.review:
            if ruling.action == HOLD and self.holds is not None and self.hold_time_s > 0:
                # In the loop: the part waits in the hold lane for the verdict on this very review.
                self.holds.hold(frame.part_id, review_id, self.hold_time_s, self.hold_fallback)
            self._queue_review(frame, decision, reason=ruling.review, detail=ruling.fail_safe, review_id=review_id)
        return decision

    def apply_settings(self, mode: str, hold_time_s: float, fallback: str) -> None:
        """The line's operating mode, hold time and fallback, as an engineer set them (from the next part on)."""
        self.mode, self.hold_time_s, self.hold_fallback = mode, hold_time_s, fallback
        for m in wire.OPERATING_MODES:
            self.metrics.mode.labels(m).set(1 if m == mode else 0)

    def _queue_review(
        self, frame: Frame, decision: Decision, reason: str, detail: str, review_id: str | None = None
    ) -> None:
        if self.outbox is None:
            return
        model = self.detector
        try:
            image = model.crop(frame.image)
        except (EdgeError, ValueError):
            image = frame.image  # a frame too small for the ROI is still worth a look
        pb, ra = self._thresholds(model)
        job = _ReviewJob(
            image, decision, {"pass_below": pb, "reject_above": ra}, reason, detail, review_id or wire.new_review_id()
        )
        try:
            # With backpressure ("as fast as it can") the review writer paces the line too, so a
            # throughput figure never hides dropped reviews.
            self._reviews.put(job) if self.backpressure else self._reviews.put_nowait(job)
        except queue.Full:
            self._review_dropped(decision, "the review queue is full")
            return
        with self._lock:  # the inspect and the shadow thread both queue reviews
            self.reviews_queued += 1
        self.metrics.reviews.labels(reason).inc()

    def _review_dropped(self, decision: Decision, why: str) -> None:
        with self._lock:
            self.reviews_dropped += 1
        self.metrics.reviews_dropped.inc()
        self.metrics.alarms.raise_("review-dropped", f"review of part {decision.part_id} not stored: {why}")

    # ------------------------------------------------------------------ review thread
    def _review_loop(self) -> None:
        try:
            while True:
                job = self._reviews.get()
                if job is None:
                    return
                self._store_review(job)
        finally:
            self.finished.set()  # every part decided and every review durable

    def _store_review(self, job: _ReviewJob) -> None:
        d, image = job.decision, job.image
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            self._review_dropped(d, "JPEG encoding failed")
            return
        h, w = image.shape[:2]
        header = wire.ReviewHeader(
            id=job.review_id,
            part_id=d.part_id,
            line=self.line,
            camera=self.camera_name,
            captured_at=d.captured_at,
            model=d.model,
            score=d.score,
            band=d.band,
            action_taken=d.action,
            reason=job.reason,
            thresholds=job.thresholds,
            quality=quality_hints(image),
            detail=job.detail,
            width=w,
            height=h,
            lot=self.lot,
        )
        try:
            self.outbox.put(header, buf.tobytes())  # type: ignore[union-attr]
        except OutboxFullError as exc:
            self.metrics.alarms.raise_("outbox-full", str(exc))
            self._review_dropped(d, "the outbox is full")
            return
        except OutboxError as exc:
            self.metrics.alarms.raise_("outbox", str(exc))
            self._review_dropped(d, str(exc))
            return
        self.metrics.alarms.clear("outbox-full")
        self.metrics.alarms.clear("outbox")  # e.g. a full disk has room again
        if self.journal:
            self.journal.review(header.id, d.part_id)
        for listener in self.review_listeners:
            listener(header)
