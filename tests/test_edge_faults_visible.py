"""Every fault the edge meets is visible: an alarm naming it, a metric, and /healthz degraded until it goes."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import ModbusActuator
from models.onnx_build import constant_model_bytes
from qc.broker import free_port
from qc.faults.plc import LoopbackPlc
from tests.models_support import build_version
from tests.test_edge_service import write_config
from tests.waiting import wait_until


def _edge(tmp_path, broker, extra="", score=0.95, **parts):
    cfg = load_config(write_config(tmp_path, broker, extra))
    build_version(cfg.registry_dir, "1.1.0", model_bytes=constant_model_bytes(score), thresholds=(0.3, 0.7),
                  input_hw=(64, 64), set_current=True)
    cfg = replace(cfg, trigger=replace(cfg.trigger, rate_hz=50.0), metrics=replace(cfg.metrics, port=free_port()))
    service = EdgeService(cfg, **parts)
    service.start()
    return service


def _healthz(service) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{service.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_an_unreachable_plc_is_an_alarm_a_metric_and_a_degraded_healthz_until_it_answers(tmp_path, broker):
    port = free_port()  # nothing listens: the PLC is down
    actuator = ModbusActuator("127.0.0.1", port, timeout_s=0.2)
    service = _edge(tmp_path, broker, actuator=actuator)  # every part REJECT: a coil write each
    plc = None
    try:
        assert wait_until(lambda: "actuator" in _healthz(service)[1]["alarms"], 15)
        code, body = _healthz(service)
        assert code == 503
        assert body["healthy"] is False
        assert f"127.0.0.1:{port}" in body["alarms"]["actuator"]
        assert "qc_actuator_faults_total" in service.metrics.exposition().decode()
        assert service.metrics.actuator_faults._value.get() > 0
        plc = LoopbackPlc(port, program=False).start()  # the PLC is back
        assert wait_until(lambda: "actuator" not in _healthz(service)[1]["alarms"], 15)  # the alarm clears
    finally:
        service.stop()
        actuator.close()
        if plc:
            plc.stop()


def test_a_broker_that_goes_away_degrades_healthz_and_names_it(tmp_path, broker):
    service = _edge(tmp_path, broker)
    try:
        assert wait_until(lambda: service.link.connected.is_set())
        assert "broker" not in _healthz(service)[1]["alarms"]
        broker.stop()
        assert wait_until(lambda: "broker" in _healthz(service)[1]["alarms"], 15)
        code, body = _healthz(service)
        assert code == 503
        assert f"{broker.host}:{broker.port}" in body["alarms"]["broker"]
    finally:
        service.stop()


def test_audit_reviews_evicted_from_a_full_outbox_are_counted_and_alarmed(tmp_path, broker):
    # No station acknowledges: the 1 MB outbox fills with audits (every part audited) and evicts the oldest.
    extra = "[outbox]\nmax_bytes = 1048576\n"
    service = _edge(tmp_path, broker, extra, score=0.05)
    service.pipeline.cfg = replace(service.pipeline.cfg, audit_rate=1.0)
    try:
        assert wait_until(lambda: service.outbox.evicted > 0, 30)
        assert wait_until(lambda: "review-evicted" in _healthz(service)[1]["alarms"], 10)
        assert service.metrics.reviews_dropped._value.get() >= 1  # qc_reviews_dropped_total counts them
        assert _healthz(service)[0] == 503
    finally:
        service.stop()
