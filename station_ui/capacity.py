"""Review capacity: the station's people can rule on so many items an hour; the band follows them.

Every ``[review].capacity_check_s`` the station compares the items arriving for review (uncertain ones,
the last ``WINDOW_S``, as a rate per hour) and the queue with ``[review].capacity_per_hour``:

- more arriving than the reviewers can take, or more waiting than ``BACKLOG_H`` hours of their work: the
  band narrows (``NARROW``, down to ``MIN_SCALE``) -- from its top, so the parts it no longer sends are
  REJECTed, never PASSed: the escape budget holds (edge.decision.scaled_band);
- under half of it arriving and nothing waiting: the band widens again (``WIDEN``, up to ``MAX_SCALE``),
  more labels while it is quiet;
- else it stays.

Each move is sent to the lines' edges with their settings (wire.LineSettings.band_scale, retained),
logged (``band_log``) with what caused it, and plotted on the dashboard.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from station_ui.store import Store

log = logging.getLogger(__name__)

WINDOW_S = 900.0
BACKLOG_H = 0.25
NARROW, WIDEN = 0.8, 1.25
MIN_SCALE, MAX_SCALE = 0.2, 2.0


@dataclass(frozen=True)
class Move:
    scale: float
    reason: str


def next_scale(current: float, demand_per_h: float, queue: int, capacity_per_h: float) -> Move:
    """The band's next width from what arrives and waits against what the reviewers can take."""
    if demand_per_h > capacity_per_h or queue > BACKLOG_H * capacity_per_h:
        scale = max(MIN_SCALE, round(current * NARROW, 4))
        why = (f"{demand_per_h:.0f} items/h arriving and {queue} waiting against a capacity of "
               f"{capacity_per_h:.0f}/h: narrowed")
    elif demand_per_h < 0.5 * capacity_per_h and queue == 0:
        scale = min(MAX_SCALE, round(current * WIDEN, 4))
        why = f"{demand_per_h:.0f} items/h arriving, none waiting, capacity {capacity_per_h:.0f}/h: widened"
    else:
        return Move(current, "within capacity: kept")
    return Move(scale, why if scale != current else why.rsplit(":", 1)[0] + ": at its limit, kept")


class CapacityControl:
    def __init__(self, store_path: Any, station: str, capacity_per_h: float, every_s: float, publisher: Any):
        self.store_path, self.station, self.capacity_per_h = store_path, station, capacity_per_h
        self.every_s, self.publisher = every_s, publisher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="station-capacity", daemon=True)

    def start(self) -> CapacityControl:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - one bad step must not end the control for good
                log.exception("review capacity step failed")

    def step(self, now: float | None = None) -> Move | None:
        """One look at demand and queue; a move (sent and logged) when the band changes, else None."""
        now = time.time() if now is None else now
        store = Store(self.store_path, migrate=False, station=self.station)
        try:
            arrived = store.conn.execute("SELECT count(*) FROM reviews WHERE reason = 'uncertain' AND received_at >= ?",
                                         (now - WINDOW_S,)).fetchone()[0]
            demand = arrived * 3600.0 / WINDOW_S
            queue = store.queue_stats().count
            current = store.band_scale()
            move = next_scale(current, demand, queue, self.capacity_per_h)
            if move.scale == current:
                return None
            settings = store.set_band_scale(move.scale, move.reason, demand, queue, self.capacity_per_h, now)
        finally:
            store.close()
        log.info("review band at %.2f of its width: %s", move.scale, move.reason)
        if self.publisher is not None:
            for message in settings:
                self.publisher.publish_line_settings(message)
        return move
