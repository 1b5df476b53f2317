"""Every triggered part gets exactly one decision: in time from the model, or fail-safe (REJECT)."""
import math
from collections import Counter

import cv2
import numpy as np
import pytest

from edge.config import DecisionSection
from edge.detector import Detector
from edge.journal import DecisionJournal, read_journal
from edge.outbox import Outbox
from edge.pipeline import Pipeline
from hardware.actuators import SimulatedActuator
from hardware.cameras import FolderCamera, SyntheticCamera
from hardware.synthetic import PartGenerator
from hardware.triggers import SoftwareTrigger
from models.onnx_build import constant_model_bytes, tiny_cnn_bytes
from tests.models_support import build_version


def make_detector(tmp_path, model_bytes=None, thresholds=(0.3, 0.7), input_hw=(64, 64)):
    d = build_version(tmp_path / "models", "1.0.0", input_hw=input_hw, thresholds=thresholds,
                      model_bytes=model_bytes)
    return Detector.load(d)


def run_pipeline(detector, parts, tmp_path, camera=None, decision=None, backpressure=True, rate=0.0):
    camera = camera or SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=8)
    actuator = SimulatedActuator()
    outbox = Outbox(tmp_path / "outbox")
    p = Pipeline(camera=camera, trigger=SoftwareTrigger(rate), actuator=actuator, detector=detector,
                 decision=decision or DecisionSection(audit_rate=0.1, seed=1, deadline_ms=1000),
                 line="L1", camera_name="c1", outbox=outbox, backpressure=backpressure, max_parts=parts)
    decisions = []
    p.listeners.append(decisions.append)
    p.start()
    assert p.wait(60)
    p.stop()
    return p, actuator, decisions, outbox


def assert_one_decision_each(parts, actuator, decisions):
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == parts and len(set(ids)) == parts  # every part actuated once, none twice
    assert sorted(d.part_id for d in decisions) == sorted(ids)


