"""Trigger backends: a fixed-rate software clock and a GPIO edge (light barrier, encoder).

Both implement ``hardware.base.Trigger``: ``wait(timeout)`` -> the next part's arrival
time (or None), and ``close()``.
"""
from __future__ import annotations

import collections
import math
import threading
import time

from hardware.errors import TriggerError

GPIOD_HINT = "install the libgpiod v2 Python bindings: pip install 'gpiod>=2'"


class SoftwareTrigger:
    """Parts arrive at ``rate_hz`` (0: free-running, as fast as they are inspected).

    Part n arrives at ``start + n / rate`` on the monotonic clock, so the rate does not
    drift with how long each wait returns late. A line does not wait for a slow
    inspector: parts that arrived while nobody waited are queued, up to ``backlog`` of
    them (a GPIO line's kernel event buffer holds 16), and handed out oldest first with
    their own arrival times; beyond that the oldest are lost, as a full hardware queue
    loses them, and counted in ``missed`` (the pipeline still gives each a decision:
    REJECT, no frame).
    """

    def __init__(self, rate_hz: float, backlog: int = 16):
        if not math.isfinite(rate_hz) or rate_hz < 0:
            raise TriggerError(f"trigger rate_hz must be >= 0, got {rate_hz}")
        if backlog < 1:
            raise TriggerError(f"trigger backlog must be >= 1 part, got {backlog}")
        self.rate_hz = float(rate_hz)
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.backlog = backlog
        self.missed = 0
        self.count = 0
        self._start: float | None = None
        self._n = 0
        self._closed = threading.Event()

    def wait(self, timeout: float) -> float | None:
        if self._closed.is_set():
            return None
        now = time.monotonic()
        if self.period == 0.0:
            self.count += 1
            return now
        if self._start is None:
            self._start = now  # the first part is there at once
        due = self._start + self._n * self.period
        waiting = int((now - due) // self.period) + 1 if now >= due else 0  # parts arrived, not yet handed out
        if waiting > self.backlog:
            lost = waiting - self.backlog
            self.missed += lost
            self._n += lost
            due = self._start + self._n * self.period
        if due - now > timeout:
            self._closed.wait(max(0.0, timeout))
            return None
        if due > now and self._closed.wait(due - now):
            return None
        self._n += 1
        self.count += 1
        return due

    def close(self) -> None:
        self._closed.set()


class GpioTrigger:
    """A part-present edge on a GPIO line, through the libgpiod v2 bindings."""

    def __init__(self, chip: str, line: int, edge: str = "rising", debounce_ms: int = 0):
        try:
            import gpiod
            from gpiod.line import Edge
        except ImportError as exc:
            raise TriggerError(f"GPIO trigger on {chip} line {line} needs gpiod; {GPIOD_HINT}") from exc
        edges = {"rising": Edge.RISING, "falling": Edge.FALLING, "both": Edge.BOTH}
        if edge not in edges:
            raise TriggerError(f"GPIO trigger edge must be one of {', '.join(edges)}, got {edge!r}")
        from datetime import timedelta

        from gpiod.line import Clock

        settings = gpiod.LineSettings(edge_detection=edges[edge], event_clock=Clock.MONOTONIC)
        if debounce_ms:
            settings.debounce_period = timedelta(milliseconds=debounce_ms)
        try:
            self._request = gpiod.request_lines(chip, consumer="qcloop-trigger", config={line: settings})
        except (OSError, ValueError) as exc:
            raise TriggerError(f"cannot request GPIO {chip} line {line}: {exc}") from exc
        self.chip, self.line = chip, line
        self.missed = 0
        self._pending: collections.deque[float] = collections.deque()  # arrival times read, not yet handed out
        self._seqno: int | None = None

    def wait(self, timeout: float) -> float | None:
        if self._request is None:
            return None
        if not self._pending:
            try:
                if not self._request.wait_edge_events(max(0.0, timeout)):
                    return None
                events = self._request.read_edge_events()
            except OSError as exc:
                raise TriggerError(f"GPIO trigger {self.chip} line {self.line} failed: {exc}") from exc
            for event in events:  # one edge, one part (bounce is the kernel's debounce_ms to filter)
                if self._seqno is not None and event.line_seqno > self._seqno + 1:
                    self.missed += event.line_seqno - self._seqno - 1  # dropped by the kernel's full event buffer
                self._seqno = event.line_seqno
                self._pending.append(event.timestamp_ns / 1e9)  # CLOCK_MONOTONIC, as time.monotonic()
        return self._pending.popleft()

    def close(self) -> None:
        if self._request is not None:
            self._request.release()
            self._request = None
