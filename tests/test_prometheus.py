"""Plant monitoring: the station's /metrics figures, the shipped Prometheus config, rules and dashboard.

The station collector is checked against a store with known rows; the shipped files with
promtool (syntax, and the recording rules' arithmetic on known series); then a real
Prometheus scrapes a real edge and a real station through the shipped config, records
the per-line series and fires the edge-down alert when the edge stops.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from station_ui.metrics import StationCollector
from station_ui.store import Store
from tests.station_support import add_reviews, make_station
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "qcloop-plant.json"
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"  # Debian's package (scripts/bootstrap.sh --tests)
needs_prometheus = pytest.mark.skipif(not (os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)),
                                      reason=f"{PROMETHEUS} is not installed: run scripts/bootstrap.sh --tests")


# ------------------------------------------------------------------ the station's collector
def _registry(store_path: Path, clock) -> tuple[CollectorRegistry, StationCollector]:
    registry = CollectorRegistry()
    collector = StationCollector(store_path, settle_s=11.0, clock=clock)
    registry.register(collector)
    return registry, collector


def test_station_collector_figures_match_the_store(tmp_path):
    now = time.time()
    store = Store(tmp_path / "station.db", station="st1")
    images = tmp_path / "images"
    add_reviews(store, 3, images, t0=now - 500, line="L1", camera="c1")  # waiting, oldest 500 s
    add_reviews(store, 1, images, t0=now - 50, line="L1", camera="c2")
    passes = add_reviews(store, 5, images, t0=now - 900, line="L2", camera="c1", reason="audit",
                         action_taken="PASS", score=0.1)
    rejects = add_reviews(store, 3, images, t0=now - 900, line="L2", camera="c1", reason="audit",
                          action_taken="REJECT", score=0.9)
    old = now - 100  # settled: past the undo window
    for h, verdict in zip(passes, ["real_fault", "real_fault", "not_defect"], strict=False):
        store.record_verdict(h.id, verdict, "", "olga", now=old)
    for h, verdict in zip(rejects, ["not_defect", "real_fault"], strict=False):
        store.record_verdict(h.id, verdict, "", "olga", now=old)
    store.record_verdict(passes[3].id, "real_fault", "", "erik", now=now - 1)  # recent: may still be undone
    store.record_verdict(passes[4].id, "not_defect", "", "ida", now=now - 2)
    store.undo_last("ida", window_s=10, now=now - 1)  # undone: never counts
    store.close()

    clock = [now]
    registry, _ = _registry(tmp_path / "station.db", lambda: clock[0])
    v = registry.get_sample_value
    assert v("qc_station_queue_items", {"line": "L1", "camera": "c1"}) == 3
    assert v("qc_station_queue_items", {"line": "L1", "camera": "c2"}) == 1
    assert v("qc_station_queue_items", {"line": "L2", "camera": "c1"}) == 2  # the undone PASS, the unruled REJECT
    assert v("qc_station_queue_oldest_age_seconds", {"line": "L1"}) == pytest.approx(500, abs=1)
    assert v("qc_station_queue_oldest_age_seconds", {"line": "L2"}) == pytest.approx(900 - 2, abs=1)
    assert v("qc_station_line_hold_time_seconds", {"line": "L1", "mode": "in-the-loop"}) == 60
    assert v("qc_station_reviews_received_total", {"line": "L1", "camera": "c1", "reason": "uncertain"}) == 3
    assert v("qc_station_reviews_received_total", {"line": "L2", "camera": "c1", "reason": "audit"}) == 8
    assert v("qc_station_verdicts_total", {"line": "L2", "verdict": "real_fault"}) == 3
    assert v("qc_station_verdicts_total", {"line": "L2", "verdict": "not_defect"}) == 2
    # Escapes: audited PASSes ruled real fault (2 of 3 settled); false rejects: audited REJECTs not a defect.
    assert v("qc_station_audits_total", {"line": "L2", "action": "PASS", "verdict": "real_fault"}) == 2
    assert v("qc_station_audits_total", {"line": "L2", "action": "PASS", "verdict": "not_defect"}) == 1
    assert v("qc_station_audits_total", {"line": "L2", "action": "REJECT", "verdict": "not_defect"}) == 1
    assert v("qc_station_audits_total", {"line": "L2", "action": "REJECT", "verdict": "real_fault"}) == 1

    clock[0] = now + 20  # the recent verdict has settled now: it counts; the undone one still does not
    assert v("qc_station_audits_total", {"line": "L2", "action": "PASS", "verdict": "real_fault"}) == 3
    assert v("qc_station_audits_total", {"line": "L2", "action": "PASS", "verdict": "not_defect"}) == 1

    store = Store(tmp_path / "station.db", station="st1")  # new rows are added to the counts in memory
    add_reviews(store, 2, images, t0=now - 10, line="L1", camera="c1")
    store.close()
    assert v("qc_station_reviews_received_total", {"line": "L1", "camera": "c1", "reason": "uncertain"}) == 5
    assert v("qc_station_queue_items", {"line": "L1", "camera": "c1"}) == 5

    # A restarted station continues its counters from the database instead of starting at zero.
    registry2, _ = _registry(tmp_path / "station.db", lambda: now + 20)
    for name, labels in [("qc_station_reviews_received_total", {"line": "L1", "camera": "c1", "reason": "uncertain"}),
                         ("qc_station_audits_total", {"line": "L2", "action": "PASS", "verdict": "real_fault"}),
                         ("qc_station_verdicts_total", {"line": "L2", "verdict": "not_defect"})]:
        assert registry2.get_sample_value(name, labels) == v(name, labels)


def test_metrics_route_needs_no_login_and_names_each_line(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path, station=cfg.station.name)
    add_reviews(store, 2, cfg.image_dir, line="line7", camera="cam3")
    store.close()
    resp = app.test_client().get("/metrics")  # no session
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    body = resp.get_data(as_text=True)
    assert re.search(r'^qc_station_queue_items\{camera="cam3",line="line7"\} 2\.0$', body, re.M)
    assert 'qc_station_reviews_received_total{camera="cam3",line="line7",reason="uncertain"} 2.0' in body
    assert "qc_station_broker_connected" not in body  # MQTT off: no connection to report


# ------------------------------------------------------------------ shipped files, checked by promtool
@needs_prometheus
def test_shipped_config_rules_and_targets_pass_promtool():
    # check config also reads the rule files and the file_sd target files it names.
    done = subprocess.run([PROMTOOL, "check", "config", str(PROM_DIR / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rule files found" in done.stdout + done.stderr
    rules = sorted(str(p) for p in (PROM_DIR / "rules").glob("*.yml"))
    done = subprocess.run([PROMTOOL, "check", "rules", *rules], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for target_file in (PROM_DIR / "targets").glob("*/*.yml"):
        for group in yaml.safe_load(target_file.read_text()):
            want = {"line", "camera"} if target_file.parent.name == "edges" else {"line", "station"}
            assert want <= set(group["labels"]), target_file


@needs_prometheus
def test_recording_rules_estimate_escapes_and_false_rejects_from_audits(tmp_path):
    """The rules' arithmetic on known series (promtool test rules): L1 passes 90 % of its parts and 1 in 10
    audited PASSes is a real fault, so 9 % of its parts escape; L2 has audits and no fault: 0, not missing."""
    parts = 'qc_parts_total{job="qc-edge", line="%s", camera="c1", action="%s"}'
    audits = 'qc_station_audits_total{job="qc-station", line="%s", action="%s", verdict="%s"}'
    series = [(parts % ("L1", "PASS"), "0+90x1500"), (parts % ("L1", "REJECT"), "0+10x1500"),
              (audits % ("L1", "PASS", "real_fault"), "0+1x1500"), (audits % ("L1", "PASS", "not_defect"), "0+9x1500"),
              (audits % ("L1", "REJECT", "not_defect"), "0+3x1500"), (audits % ("L1", "REJECT", "real_fault"), "0+1x1500"),
              (parts % ("L2", "PASS"), "0+100x1500"), (audits % ("L2", "PASS", "not_defect"), "0+1x1500"),
              ('qc_reviews_total{job="qc-edge", line="L1", camera="c1", reason="uncertain"}', "0+5x1500"),
              # Ten minutes old from the fifth minute on: the alert's summary reads the same whether the
              # alerting group sees this evaluation's recording or the one before (promtool's groups may lag).
              ('qc_station_queue_oldest_age_seconds{job="qc-station", line="L1"}', "0+120x5 600+0x1500"),
              ('qc_station_line_hold_time_seconds{job="qc-station", line="L1", mode="in-the-loop"}', "60x1500")]
    spec = {
        "rule_files": [str(PROM_DIR / "rules" / "recording.yml"), str(PROM_DIR / "rules" / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": "round(1000 * line:qc_escape_rate:estimate1d)", "eval_time": "25h",
                 "exp_samples": [{"labels": '{line="L1"}', "value": 90}, {"labels": '{line="L2"}', "value": 0}]},
                {"expr": 'round(1000 * line:qc_false_reject_rate:estimate1d{line="L1"})', "eval_time": "25h",
                 "exp_samples": [{"labels": '{line="L1"}', "value": 75}]},
                {"expr": "round(100 * line:qc_review_share:ratio_rate5m)", "eval_time": "10h",
                 "exp_samples": [{"labels": '{line="L1"}', "value": 5}, {"labels": '{line="L2"}', "value": 0}]},
                {"expr": "round(line:qc_failsafe_share:ratio_rate5m)", "eval_time": "10h",
                 "exp_samples": [{"labels": '{line="L1"}', "value": 0}, {"labels": '{line="L2"}', "value": 0}]},
            ],
            "alert_rule_test": [
                {"alertname": "QcEscapeEstimateOverBudget", "eval_time": "25h",
                 "exp_alerts": [{"exp_labels": {"line": "L1", "severity": "critical"}}]},
                {"alertname": "QcReviewQueueTooOld", "eval_time": "1m", "exp_alerts": []},
                {"alertname": "QcReviewQueueTooOld", "eval_time": "10m",
                 "exp_alerts": [{"exp_labels": {"line": "L1", "severity": "warning"}}]},
            ],
        }],
    }
    # exp_alerts are compared with their annotations too: take them from the shipped rules.
    shipped = {r["alert"]: r for g in yaml.safe_load((PROM_DIR / "rules" / "alerts.yml").read_text())["groups"]
               for r in g["rules"]}
    spec_alerts = spec["tests"][0]["alert_rule_test"]  # type: ignore[index]
    spec_alerts[0]["exp_alerts"][0]["exp_annotations"] = {
        "summary": "L1: estimated escape rate 9% is over the 0.5 % budget",
        "description": shipped["QcEscapeEstimateOverBudget"]["annotations"]["description"]}
    spec_alerts[2]["exp_alerts"][0]["exp_annotations"] = {
        "summary": "L1: the oldest review has waited 10m 0s",
        "description": shipped["QcReviewQueueTooOld"]["annotations"]["description"]}
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _recorded_names() -> set[str]:
    doc = yaml.safe_load((PROM_DIR / "rules" / "recording.yml").read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"]}


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_dashboard_reads_the_recording_rules():
    exprs = _dashboard_exprs()
    used = {name for e in exprs for name in re.findall(r"\b[a-z_]+:[a-z0-9_:]+", e)}
    assert used and used <= _recorded_names(), used - _recorded_names()
    for rule in ("line:qc_review_share:ratio_rate5m", "line:qc_false_reject_rate:estimate1d",
                 "line:qc_escape_rate:estimate1d", "line:qc_review_queue_oldest_age:seconds"):
        assert any(rule in e for e in exprs), f"the dashboard does not show {rule}"
    dash = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "line"}


# ------------------------------------------------------------------ a real Prometheus on a real line
def _prometheus_config(into: Path, edge_port: int, station_port: int) -> Path:
    """The shipped config and rules, copied, with this test's targets and a 1 s pace (and no `for:`)."""
    shutil.copytree(PROM_DIR, into, ignore=shutil.ignore_patterns("README.md"))
    for example in (into / "targets").glob("*/*.yml"):
        example.unlink()
    (into / "targets" / "edges" / "L1.yml").write_text(yaml.safe_dump(
        [{"targets": [f"127.0.0.1:{edge_port}"], "labels": {"line": "L1", "camera": "c1"}}]))
    (into / "targets" / "stations" / "L1.yml").write_text(yaml.safe_dump(
        # Another line than its reviews': the station's own line label must win over its target's (honor_labels).
        [{"targets": [f"127.0.0.1:{station_port}"], "labels": {"line": "home", "station": "st-prom"}}]))
    cfg = yaml.safe_load((into / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in cfg["scrape_configs"]:
        job["scrape_timeout"] = "1s"
    (into / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    for rules_file in (into / "rules").glob("*.yml"):
        doc = yaml.safe_load(rules_file.read_text())
        for group in doc["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                rule.pop("for", None)
        rules_file.write_text(yaml.safe_dump(doc))
    return into / "prometheus.yml"


class _Prometheus:
    def __init__(self, config: Path, data: Path, port: int, log: Path):
        self.base = f"http://127.0.0.1:{port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                      f"--web.listen-address=127.0.0.1:{port}"],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.log = log

    def get(self, path: str, **params: str) -> dict:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, q: str) -> list[dict]:
        return self.get("/api/v1/query", query=q)["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@needs_prometheus
def test_prometheus_scrapes_an_edge_and_a_station_records_per_line_and_alerts(tmp_path, broker):
    from edge.config import load_config
    from edge.service import EdgeService
    from hardware.actuators import SimulatedActuator
    from qc.broker import free_port
    from station_ui.config import config_for
    from station_ui.server import StationServer
    from tests.test_edge_service import write_config

    (tmp_path / "edge").mkdir()
    ecfg = load_config(write_config(tmp_path / "edge", broker))  # every part uncertain: HOLD and a review
    ecfg = replace(ecfg, metrics=replace(ecfg.metrics, port=free_port()), trigger=replace(ecfg.trigger, rate_hz=10.0))
    scfg = config_for(tmp_path / "station", station={"name": "st-prom"}, web={"port": free_port()},
                      mqtt={"host": broker.host, "port": broker.port, "client_id": "st-prom"})
    station = StationServer(scfg).start()
    edge = EdgeService(ecfg, actuator=SimulatedActuator())
    edge.start()
    edge_running = True
    prom = _Prometheus(_prometheus_config(tmp_path / "prometheus", ecfg.metrics.port, scfg.web.port),
                       tmp_path / "tsdb", free_port(), tmp_path / "prometheus.log")
    try:
        assert wait_until(prom.ready, 60, interval=0.2), prom.log.read_text()[-3000:]

        def has(q: str, check=lambda value: True) -> bool:
            return any(check(float(r["value"][1])) for r in prom.query(q))

        # The edge's own series, with the line and camera its target gives them.
        assert wait_until(lambda: has('qc_parts_total{job="qc-edge", line="L1", camera="c1", action="HOLD"}',
                                      lambda n: n > 0), 60, interval=0.25)
        # The station's, with their own line (and the station's name from its target).
        assert wait_until(lambda: has('qc_station_reviews_received_total{line="L1", camera="c1", reason="uncertain",'
                                      ' station="st-prom"}', lambda n: n > 0), 60, interval=0.25)
        assert not prom.query('{job="qc-station", exported_line!=""}')
        # Series without a line of their own take the target's.
        assert wait_until(lambda: has('qc_station_broker_connected{line="home", station="st-prom"}',
                                      lambda n: n == 1), 30, interval=0.25)
        # Recorded per line: every part is uncertain, so the review share is all of them.
        assert wait_until(lambda: has('line:qc_review_share:ratio_rate5m{line="L1"}', lambda s: 0.8 < s < 1.2),
                          60, interval=0.25)
        assert wait_until(lambda: has('line:qc_review_queue_oldest_age:seconds{line="L1"}', lambda s: s > 0),
                          60, interval=0.25)
        assert has('line:qc_review_queue_age_limit:seconds{line="L1"}', lambda s: s == 60)
        # Every dashboard query is valid PromQL against these series.
        for expr in _dashboard_exprs():
            assert prom.get("/api/v1/query", query=expr.replace("$line", ".*"))["status"] == "success", expr

        edge.stop()
        edge_running = False

        def edge_down_firing() -> bool:
            return any(a["labels"].get("alertname") == "QcEdgeDown" and a["labels"].get("line") == "L1"
                       and a["labels"].get("camera") == "c1" and a["state"] == "firing"
                       for a in prom.get("/api/v1/alerts")["data"]["alerts"])

        assert wait_until(edge_down_firing, 60, interval=0.25), prom.get("/api/v1/alerts")
    finally:
        prom.stop()
        if edge_running:
            edge.stop()
        station.stop()
