"""Shared pieces of the fault scenarios: an edge streaming into a station over a real broker, and the tally.

Every scenario ends with the same bookkeeping: reviews the edge made durable
("sent"), reviews the station stored, reviews lost on the way (made durable at the
edge, never stored at the station, no longer in the edge's outbox either),
reviews stored twice for one part, reviews the edge refused to keep (counted as
dropped, the part still decided), and whether every triggered part got exactly
one decision.
"""
from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from qcloop import wire
from tests.test_edge_service import write_config
from tests.waiting import wait_until


@dataclass(frozen=True)
class Tally:
    sent: int  # reviews the edge made durable in its outbox
    stored: int  # of those, reviews in the station's database
    lost: int  # made durable at the edge, now neither at the station nor in the outbox
    duplicated: int  # station rows beyond one per part
    dropped: int  # reviews the edge could not keep (its part still decided, fail-safe counted)
    parts: int  # parts triggered
    decided_once: bool  # every triggered part actuated exactly once


class StreamingEdge:
    """A real EdgeService (synthetic camera, every part uncertain, so every part is reviewed)."""

    def __init__(self, tmp_path: Path, broker, *, line: str = "line1", camera: str = "cam1",
                 rate_hz: float = 40.0, data_dir: Path | None = None, camera_device=None, **service_kw):
        cfg = load_config(write_config(tmp_path, broker))
        cfg = replace(cfg, edge=replace(cfg.edge, line=line, camera=camera, data_dir=data_dir or cfg.edge.data_dir),
                      trigger=replace(cfg.trigger, rate_hz=rate_hz),
                      outbox=replace(cfg.outbox, resend_after_s=0.5),
                      mqtt=replace(cfg.mqtt, reconnect_max_s=1.0))
        self.cfg = cfg
        self.actuator = SimulatedActuator()
        self.service = EdgeService(cfg, actuator=self.actuator, camera=camera_device, **service_kw)
        self.decisions: list = []
        self.made: list[wire.ReviewHeader] = []
        self._lock = threading.Lock()
        self.service.pipeline.listeners.append(self._decided)
        self.service.pipeline.review_listeners.append(self._made)

    def _decided(self, d) -> None:
        with self._lock:
            self.decisions.append(d)

    def _made(self, h: wire.ReviewHeader) -> None:
        with self._lock:
            self.made.append(h)

    def start(self) -> StreamingEdge:
        self.service.start()
        assert self.service.link.connected.wait(10), "the edge did not connect to the broker"
        return self

    def stop_line(self) -> None:
        """Stop triggering; every part already triggered is decided and its review stored."""
        self.service.pipeline.stop()

    def stop(self) -> None:
        self.service.stop()

    def made_ids(self) -> set[str]:
        with self._lock:
            return {h.id for h in self.made}


def station_rows(db_path: Path) -> list[tuple[str, str]]:
    """(id, part_id) of every review in the station's database, read with a plain connection."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute("SELECT id, part_id FROM reviews").fetchall()
    finally:
        conn.close()


def drain(edge: StreamingEdge, db_path: Path, timeout: float = 60.0) -> bool:
    """Wait until the outbox is empty and every review the edge made is in the station's database."""
    want = edge.made_ids()
    return wait_until(lambda: edge.service.outbox.depth() == 0
                      and want <= {r[0] for r in station_rows(db_path)}, timeout=timeout, interval=0.1)


def tally(edge: StreamingEdge, db_path: Path) -> Tally:
    made = edge.made_ids()
    rows = station_rows(db_path)
    stored_ids = {r[0] for r in rows}
    in_outbox = edge.service.outbox.ids() if _open(edge) else set()
    per_part = Counter(part for _, part in rows)
    p = edge.service.pipeline
    ids = [c[0] for c in edge.actuator.calls]
    return Tally(sent=len(made), stored=len(made & stored_ids), lost=len(made - stored_ids - in_outbox),
                 duplicated=sum(n - 1 for n in per_part.values() if n > 1), dropped=p.reviews_dropped,
                 parts=p.triggered, decided_once=len(ids) == len(set(ids)) == p.triggered == p.decided)


def _open(edge: StreamingEdge) -> bool:
    try:
        edge.service.outbox.depth()
        return True
    except sqlite3.ProgrammingError:  # closed by service.stop()
        return False