def test_every_part_gets_exactly_one_decision_and_reviews_reach_the_outbox(tmp_path):
    det = make_detector(tmp_path, thresholds=(0.0, 1.0))  # every score is "uncertain": all reviewed
    p, actuator, decisions, outbox = run_pipeline(det, 60, tmp_path)
    assert_one_decision_each(60, actuator, decisions)
    assert p.triggered == p.decided == 60
    assert {d.action for d in decisions} == {"HOLD"} and not any(d.fail_safe for d in decisions)
    assert outbox.depth() == 60  # every uncertain frame is durable before it is published
    item = outbox.due(10, 1)[0]
    img = cv2.imdecode(np.frombuffer(item.path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == (256, 320) and item.header.reason == "uncertain"
    assert set(item.header.quality) >= {"saturated", "dark"}


def test_confident_parts_are_decided_and_a_share_audited(tmp_path):
    det = make_detector(tmp_path, model_bytes=constant_model_bytes(0.05), thresholds=(0.3, 0.7))
    p, actuator, decisions, outbox = run_pipeline(
        det, 200, tmp_path, decision=DecisionSection(audit_rate=0.2, seed=2, deadline_ms=1000))
    assert_one_decision_each(200, actuator, decisions)
    assert Counter(d.action for d in decisions) == {"PASS": 200}
    audits = [d for d in decisions if d.review == "audit"]
    assert 15 <= len(audits) <= 70 and outbox.depth() == len(audits)


def test_late_decisions_fail_safe_to_reject(tmp_path):
    det = make_detector(tmp_path)
    p, actuator, decisions, outbox = run_pipeline(
        det, 30, tmp_path, decision=DecisionSection(deadline_ms=1e-6, audit_rate=0.0))
    assert_one_decision_each(30, actuator, decisions)
    # Each part is read from the trigger after its deadline: rejected without a frame (it has left the camera).
    assert {(d.action, d.fail_safe, d.score) for d in decisions} == {("REJECT", "late", None)}
    assert p.metrics.failsafe.labels("late")._value.get() == 30
    assert "late" in p.metrics.alarms.active()


def test_a_model_emitting_nan_fails_safe_with_an_alarm(tmp_path):
    det = Detector.load(build_version(tmp_path / "models", "1.0.0", model_bytes=constant_model_bytes(math.nan)), warmup=0)
    p, actuator, decisions, _ = run_pipeline(det, 10, tmp_path)
    assert_one_decision_each(10, actuator, decisions)
    assert {(d.action, d.fail_safe) for d in decisions} == {("REJECT", "model-error")}
    assert "model" in p.metrics.alarms.active()


def test_an_unreadable_frame_fails_that_part_safe_and_the_line_goes_on(tmp_path):
    folder = tmp_path / "frames" / "ok"
    folder.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((256, 320), 100 + i, np.uint8))
    (folder / "2.png").write_bytes(b"not an image")
    det = make_detector(tmp_path)
    p, actuator, decisions, _ = run_pipeline(det, 8, tmp_path, camera=FolderCamera(folder.parent, pattern="*/*.png"))
    assert_one_decision_each(8, actuator, decisions)
    faults = [d for d in decisions if d.fail_safe == "camera-fault"]
    assert len(faults) == 2 and all(d.action == "REJECT" for d in faults)  # file 2, twice round the loop
    assert sum(1 for d in decisions if not d.fail_safe) == 6


def test_a_full_queue_fails_parts_safe_instead_of_blocking_the_line(tmp_path):
    heavy = tiny_cnn_bytes(input_hw=(256, 256), width=32, depth=4)
    det = make_detector(tmp_path, model_bytes=heavy, input_hw=(256, 256))
    p, actuator, decisions, _ = run_pipeline(
        det, 150, tmp_path, backpressure=False,
        decision=DecisionSection(queue_size=1, deadline_ms=10_000, audit_rate=0.0))
    assert_one_decision_each(150, actuator, decisions)
    full = [d for d in decisions if d.fail_safe == "queue-full"]
    assert full and all(d.action == "REJECT" for d in full)
    assert p.metrics.failsafe.labels("queue-full")._value.get() == len(full)
    # A reject gate tracks parts by their order on the belt: the queue-full fail-safes the line thread
    # decides at once must not overtake the parts still waiting for inspection.
    actuated = [c[0] for c in actuator.calls]
    assert actuated == sorted(actuated, key=lambda pid: int(pid.rsplit("-", 1)[1]))  # trigger order


def test_hot_swapped_detector_is_used_from_the_next_part(tmp_path):
    first = make_detector(tmp_path, model_bytes=constant_model_bytes(0.05))
    second_dir = build_version(tmp_path / "models2", "2.0.0", model_bytes=constant_model_bytes(0.95))
    second = Detector.load(second_dir)
    camera = SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=4)
    p = Pipeline(camera=camera, trigger=SoftwareTrigger(200.0), actuator=SimulatedActuator(), detector=first,
                 decision=DecisionSection(audit_rate=0.0, deadline_ms=1000), line="L1", camera_name="c1",
                 max_parts=None)
    decisions = []
    p.listeners.append(decisions.append)
    p.start()
    try:
        wait_for(lambda: len(decisions) >= 20)
        p.swap_detector(second)
        n = len(decisions)
        wait_for(lambda: len(decisions) >= n + 20)
    finally:
        p.stop()
    versions = [d.model for d in decisions]
    switch = versions.index("2.0.0")
    assert set(versions[:switch]) == {"1.0.0"} and set(versions[switch:]) == {"2.0.0"}
    assert all(d.action == ("PASS" if d.model == "1.0.0" else "REJECT") for d in decisions)
    assert p.triggered == p.decided == len(decisions)


def wait_for(predicate, timeout=30.0):
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.01)


