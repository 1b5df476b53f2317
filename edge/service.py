"""The edge service: builds the pipeline and its companions from an EdgeConfig and runs them.

Owns the start and stop order, so that nothing is lost on the way down: the line
stops triggering, every triggered part is decided, every review is in the outbox,
and only then does the link publish its offline status and disconnect. What the
station has not acknowledged stays in the outbox for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

import cv2

from edge.config import EdgeConfig
from edge.decision import Decision
from edge.detector import Detector
from edge.holds import HoldLane
from edge.journal import DecisionJournal
from edge.link import EdgeLink, ReviewSender
from edge.metrics import EdgeMetrics, MetricsServer
from edge.outbox import Outbox
from edge.pipeline import Pipeline
from edge.tally import ModelTally
from edge.trust import ModelTrust
from edge.watcher import ModelWatcher
from hardware.base import Actuator, Camera, Trigger
from hardware.factory import make_actuator, make_camera, make_trigger
from models import builtin
from models.errors import RegistryError
from models.manifest import MANIFEST_NAME, load_manifest
from models.registry import Registry
from qcloop import wire

log = logging.getLogger(__name__)


#: Alarms raised by events, not states: they clear after ALARM_QUIET_S seconds without a new one.
EVENT_ALARMS = ("late", "queue-full", "missed-trigger", "review-dropped", "review-evicted", "shadow", "hold-timeout")
ALARM_QUIET_S = 30.0


class EdgeService:
    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        camera: Camera | None = None,
        trigger: Trigger | None = None,
        actuator: Actuator | None = None,
        max_parts: int | None = None,
        backpressure: bool = False,
    ):
        self.cfg = cfg
        cv2.setNumThreads(cfg.model.opencv_threads)  # process-wide: capture and preprocessing share it
        self.metrics = EdgeMetrics()
        self.registry = Registry(cfg.registry_dir)
        self.trust = ModelTrust(cfg.model.public_key, cfg.model.allow_unsigned)
        self.detector = self._load_current_model()
        self.outbox = Outbox(cfg.outbox_dir, max_bytes=cfg.outbox.max_bytes)
        self.journal = DecisionJournal(cfg.journal_path) if cfg.edge.journal else None
        # Devices passed in belong to the caller; the service closes only what it opened.
        self.camera = camera or make_camera(cfg.camera)
        self.trigger = trigger or make_trigger(cfg.trigger)
        self.actuator = actuator or make_actuator(cfg.actuator)
        self._owned = [
            d
            for d, given in ((self.camera, camera), (self.trigger, trigger), (self.actuator, actuator))
            if given is None
        ]
        self.link: EdgeLink | None = None
        self.sender: ReviewSender | None = None
        if cfg.mqtt.enabled:
            self.link = EdgeLink(cfg.mqtt, cfg.edge.line, cfg.edge.camera, cfg.client_id)
            self.sender = ReviewSender(self.outbox, self.link, cfg.outbox.resend_after_s, cfg.outbox.max_in_flight)
        self.pipeline = Pipeline(
            camera=self.camera,
            trigger=self.trigger,
            actuator=self.actuator,
            detector=self.detector,
            decision=cfg.decision,
            line=cfg.edge.line,
            camera_name=cfg.edge.camera,
            metrics=self.metrics,
            outbox=self.outbox,
            jpeg_quality=cfg.outbox.jpeg_quality,
            review_queue_size=cfg.outbox.queue_size,
            backpressure=backpressure,
            max_parts=max_parts,
            journal=self.journal,
        )
        self.holds = HoldLane(self.actuator, self.metrics)  # in the loop: held parts wait for their verdict
        self.pipeline.holds = self.holds
        self.pipeline.apply_settings(cfg.decision.mode, cfg.decision.hold_time_s, cfg.decision.hold_fallback)
        self.pipeline.lot = cfg.edge.lot
        self.tally = ModelTally()  # per model version, for the station's dashboard
        self.pipeline.listeners.append(self.tally.on_decision)
        self.pipeline.review_listeners.append(self.tally.on_review)
        sender = self.sender
        if sender is not None:
            self.pipeline.review_listeners.append(lambda header: sender.wake())
        if self.link and cfg.mqtt.publish_results:
            self.pipeline.listeners.append(self._publish_result)
        self.watcher = ModelWatcher(
            self.registry,
            self.pipeline,
            self.metrics,
            load=self._load_trusted,
            trust=self.trust,
            poll_s=cfg.model.follow_registry_s,
        )
        if self.link:
            topics = self.link.topics
            self.link.subscribe(topics.model(cfg.edge.line), self.watcher.on_announcement)
            self.link.subscribe(topics.verdict(cfg.edge.line), self.on_verdict)
            self.link.subscribe(topics.settings(cfg.edge.line), self.on_settings)
        self.http: MetricsServer | None = None
        if cfg.metrics.port:
            self.http = MetricsServer(self.metrics, self.health, cfg.metrics.host, cfg.metrics.port)
        self.started_at = 0.0
        self._actuator_faults_seen = 0
        self._evicted_seen = 0
        self._stop = threading.Event()
        self._status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)

    # ------------------------------------------------------------------ model
    def _load_current_model(self) -> Detector:
        if self.registry.current_version() is None:
            if not self.cfg.model.seed_builtin:
                raise RegistryError(f"no current model in {self.registry.root} and seed_builtin is false")
            installed = builtin.install_into(self.registry)
            log.info("installed the built-in model %s into %s", installed, self.registry.root)
        version = self.registry.current_version()
        if version is None:
            raise RegistryError(f"no current model in {self.registry.root} after installing the built-in one")
        detector = self._load_trusted(self.registry.version_dir(version))
        log.info("model %s loaded from %s", detector.version, self.registry.version_dir(version))
        return detector

    def _load_trusted(self, version_dir: Path) -> Detector:
        """Every load goes through here (start, flip, rollback, shadow, announced): trust first, then the model."""
        self.trust.check_stored(load_manifest(version_dir / MANIFEST_NAME))
        m = self.cfg.model
        return Detector.load(version_dir, threads=m.threads, spinning=m.spinning, roi=m.roi, warmup=m.warmup)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.started_at = time.time()
        if self.http:
            self.http.start()
            log.info("metrics on http://%s:%d/metrics, health on /healthz", self.cfg.metrics.host, self.http.port)
        if self.link:
            self.link.start()
            self.sender.start()  # type: ignore[union-attr]
        self.holds.start()
        self.pipeline.start()
        self.watcher.start()
        self._status_thread.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.pipeline.stop()
        self.holds.stop()
        self._stop.set()
        if self.sender:
            self.sender.stop()
        if self.link:
            self.link.publish_status(self.status(state="stopped"))
            self.link.stop()
        self._status_thread.join(5)
        self.outbox.close()
        if self.journal:
            self.journal.close()
        for device in self._owned:
            device.close()
        if self.http:
            self.http.stop()

    # ------------------------------------------------------------------ the station's rulings
    def on_verdict(self, payload: bytes) -> None:
        """A verdict on the line: a held part it rules on leaves the hold lane (released or rejected)."""
        verdict = wire.Verdict.decode(payload)
        if verdict.undone:
            return  # the part has left the lane already; an undo changes what trains, not the part
        action = self.holds.rule(verdict.review_id, verdict.verdict)
        if action is not None:
            log.info("verdict by %s on held part %s: %s", verdict.user, verdict.part_id, action)

    def on_settings(self, payload: bytes) -> None:
        """The line's operating mode, hold time and fallback as an engineer set them at the station."""
        s = wire.LineSettings.decode(payload)
        if s.line != self.cfg.edge.line:
            log.warning("ignoring settings for line %r on line %r's topic", s.line, self.cfg.edge.line)
            return
        self.pipeline.apply_settings(s.mode, s.hold_time_s if s.mode == "in-the-loop" else 0.0, s.fallback)
        self.pipeline.lot = s.lot or self.cfg.edge.lot
        if s.band_scale != self.pipeline.band_scale:
            log.info("line %s: review band at %.2f of its width (the station's review capacity)", s.line, s.band_scale)
        self.pipeline.band_scale = s.band_scale
        hold = f" (held parts wait {s.hold_time_s:.0f} s, then {s.fallback})" if s.mode == "in-the-loop" else ""
        log.info("line %s: %s%s, set by %s", s.line, s.mode, hold, s.user or "-")

    # ------------------------------------------------------------------ reporting
    def _publish_result(self, d: Decision) -> None:
        if self.link is None:
            return
        self.link.publish_result(
            wire.PartResult(
                part_id=d.part_id,
                time=d.captured_at,
                score=d.score,
                action=d.action,
                band=d.band,
                model=d.model,
                latency_ms=round(d.latency_s * 1000, 3),
                fail_safe=d.fail_safe,
            )
        )

    def status(self, state: Literal["running", "stopped"] = "running") -> wire.EdgeStatus:
        p = self.pipeline
        actions = {s.labels["action"]: int(s.value) for s in _samples(self.metrics.parts, "_total")}
        failsafe = {s.labels["reason"]: int(s.value) for s in _samples(self.metrics.failsafe, "_total")}
        return wire.EdgeStatus(
            state=state,
            line=self.cfg.edge.line,
            camera=self.cfg.edge.camera,
            model=self.pipeline.detector.version,
            parts=p.decided,
            triggered=p.triggered,
            actions=actions,
            failsafe=failsafe,
            reviews_queued=p.reviews_queued,
            reviews_dropped=p.reviews_dropped,
            outbox_depth=self.outbox.depth() if state != "stopped" else None,
            alarms=self.metrics.alarms.active(),
            time=time.time(),
            since=self.started_at,
            by_model=self.tally.snapshot(),
            shadow=self._shadow_counts(),
            mode=p.mode,
            band_scale=p.band_scale,
            held=self.holds.waiting,
            holds={"released": self.holds.released, "rejected": self.holds.rejected, "fallback": self.holds.fell_back},
        )

    def _shadow_counts(self) -> wire.ShadowCounts | None:
        p = self.pipeline
        if p.shadow is None:
            return None
        return wire.ShadowCounts(
            version=p.shadow.version,
            parts=p.shadow_parts,
            agree=p.shadow_parts - p.shadow_disagreements,
            skipped=p.shadow_skipped,
        )

    def check_faults(self) -> None:
        """Turn every fault the parts only count into an alarm and a metric, and clear what has gone.

        Run by /healthz and the status loop: the actuator's latest failure (a PLC unreachable), the broker
        connection, audit reviews evicted from a full outbox; event alarms (a late part, a dropped review)
        clear after ``ALARM_QUIET_S`` without a new one."""
        alarms = self.metrics.alarms
        faults = int(getattr(self.actuator, "faults", 0) or 0)
        if faults > self._actuator_faults_seen:
            self.metrics.actuator_faults.inc(faults - self._actuator_faults_seen)
            self._actuator_faults_seen = faults
        fault = getattr(self.actuator, "fault", None)
        text = fault() if callable(fault) else None
        if text:
            alarms.raise_("actuator", f"reject actuator failing: {text}")
        else:
            alarms.clear("actuator")
        if self.link is not None:
            if self.link.connected.is_set():
                alarms.clear("broker")
            else:
                m = self.cfg.mqtt
                alarms.raise_("broker", f"not connected to a broker ({m.broker_list}): reviews wait in the outbox")
        evicted = self.outbox.evicted
        if evicted > self._evicted_seen:
            self.metrics.reviews_dropped.inc(evicted - self._evicted_seen)
            self._evicted_seen = evicted
            alarms.raise_("review-evicted", f"{evicted} audit reviews evicted from the full outbox to make room")
        alarms.clear_quiet(EVENT_ALARMS, ALARM_QUIET_S)

    def health(self) -> dict[str, Any]:
        """What /healthz answers: healthy while the line runs with no active alarm (each named in ``alarms``)."""
        p = self.pipeline
        self.check_faults()
        idle = time.monotonic() - p.last_decision_mono if p.last_decision_mono else None
        connected = self.link.connected.is_set() if self.link else None
        alarms = self.metrics.alarms.active()
        return {
            "healthy": p.running and not alarms,
            "model": p.detector.version,
            "parts": p.decided,
            "seconds_since_last_decision": idle,
            "broker_connected": connected,
            "outbox_depth": self.outbox.depth(),
            "alarms": alarms,
        }

    def _status_loop(self) -> None:
        every = self.cfg.mqtt.status_every_s
        while not self._stop.wait(every):
            self.check_faults()
            self.metrics.outbox_depth.set(self.outbox.depth())
            self.metrics.outbox_bytes.set(self.outbox.bytes)
            if self.link:
                self.metrics.connected.set(1 if self.link.connected.is_set() else 0)
                self.link.publish_status(self.status())


def _samples(metric: Any, suffix: str) -> list[Any]:
    return [s for fam in metric.collect() for s in fam.samples if s.name.endswith(suffix)]
