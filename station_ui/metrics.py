"""The station's Prometheus metrics: ``/metrics`` (no login, like ``/healthz``), read from the store at scrape time.

What the plant's Prometheus needs per line: the review queue (its size and the age of
its oldest item), the reviews received, the verdicts that count, and the audit
rulings behind the escape and false-reject estimates (audited PASSes ruled a real
fault, audited REJECTs ruled not a defect); plus the ingest's own counters and
broker connection. ``config/prometheus/`` holds the scrape config, the recording
rules and alerts built on these names.

The figures come from the database, so they survive a restart of the station: a
counter continues from what the store holds instead of starting again at zero.
Each scrape stays cheap with a million items in the store: the queue comes from
``queue_counts`` (kept by triggers) and the partial queue indexes, and the counters
are kept in memory and grown from the rows added since the last scrape (a range of
row ids), so only the first scrape of a process reads the whole history.

A verdict is counted once it is *settled*: older than the undo window (after which
``Store.undo_last`` refuses it) and still the review's final verdict. A counter
therefore never goes down; an engineer's second look that re-rules an item counts
its new ruling again.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from station_ui.health import station_health
from station_ui.store import Store

#: The ingest's counters (Ingest.stats()), each its own counter: they overlap, so no label may sum them.
INGEST_COUNTERS = {
    "received": "Review envelopes received from the broker",
    "stored": "Reviews stored (new ones; a repeat is not stored twice)",
    "duplicates": "Reviews received again that the store already held",
    "rejected": "Envelopes refused as malformed (logged, never stored)",
    "acked": "review-ack messages sent to the edges",
    "store_failed": "Reviews that could not be stored (a full disk): not acknowledged, so sent again",
}


class StationCollector(Collector):
    """Per-line figures of one station database, for a CollectorRegistry.

    ``health`` gives the ingest's state at scrape time (``station_health``); ``settle_s`` is how old a verdict
    must be before it counts (the undo window, plus a margin). Thread-safe: scrapes may overlap.
    """

    def __init__(self, db_path: str | Path, *, station: str = "", settle_s: float = 11.0,
                 health: Callable[[], dict[str, Any]] | None = None, clock: Callable[[], float] = time.time):
        self.db_path = Path(db_path)
        self.station = station
        self.settle_s = settle_s
        self.health = health
        self.clock = clock
        self._lock = threading.Lock()
        self._review_rowid = 0  # reviews counted up to this row id
        self._received: Counter[tuple[str, str, str]] = Counter()  # (line, camera, reason)
        self._verdict_id = 0  # verdicts considered up to this id (each settled, counted or not)
        self._verdicts: Counter[tuple[str, str]] = Counter()  # (line, verdict)
        self._audits: Counter[tuple[str, str, str]] = Counter()  # (line, action taken, verdict)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            store = Store(self.db_path, migrate=False, station=self.station)
            try:
                now = self.clock()
                # One read transaction: the queue, the counts and their row-id marks are one snapshot.
                store.conn.execute("BEGIN")
                try:
                    queue, ages, limits = self._queue(store, now)
                    self._grow_received(store)
                    self._grow_verdicts(store, now)
                finally:
                    store.conn.execute("COMMIT")
            finally:
                store.close()
            received, verdicts, audits = dict(self._received), dict(self._verdicts), dict(self._audits)

        g = GaugeMetricFamily("qc_station_queue_items", "Reviews waiting for a verdict", labels=["line", "camera"])
        for (line, camera), n in sorted(queue.items()):
            g.add_metric([line, camera], n)
        yield g
        g = GaugeMetricFamily("qc_station_queue_oldest_age_seconds",
                              "Age of the oldest waiting review, from its capture (0 when none waits)",
                              labels=["line"])
        for line, age in sorted(ages.items()):
            g.add_metric([line], age)
        yield g
        g = GaugeMetricFamily("qc_station_line_hold_time_seconds",
                              "The line's hold time (how long an in-the-loop edge holds a part for a verdict)",
                              labels=["line", "mode"])
        for (line, mode), hold in sorted(limits.items()):
            g.add_metric([line, mode], hold)
        yield g
        c = CounterMetricFamily("qc_station_reviews_received", "Reviews stored, by why the edge sent them",
                                labels=["line", "camera", "reason"])
        for key3, n in sorted(received.items()):
            c.add_metric(list(key3), n)
        yield c
        c = CounterMetricFamily("qc_station_verdicts", "Final verdicts (settled past the undo window), by verdict",
                                labels=["line", "verdict"])
        for key2, n in sorted(verdicts.items()):
            c.add_metric(list(key2), n)
        yield c
        c = CounterMetricFamily(
            "qc_station_audits",
            "Audit items ruled (random samples of confident decisions), by the edge's action and the verdict: "
            "PASS ruled real_fault estimates escapes, REJECT ruled not_defect false rejects",
            labels=["line", "action", "verdict"])
        for key3, n in sorted(audits.items()):
            c.add_metric(list(key3), n)
        yield c
        yield from self._ingest()

    # ------------------------------------------------------------------ queries
    @staticmethod
    def _queue(store: Store, now: float) -> tuple[dict[tuple[str, str], int], dict[str, float],
                                                    dict[tuple[str, str], float]]:
        """Waiting items per line and camera, the oldest one's age per line, and each line's hold time."""
        queue = {(r[0], r[1]): int(r[2] or 0) for r in store.conn.execute(
            "SELECT s.line, s.camera, q.n FROM sources s LEFT JOIN queue_counts q"
            " ON q.line = s.line AND q.camera = s.camera")}
        for r in store.conn.execute("SELECT line, camera, n FROM queue_counts"):
            queue.setdefault((r[0], r[1]), int(r[2]))
        waiting: Counter[str] = Counter()
        for (line, _), n in queue.items():
            waiting[line] += max(n, 0)
        ages: dict[str, float] = {}
        for line in sorted(waiting):
            # The review screen's own figure: min() over the partial index (line, captured_at) of open items.
            age = store.queue_stats(line=line).oldest_age_s(now) if waiting[line] > 0 else None
            ages[line] = age or 0.0
        limits = {(r["name"], r["mode"]): float(r["hold_time_s"]) for r in store.lines()}
        return queue, ages, limits

    def _grow_received(self, store: Store) -> None:
        # Reviews are never deleted and their line, camera and reason never change: rows past the mark are new.
        top = store.conn.execute("SELECT coalesce(max(rowid), 0) FROM reviews").fetchone()[0]
        if top <= self._review_rowid:
            return
        for r in store.conn.execute("SELECT line, camera, reason, count(*) FROM reviews WHERE rowid > ? AND rowid <= ?"
                                    " GROUP BY 1, 2, 3", (self._review_rowid, top)):
            self._received[(r[0], r[1], r[2])] += r[3]
        self._review_rowid = top

    def _grow_verdicts(self, store: Store, now: float) -> None:
        # Verdicts up to the first one still inside the undo window are settled: each counts if it is live
        # and its review's final verdict. Later ones wait for a later scrape.
        first_open = store.conn.execute("SELECT min(id) FROM verdicts WHERE id > ? AND time > ?",
                                        (self._verdict_id, now - self.settle_s)).fetchone()[0]
        top = (first_open - 1 if first_open is not None
               else store.conn.execute("SELECT coalesce(max(id), 0) FROM verdicts").fetchone()[0])
        if top <= self._verdict_id:
            return
        for r in store.conn.execute(
                "SELECT r.line, r.reason, r.action_taken, v.verdict, count(*) FROM verdicts v"
                " JOIN reviews r ON r.id = v.review_id WHERE v.id > ? AND v.id <= ? AND v.undone = 0"
                " AND r.final_verdict_id = v.id GROUP BY 1, 2, 3, 4", (self._verdict_id, top)):
            line, reason, action, verdict, n = r[0], r[1], r[2], r[3], r[4]
            self._verdicts[(line, verdict)] += n
            if reason == "audit":
                self._audits[(line, action, verdict)] += n
        self._verdict_id = top

    def _ingest(self) -> Iterable[Metric]:
        """The ingest's counters, broker connection and alarms (this process's, from ``health``)."""
        if self.health is None:
            return
        health = self.health()
        if "broker_connected" in health:
            yield GaugeMetricFamily("qc_station_broker_connected", "1 while the ingest is connected to the broker",
                                    value=1 if health["broker_connected"] else 0)
        for key, text in INGEST_COUNTERS.items():
            if key in health:
                yield CounterMetricFamily(f"qc_station_ingest_{key}", text + " (since the station started)",
                                          value=health[key])
        g = GaugeMetricFamily("qc_station_alarm", "1 while a station alarm is active (e.g. storage)", labels=["name"])
        for name in sorted(health.get("alarms") or {}):
            g.add_metric([name], 1)
        yield g


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` from a registry of this app's own (several apps may live in one process)."""
    state = app.extensions["station"]
    cfg = state.cfg
    registry = CollectorRegistry()
    registry.register(StationCollector(cfg.db_path, station=cfg.station.name, settle_s=cfg.web.undo_window_s + 1.0,
                                       health=lambda: station_health(state.publisher)))
    app.extensions["station_metrics"] = registry
    app.add_url_rule("/metrics", endpoint="metrics", view_func=_metrics)


def _metrics() -> Response:
    """For Prometheus, no login (as /healthz): the figures hold no images, users or part ids."""
    body = generate_latest(current_app.extensions["station_metrics"])
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