class _HangingCamera:
    """A camera whose capture of one part hangs (a driver stall), then recovers."""

    def __init__(self, camera, hang_on: int, hang_s: float):
        import threading
        self.camera, self.hang_on, self.hang_s, self.n = camera, hang_on, hang_s, 0
        self._never = threading.Event()

    def capture(self, part_id, not_before=None):
        self.n += 1
        if self.n == self.hang_on:
            self._never.wait(self.hang_s)  # the fault being injected: the driver does not return for a while
        return self.camera.capture(part_id)

    def close(self):
        self.camera.close()


def test_parts_that_pass_while_the_camera_hangs_still_get_a_decision(tmp_path):
    det = make_detector(tmp_path, thresholds=(0.0, 1.0))
    camera = _HangingCamera(SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=8), 5, 0.6)
    # 24 parts pass during the 0.6 s hang at 40 parts/s: the trigger queues 16 (the oldest 8 are lost),
    # and the queued ones are past their 100 ms deadline by the time they are read.
    p, actuator, decisions, _ = run_pipeline(det, 60, tmp_path, camera=camera, rate=40.0,
                                             decision=DecisionSection(audit_rate=0.0, deadline_ms=100))
    assert_one_decision_each(60, actuator, decisions)
    missed = [d for d in decisions if d.fail_safe == "missed-trigger"]
    assert missed and all(d.action == "REJECT" for d in missed)
    late_unseen = [d for d in decisions if d.fail_safe == "late" and d.score is None]
    assert len(late_unseen) >= 8 and all(d.action == "REJECT" for d in late_unseen)
    assert p.triggered == p.decided == 60
    assert {"missed-trigger", "late"} <= set(p.metrics.alarms.active())
    assert [c[0] for c in actuator.calls][-10:] == sorted(c[0] for c in actuator.calls)[-10:]  # in order again


def test_the_deadline_runs_from_the_trigger_not_from_the_capture(tmp_path):
    det = make_detector(tmp_path, thresholds=(0.0, 1.0))  # in time, every part would be HELD
    camera = _HangingCamera(SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=8), 3, 0.15)
    p, actuator, decisions, outbox = run_pipeline(det, 6, tmp_path, camera=camera, rate=5.0,
                                                  decision=DecisionSection(audit_rate=0.0, deadline_ms=50))
    assert_one_decision_each(6, actuator, decisions)
    stalled = next(d for d in decisions if d.part_id.endswith("0000003"))
    # The capture returned a fresh frame 150 ms after the part's trigger: too late to decide in time,
    # and the latency says so. Its frame is still sent for a look.
    assert (stalled.action, stalled.fail_safe) == ("REJECT", "late") and stalled.latency_s >= 0.15
    assert outbox.depth() == 6
    assert all(d.action == "HOLD" for d in decisions if d is not stalled)


class _SlowShadow:
    """A shadow candidate whose every score takes 20 ms (the work of a bigger model), around a real detector."""

    def __init__(self, inner, version="2.0.0"):
        self.inner, self._version = inner, version

    version = property(lambda self: self._version)
    manifest = property(lambda self: self.inner.manifest)
    thresholds = property(lambda self: self.inner.thresholds)

    def preprocess(self, image):
        return self.inner.preprocess(image)

    def crop(self, image):
        return self.inner.crop(image)

    def infer(self, tensor):
        import time

        time.sleep(0.020)  # stands for 20 ms of inference: twice the line's 10 ms between parts
        return self.inner.infer(tensor)


def test_a_slow_shadow_model_never_delays_a_decision(tmp_path):
    det = make_detector(tmp_path, model_bytes=constant_model_bytes(0.05), thresholds=(0.3, 0.7))
    camera = SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=8)
    p = Pipeline(camera=camera, trigger=SoftwareTrigger(100.0), actuator=SimulatedActuator(), detector=det,
                 decision=DecisionSection(audit_rate=0.0, seed=1, deadline_ms=100), line="L1", camera_name="c1",
                 outbox=Outbox(tmp_path / "outbox"), max_parts=120)
    p.shadow = _SlowShadow(det)
    decisions = []
    p.listeners.append(decisions.append)
    p.start()
    assert p.wait(60)
    p.stop()
    assert len(decisions) == 120
    assert [d.part_id for d in decisions if d.fail_safe] == []  # no part failed safe as late for the shadow
    assert p.shadow_parts > 0  # the shadow did score parts ...
    assert p.shadow_parts + p.shadow_skipped == 120  # ... and every part is either scored or counted as skipped
    assert p.shadow_disagreements == 0  # the same model: it agrees wherever it scored


