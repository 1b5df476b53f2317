"""Trigger backends: a fixed-rate software clock and a GPIO edge (light barrier, encoder).

Both implement ``hardware.base.Trigger``: ``wait(timeout) -> bool`` and ``close()``.
"""
from __future__ import annotations

import math
import threading
import time

from hardware.errors import TriggerError

GPIOD_HINT = "install the libgpiod v2 Python bindings: pip install 'gpiod>=2'"


class SoftwareTrigger:
    """Parts arrive at ``rate_hz`` (0: free-running, as fast as they are inspected).

    Deadlines are ``start + n / rate`` on the monotonic clock, so the rate does not
    drift with how long each wait returns late. A line does not wait for a slow
    inspector: ticks that passed while nobody waited are counted in ``missed``, and
    the pipeline gives each of those parts its decision (REJECT, no frame).
    """

    def __init__(self, rate_hz: float):
        if not math.isfinite(rate_hz) or rate_hz < 0:
            raise TriggerError(f"trigger rate_hz must be >= 0, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.missed = 0
        self.count = 0
        self._start: float | None = None
        self._n = 0
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        if self._closed.is_set():
            return False
        if self.period == 0.0:
            self.count += 1
            return True
        now = time.monotonic()
        if self._start is None:
            self._start = now  # the first part is there at once
        deadline = self._start + self._n * self.period
        if now - deadline >= self.period:
            behind = int((now - deadline) // self.period)
            self.missed += behind
            self._n += behind
            deadline = self._start + self._n * self.period
        if deadline - now > timeout:
            self._closed.wait(max(0.0, timeout))
            return False
        if deadline > now and self._closed.wait(deadline - now):
            return False
        self._n += 1
        self.count += 1
        return True

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

        settings = gpiod.LineSettings(edge_detection=edges[edge])
        if debounce_ms:
            settings.debounce_period = timedelta(milliseconds=debounce_ms)
        try:
            self._request = gpiod.request_lines(chip, consumer="qcloop-trigger", config={line: settings})
        except (OSError, ValueError) as exc:
            raise TriggerError(f"cannot request GPIO {chip} line {line}: {exc}") from exc
        self.chip, self.line = chip, line

    def wait(self, timeout: float) -> bool:
        if self._request is None:
            return False
        try:
            if not self._request.wait_edge_events(max(0.0, timeout)):
                return False
            # Several edges queued (bounce, or a late reader) still mean one part now.
            self._request.read_edge_events()
        except OSError as exc:
            raise TriggerError(f"GPIO trigger {self.chip} line {self.line} failed: {exc}") from exc
        return True

    def close(self) -> None:
        if self._request is not None:
            self._request.release()
            self._request = None
