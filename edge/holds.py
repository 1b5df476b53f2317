"""Held parts, in the loop: a part actuated HOLD waits in the hold lane until a verdict rules on it.

A verdict on the part's review (the station's, on the line's verdict topic) releases it (not a defect:
PASS) or rejects it (real fault: REJECT) through the actuator's ``release``. A part no one rules on
within the line's hold time gets the line's fallback (REJECT unless an engineer chose PASS), and is
counted: the line never waits for a person longer than it was told to. Each part leaves the lane once;
a verdict for a part already gone (released, fallen back, or never held here) changes nothing.

Held parts are kept in memory: after an edge restart the PLC's own hold-lane timeout decides the
parts that were waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import EdgeError
from edge.metrics import EdgeMetrics
from hardware.base import Actuator

log = logging.getLogger(__name__)

#: How often the hold lane is checked for parts past their hold time.
TICK_S = 0.05


@dataclass(frozen=True)
class Held:
    part_id: str
    review_id: str
    deadline: float  # monotonic
    fallback: str  # PASS | REJECT


class HoldLane:
    def __init__(self, actuator: Actuator, metrics: EdgeMetrics, clock: Callable[[], float] = time.monotonic):
        self.actuator, self.metrics, self.clock = actuator, metrics, clock
        self._held: dict[str, Held] = {}  # review id -> part
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hold-lane", daemon=True)
        self.released = self.rejected = self.fell_back = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._held)

    def hold(self, part_id: str, review_id: str, hold_time_s: float, fallback: str) -> None:
        if fallback not in ("PASS", "REJECT"):
            raise EdgeError(f"a held part's fallback is PASS or REJECT, not {fallback!r}")
        with self._lock:
            self._held[review_id] = Held(part_id, review_id, self.clock() + hold_time_s, fallback)
        self.metrics.held.set(self.waiting)

    def rule(self, review_id: str, verdict: str) -> str | None:
        """A verdict on a held part's review: release or reject it. Returns the action, or None when the
        part is not waiting here (already gone, or never held by this edge)."""
        with self._lock:
            held = self._held.pop(review_id, None)
        if held is None:
            return None
        action = "REJECT" if verdict == "real_fault" else "PASS"
        self._leave(held, action, "rejected" if action == "REJECT" else "released")
        return action

    def expire(self) -> int:
        """Give every part past its hold time its fallback; how many left the lane."""
        now = self.clock()
        with self._lock:
            due = [h for h in self._held.values() if h.deadline <= now]
            for h in due:
                del self._held[h.review_id]
        for h in due:
            self._leave(h, h.fallback, "fallback")
        if due:
            self.metrics.alarms.raise_(
                "hold-timeout",
                f"{len(due)} held part(s) not ruled within the hold time: {due[0].fallback} by the line's fallback",
            )
        return len(due)

    def _leave(self, held: Held, action: str, outcome: str) -> None:
        try:
            self.actuator.release(held.part_id, action)
        except Exception as exc:  # noqa: BLE001 - a driver error must not keep the part in the lane
            log.error("releasing held part %s (%s) failed: %s", held.part_id, action, exc)
        if outcome == "released":
            self.released += 1
        elif outcome == "rejected":
            self.rejected += 1
        else:
            self.fell_back += 1
        self.metrics.holds.labels(outcome).inc()
        self.metrics.held.set(self.waiting)
        log.info("held part %s %s: %s", held.part_id, outcome, action)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self.expire()