class _BufferedCamera:
    """A camera that hands out the frame it grabbed a second ago, whatever the trigger says."""

    def __init__(self):
        self.inner = SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=4)

    def capture(self, part_id, not_before=None):
        import dataclasses
        import time

        frame = self.inner.capture(part_id)
        return dataclasses.replace(frame, captured_mono=time.monotonic() - 1.0)

    def close(self):
        self.inner.close()


def test_a_frame_grabbed_before_its_trigger_is_not_that_parts_frame(tmp_path):
    det = make_detector(tmp_path, model_bytes=constant_model_bytes(0.05), thresholds=(0.3, 0.7))
    p, actuator, decisions, _ = run_pipeline(det, 20, tmp_path, camera=_BufferedCamera(), rate=50.0,
                                             backpressure=False)
    assert_one_decision_each(20, actuator, decisions)
    assert {(d.action, d.fail_safe) for d in decisions} == {("REJECT", "stale-frame")}  # never PASS on it
    assert "before its part's trigger" in p.metrics.alarms.active()["camera"]


class _BurstTrigger:
    """Parts arriving in bursts: some read late from the queue, some lost (``missed``) while the line was busy."""

    def __init__(self, parts: int):
        import time

        self.left, self.missed, self._time = parts, 0, time

    def wait(self, timeout):
        if self.left <= 0:
            return None
        self.left -= 1
        if self.left % 10 == 0:
            self.missed += 2  # two parts passed unseen: the pipeline must still decide them, in their place
        arrived = self._time.monotonic()
        return arrived - (0.5 if self.left % 7 == 0 else 0.0)  # some parts were waiting past their deadline

    def close(self):
        pass


def test_actuation_keeps_trigger_order_across_late_queue_full_and_missed_parts(tmp_path):
    heavy = tiny_cnn_bytes(input_hw=(256, 256), width=32, depth=4)
    det = make_detector(tmp_path, model_bytes=heavy, input_hw=(256, 256))
    camera = SyntheticCamera(PartGenerator(seed=3, width=320, height=256), prerender=8)
    actuator = SimulatedActuator()
    p = Pipeline(camera=camera, trigger=_BurstTrigger(120), actuator=actuator, detector=det,
                 decision=DecisionSection(queue_size=1, deadline_ms=200, audit_rate=0.0), line="L1",
                 camera_name="c1", outbox=Outbox(tmp_path / "outbox"), max_parts=140,
                 journal=DecisionJournal(tmp_path / "decisions.jsonl"))
    decisions = []
    p.listeners.append(decisions.append)
    p.start()
    assert p.wait(60)
    p.stop()
    kinds = {d.fail_safe for d in decisions}
    assert {"late", "queue-full", "missed-trigger"} <= kinds, kinds  # all three kinds of fail-safe happened
    actuated = [c[0] for c in actuator.calls]
    assert actuated == sorted(actuated, key=lambda pid: int(pid.rsplit("-", 1)[1]))  # and kept their places
    assert len(actuated) == len(set(actuated)) == p.triggered
    # The journal names each part's place in trigger order (the number a PLC is given) and why it failed safe.
    p.journal.close()
    journal = read_journal(tmp_path / "decisions.jsonl")
    assert journal.action_by_number == {n: call[1] for n, call in enumerate(actuator.calls, start=1)}
    assert journal.fail_safes == Counter(d.fail_safe for d in decisions if d.fail_safe)
