"""The edge as deployed: from a TOML config, through a real broker, with metrics and health."""
import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from qc.reviewsink import ReviewSink
from qcloop.errors import ConfigError
from tests.models_support import build_version


def write_config(tmp_path, broker, extra=""):
    build_version(tmp_path / "models", "1.0.0", thresholds=(0.0, 1.0), input_hw=(64, 64), set_current=True)
    cfg = tmp_path / "edge.toml"
    cfg.write_text(textwrap.dedent(f"""
        [edge]
        line = "L1"
        camera = "c1"
        data_dir = "data"
        [model]
        registry = "models"
        seed_builtin = false
        [decision]
        audit_rate = 0.0
        deadline_ms = 1000
        [camera]
        type = "synthetic"
        width = 320
        height = 256
        prerender = 6
        [trigger]
        type = "software"
        rate_hz = 0
        [mqtt]
        host = "{broker.host}"
        port = {broker.port}
        status_every_s = 0.2
        [metrics]
        port = 0
    """) + extra)
    return cfg


def test_edge_from_config_delivers_every_review_and_reports(broker, tmp_path):
    cfg = load_config(write_config(tmp_path, broker))
    assert cfg.edge.data_dir == tmp_path / "data"  # relative to the config file
    sink = ReviewSink(broker.host, broker.port, line="L1").start()
    actuator = SimulatedActuator()
    service = EdgeService(cfg, actuator=actuator, max_parts=40, backpressure=True)
    reviews = set()
    service.pipeline.review_listeners.append(lambda h: reviews.add(h.id))
    service.start()
    try:
        assert service.pipeline.wait(60)
        assert service.link.connected.wait(10)
        assert len(actuator.calls) == 40
        assert sink.wait_for(reviews, timeout=20) and len(reviews) == 40
        deadline = time.monotonic() + 20
        while service.outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.outbox.depth() == 0
        status = service.status()
        assert status.parts == 40
        assert status.actions == {"HOLD": 40}
        assert status.model == "1.0.0"
    finally:
        service.stop()
        sink.stop()


def test_metrics_and_health_endpoints(broker, tmp_path):
    import re
    from dataclasses import replace

    from qc.broker import free_port

    port = free_port()
    cfg = load_config(write_config(tmp_path, broker))
    cfg = replace(cfg, metrics=replace(cfg.metrics, port=port), trigger=replace(cfg.trigger, rate_hz=200.0))
    service = EdgeService(cfg, actuator=SimulatedActuator())
    service.start()
    try:
        deadline = time.monotonic() + 30
        while service.pipeline.decided < 25 and time.monotonic() < deadline:
            time.sleep(0.01)
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5))
        assert health["healthy"] is True
        assert health["parts"] >= 25
        assert health["model"] == "1.0.0"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        held = float(re.search(r'^qc_parts_total\{action="HOLD"\} (\S+)$', body, re.M).group(1))
        assert held >= 25
        assert 'qc_model_info{version="1.0.0"} 1.0' in body
        assert "qc_decision_latency_seconds_bucket" in body
    finally:
        service.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_health_is_503_once_the_line_has_stopped(broker, tmp_path):
    from edge.metrics import MetricsServer
    from qc.broker import free_port

    cfg = load_config(write_config(tmp_path, broker))
    service = EdgeService(cfg, actuator=SimulatedActuator(), max_parts=5, backpressure=True)
    service.start()
    try:
        assert service.pipeline.wait(30)
        service.pipeline.stop()
        server = MetricsServer(service.metrics, service.health, "127.0.0.1", free_port())
        server.start()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert err.value.code == 503
        server.stop()
    finally:
        service.stop()


@pytest.mark.parametrize("extra, message", [
    ("[decision]\naudit_rate = 3.0\n", r"\[decision\]\.audit_rate: must be <= 1.0, got 3.0"),
    ("[camera]\nflavour = 'x'\n", r"\[camera\]\.flavour: unknown key"),
    ("[mqtt]\nport = 'one'\n", r"\[mqtt\]\.port: must be an integer"),
    ("[edge]\nline = 'a/b'\n", r"\[edge\]\.line: must be a non-empty name"),
    ("[decision]\npass_below = 0.9\nreject_above = 0.1\n", r"\[decision\]\.pass_below: must be <= reject_above"),
    ("[trigger]\ntype = 'laser'\n", r"\[trigger\]\.type: must be one of"),
])
def test_bad_config_names_the_file_and_the_key(tmp_path, extra, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(extra)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(cfg)
    assert str(cfg) in str(err.value)


def test_example_config_is_valid():
    from pathlib import Path
    cfg = load_config(Path(__file__).parent.parent / "config" / "edge.example.toml")
    assert cfg.camera.type == "synthetic" and cfg.decision.uncertain_action == "HOLD"


def test_importing_the_edge_never_imports_flask_torch_station_or_training():
    code = ("import sys, edge.service, edge.cli, qc.bench_edge, edge.pipeline, edge.detector, edge.link; "
            "bad = [m for m in ('flask', 'torch', 'station_ui', 'training', 'onnx', 'sqlite_utils') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_qc_edge_help_and_check_config_work_from_the_command_line(tmp_path, broker):
    cfg = write_config(tmp_path, broker)
    out = subprocess.run([sys.executable, "-m", "qc.cli", "edge", "check-config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "OK" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[decision]\ndeadline_ms = -1\n")
    out = subprocess.run([sys.executable, "-m", "qc.cli", "edge", "check-config", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "deadline_ms" in out.stderr
    assert "Traceback" not in out.stderr


def test_log_lines_never_end_up_glued_onto_the_live_status_line():
    import io
    import logging

    from edge.cli import LiveStatus

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with LiveStatus(out) as live:
            live.show("parts 10  PASS 9")
            logging.getLogger("edge.test").warning("camera fault")
            live.show("parts 11  PASS 10")
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert "PASS 9camera fault" not in text
    assert "PASS 9" + LiveStatus.CLEAR + "camera fault\n" in text  # the status is erased, the log line starts clean
    assert text.endswith("PASS 10\n")  # and the last status is left on a line of its own
