"""Named alarm conditions, shared by the edge and the station.

Raising an alarm logs it once and keeps it active until it is cleared; ``on_change``
lets the owner mirror it elsewhere (a Prometheus gauge, the station's event hub). An alarm
whose cause is an event rather than a state (a late part, a dropped review) has no moment
at which the cause "goes"; ``clear_quiet`` clears it once it has not been raised again for a
while, so an alarm always says what is wrong now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Alarms:
    """Named alarm conditions. Raising one logs it once; it stays active until cleared.

    The monotonic time an alarm was raised is kept while it is active, so a fault's
    detection delay can be measured on the same clock as the frames' capture times.
    """

    def __init__(self, on_change: Callable[[str, bool], None] | None = None, logger: logging.Logger | None = None):
        self._log = logger or log
        self._active: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._last: dict[str, float] = {}  # monotonic time of the latest raise, active or not
        self._lock = threading.Lock()
        self._on_change = on_change
        self.raised_total = 0

    def raise_(self, name: str, message: str) -> None:
        with self._lock:
            new = name not in self._active
            self._active[name] = message
            self._last[name] = time.monotonic()
            if new:
                self.raised_total += 1
                self._since[name] = time.monotonic()
        if new:
            self._log.error("ALARM %s: %s", name, message)
            if self._on_change:
                self._on_change(name, True)

    def clear(self, name: str) -> None:
        with self._lock:
            was = self._active.pop(name, None)
            self._since.pop(name, None)
        if was is not None:
            self._log.warning("alarm cleared: %s", name)
            if self._on_change:
                self._on_change(name, False)

    def clear_quiet(self, names: tuple[str, ...], quiet_s: float) -> None:
        """Clear those of ``names`` that are active but have not been raised again for ``quiet_s``."""
        now = time.monotonic()
        with self._lock:
            quiet = [n for n in names if n in self._active and now - self._last.get(n, now) >= quiet_s]
        for name in quiet:
            self.clear(name)

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def raised_at(self, name: str) -> float | None:
        """time.monotonic() when the active alarm ``name`` was raised; None when it is not active."""
        with self._lock:
            return self._since.get(name)
