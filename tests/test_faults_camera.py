"""Fault scenario 6: the camera stops delivering frames, or repeats a stale one, under a running edge.

The camera is a synthetic line behind the ``Camera`` interface that can be made to
stop (each capture then waits for a frame up to its staleness limit and raises
CameraError, as the live OpenCV driver does) or to freeze (it hands back its last
image again, and the same ``StaleGuard`` the factory puts in front of every real
camera catches the repeats). The edge streams into a real station ingest over a
real broker. Checks: the fault is detected within a second, measured on the
product's own clock (the alarm's raise time against the moment the device went
bad, and the edge's own last-good-frame-to-alarm gauge); every part meanwhile is
rejected with a reason; the alarm shows in status and metrics and clears when
frames return; every part got exactly one decision; no review lost or duplicated.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from hardware.base import Frame
from hardware.cameras import StaleGuard, SyntheticCamera
from hardware.errors import CameraError
from hardware.synthetic import PartGenerator
from station_ui.config import config_for
from station_ui.ingest import Ingest
from station_ui.store import Store
from tests.fault_support import StreamingEdge, drain, tally
from tests.waiting import wait_until


class FaultyCamera:
    """A synthetic camera whose feed can stop or freeze; ``fault_began`` is when it went bad (monotonic)."""

    def __init__(self, stale_after_s: float):
        self.inner = SyntheticCamera(PartGenerator(seed=5, width=320, height=256), prerender=6)
        self.stale_after_s = stale_after_s
        self.mode = "live"
        self.fault_began: float | None = None
        self.fault_began_wall = 0.0
        self._resumed = threading.Event()
        self._last: Frame | None = None

    def set_mode(self, mode: str) -> None:
        if mode == "live":
            self._resumed.set()
        else:
            self._resumed.clear()
            self.fault_began, self.fault_began_wall = time.monotonic(), time.time()
        self.mode = mode

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        if self.mode == "stopped" and not self._resumed.wait(self.stale_after_s):
            raise CameraError(f"no frame from the camera within {self.stale_after_s} s")
        if self.mode == "frozen" and self._last is not None:
            return Frame(part_id, time.time(), time.monotonic(), self._last.image)  # a hung driver's last frame
        frame = self.inner.capture(part_id)
        self._last = frame
        return frame

    def close(self) -> None:
        self.inner.close()


def _alarm_gauge(edge: StreamingEdge) -> float:
    body = edge.service.metrics.exposition().decode()
    m = re.search(r'^qc_alarm\{name="camera"\} (\S+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("fault, rate_hz", [("stopped", 5.0), ("frozen", 40.0)])
def test_a_dead_or_frozen_camera_is_caught_within_a_second_and_parts_fail_safe(tmp_path, broker, fault, rate_hz):
    # The live driver's staleness limit is shorter than a part's spacing here, so a dead camera costs
    # each part one wait and no trigger is skipped (a skipped trigger would be a part with no decision).
    camera = FaultyCamera(stale_after_s=0.15)
    guarded = StaleGuard(camera, repeat_limit=3)  # as hardware.factory.make_camera wraps every camera
    scfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": f"st-{fault}"})
    Store(scfg.db_path).close()
    ingest = Ingest(scfg).start()
    edge = StreamingEdge(tmp_path / "edge", broker, rate_hz=rate_hz, camera_device=guarded)
    d = edge.decisions
    try:
        edge.start()
        assert wait_until(lambda: len(d) >= 5 and ingest.stats()["stored"] >= 3)
        assert _alarm_gauge(edge) == 0.0

        camera.set_mode(fault)
        assert wait_until(lambda: "camera" in edge.service.metrics.alarms.active())
        raised = edge.service.metrics.alarms.raised_at("camera")
        status = edge.service.status()
        assert "camera fault" in status.alarms["camera"]
        assert _alarm_gauge(edge) == 1.0
        assert edge.service.health()["alarms"]["camera"].startswith("camera fault")
        assert wait_until(lambda: sum(1 for x in d if x.fail_safe == "camera-fault") >= 5)

        camera.set_mode("live")
        assert wait_until(lambda: "camera" not in edge.service.metrics.alarms.active())
        n_back = len(d)
        assert wait_until(lambda: len(d) >= n_back + 5)
        edge.stop_line()
        assert drain(edge, scfg.db_path)
    finally:
        edge.stop()
        ingest.stop()

    # Detected within a second, on the product's clock.
    assert raised - camera.fault_began < 1.0
    assert edge.service.pipeline.camera_detect_s is not None and edge.service.pipeline.camera_detect_s < 1.0
    body = edge.service.metrics.exposition().decode()
    gauge = float(re.search(r"^qc_camera_fault_detect_seconds (\S+)$", body, re.M).group(1))
    assert gauge == pytest.approx(edge.service.pipeline.camera_detect_s)
    assert _alarm_gauge(edge) == 0.0  # cleared

    # Parts while the camera was bad: each rejected with its reason, never passed on a stale frame.
    # A real frame being taken as the fault began may be stamped just after it; a frozen camera's
    # repeats are indistinguishable from a real frame until the guard's limit (one copy at repeat_limit 3).
    since_fault = [x for x in d if x.captured_at >= camera.fault_began_wall]
    first_failed = next(i for i, x in enumerate(since_fault) if x.fail_safe)
    assert len(since_fault[:first_failed]) <= (2 if fault == "frozen" else 1)
    failed = [x for x in since_fault if x.fail_safe]
    assert len(failed) >= 5
    assert all(x.action == "REJECT" and x.fail_safe == "camera-fault" and x.score is None for x in failed)
    last_failed = max(i for i, x in enumerate(since_fault) if x.fail_safe)
    # One unbroken run of fail-safe parts, then good parts again once frames returned.
    assert all(x.fail_safe for x in since_fault[first_failed:last_failed + 1])
    assert not any(x.fail_safe for x in since_fault[last_failed + 1:]) and len(since_fault) - last_failed > 5
    assert edge.service.pipeline.metrics.failsafe.labels("camera-fault")._value.get() == len(
        [x for x in d if x.fail_safe == "camera-fault"])
    trigger = edge.service.trigger
    assert getattr(trigger, "missed", 0) == 0  # no part passed the camera without a decision

    t = tally(edge, scfg.db_path)
    assert t.decided_once and t.parts == len(d)
    assert t.sent > 0
    assert t.stored == t.sent
    assert t.lost == 0
    assert t.duplicated == 0
    assert t.dropped == 0
