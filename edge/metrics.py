"""Edge observability: Prometheus metrics, alarms, and the /metrics + /healthz endpoint.

Each EdgeMetrics has its own CollectorRegistry, so several pipelines (tests, the
benchmark) can live in one process. The HTTP endpoint is a small stdlib server on
its own thread; it never touches the inspection threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from qcloop.alarms import Alarms
from qcloop.errors import port_error

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)


class EdgeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.parts = Counter("qc_parts", "Parts decided, by action", ["action"], registry=r)
        self.failsafe = Counter(
            "qc_failsafe", "Parts failed safe (rejected without a usable score), by reason", ["reason"], registry=r
        )
        self.reviews = Counter("qc_reviews", "Reviews queued for the station, by reason", ["reason"], registry=r)
        self.actuator_faults = Counter(
            "qc_actuator_faults", "Actuator commands that failed or were dropped (PLC unreachable, ...)", registry=r
        )
        self.reviews_dropped = Counter(
            "qc_reviews_dropped", "Reviews that could not be stored in the outbox", registry=r
        )
        self.latency = Histogram(
            "qc_decision_latency_seconds", "Trigger to decision", buckets=LATENCY_BUCKETS, registry=r
        )
        self.holds = Counter(
            "qc_holds",
            "Held parts that left the hold lane, by outcome (released, rejected, fallback)",
            ["outcome"],
            registry=r,
        )
        self.held = Gauge("qc_held_parts", "Parts waiting in the hold lane for a verdict", registry=r)
        self.mode = Gauge("qc_operating_mode_info", "The line's operating mode (value 1)", ["mode"], registry=r)
        self.outbox_depth = Gauge("qc_outbox_depth", "Reviews waiting for the station's ack", registry=r)
        self.outbox_bytes = Gauge("qc_outbox_bytes", "Bytes of images in the outbox", registry=r)
        self.model = Gauge("qc_model_info", "The model version in use (value 1)", ["version"], registry=r)
        self.connected = Gauge("qc_broker_connected", "1 while connected to the MQTT broker", registry=r)
        self.shadow = Counter(
            "qc_shadow_parts",
            "Parts also scored by a shadow model, by agreement with the live one",
            ["version", "agreement"],
            registry=r,
        )
        self.camera_detect = Gauge(
            "qc_camera_fault_detect_seconds",
            "Last good frame to the camera alarm, for the latest camera fault",
            registry=r,
        )
        self.alarm = Gauge("qc_alarm", "1 while an alarm is active", ["name"], registry=r)
        self.alarms = Alarms(on_change=lambda name, on: self.alarm.labels(name).set(1 if on else 0), logger=log)
        self._model_version = ""

    def set_model(self, version: str) -> None:
        if self._model_version:
            self.model.remove(self._model_version)
        self.model.labels(version).set(1)
        self._model_version = version

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics (Prometheus text) and /healthz (JSON; 200 healthy, 503 not)."""

    def __init__(self, metrics: EdgeMetrics, health: Callable[[], dict], host: str, port: int):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.startswith("/metrics"):
                    body, ctype, code = metrics.exposition(), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    state = health()
                    body, ctype = json.dumps(state).encode(), "application/json"
                    code = 200 if state.get("healthy") else 503
                else:
                    body, ctype, code = b"not found: try /metrics or /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise port_error(
                "edge metrics",
                host,
                port,
                "set [metrics].port (0 turns the endpoint off; qc demo: --metrics-port)",
                exc,
            ) from exc
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        self.started_at = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
