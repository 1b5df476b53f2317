"""`qc demo`: the embedded broker fallback, the oracle reviewer, and the whole demo run hands-off.

The demo runs as a user runs it (a `qc demo` process); its parts are real: Mosquitto or amqtt,
the station, the trainer process, and an edge on the synthetic line.
"""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest

from hardware.base import PartTruth
from qc.broker import mqtt_ping
from qc.demo_review import AutoReviewer, TruthBook, verdict_for
from qc.pybroker import EmbeddedBroker, start_local_broker
from qcloop import wire
from tests.station_support import ENGINEER, add_reviews, make_header
from tests.waiting import wait_until


def test_embedded_broker_carries_qos1_messages_and_stops(tmp_path):
    b = EmbeddedBroker(tmp_path / "amqtt").start()
    got, ready = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sub")
    sub.on_connect = lambda c, *a: c.subscribe("qc/v1/#", qos=1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    sub.connect(b.host, b.port)
    sub.loop_start()
    try:
        assert ready.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect(b.host, b.port)
        pub.loop_start()
        pub.publish("qc/v1/line1/cam1/review", b"x" * 300_000, qos=1).wait_for_publish(10)
        wait_until(lambda: got, timeout=10)
        assert got == [("qc/v1/line1/cam1/review", b"x" * 300_000)]
        pub.loop_stop()
        pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()
        b.stop()
    assert b.proc.returncode is not None and not mqtt_ping(b.host, b.port)


def test_local_broker_prefers_mosquitto_and_falls_back_on_request(tmp_path):
    b = start_local_broker(tmp_path / "a")
    try:
        assert b.kind == "mosquitto" and mqtt_ping(b.host, b.port)
    finally:
        b.stop()
    e = start_local_broker(tmp_path / "b", prefer="amqtt")
    try:
        assert e.kind.startswith("amqtt") and mqtt_ping(e.host, e.port)
    finally:
        e.stop()


@pytest.mark.parametrize("truth, expected", [
    (PartTruth("crack", ("glare",)), ("real_fault", "crack")),
    (PartTruth(None, ("streak",)), ("not_defect", "glare")),
    (PartTruth(None, ("shadow", "dust")), ("not_defect", "shadow")),
    (PartTruth(None, ()), ("not_defect", "other")),
])
def test_oracle_verdicts_use_the_stations_words(truth, expected):
    verdict, kind = verdict_for(truth)
    assert (verdict, kind) == expected
    assert kind in (wire.FAULT_KINDS if verdict == "real_fault" else wire.NOT_DEFECT_KINDS)


class _Camera:
    def __init__(self, truths):
        self.truths = truths

    def capture(self, part_id, not_before=None):
        import numpy as np

        from hardware.base import Frame
        return Frame(part_id, 0.0, 0.0, np.zeros((4, 4), np.uint8), truth=self.truths[part_id])

    def close(self):
        pass


def test_line_figures_count_each_versions_review_share_false_rejects_and_escapes_from_the_truth(tmp_path):
    from edge.decision import Decision
    from qc.demo_figures import LineFigures

    # 0.1.0: 4 good parts (one rejected), 2 defects (one passed), 2 held; 0.1.1: 2 good parts, both passed.
    plan = [("0.1.0", None, "REJECT"), ("0.1.0", None, "PASS"), ("0.1.0", None, "HOLD"), ("0.1.0", None, "PASS"),
            ("0.1.0", "pit", "PASS"), ("0.1.0", "crack", "HOLD"), ("0.1.1", None, "PASS"), ("0.1.1", None, "PASS")]
    truths = {f"p{i}": PartTruth(defect) for i, (_, defect, _) in enumerate(plan)}
    book = TruthBook(_Camera(truths), tmp_path / "truth.jsonl")
    figures = LineFigures(book)
    for i, (model, _, action) in enumerate(plan):
        book.capture(f"p{i}")
        figures.on_decision(Decision(f"p{i}", action, "pass", None, 0.5, model, 0.0, 0.001))
    first, second = figures.versions()
    assert (first.model, first.parts, first.good, first.defects) == ("0.1.0", 6, 4, 2)
    assert first.review_share == 2 / 6
    assert first.false_reject_rate == 1 / 4
    assert first.escape_rate == 1 / 2
    assert (second.model, second.parts, second.false_reject_rate, second.escape_rate) == ("0.1.1", 2, 0.0, None)
    assert "false rejects 25.0 % of 4 good parts" in first.words()
    assert "escapes 50.0 % of 2 defects" in first.words()
    assert figures.parts_of("0.1.1") == 2 and figures.parts_of("9.9.9") == 0
    book.close()


def test_truth_of_reviewed_parts_survives_a_restart(tmp_path):
    truths = {"p1": PartTruth("pit"), "p2": PartTruth(None, ("glare",))}
    book = TruthBook(_Camera(truths), tmp_path / "truth.jsonl")
    for pid in truths:
        book.capture(pid)
    book.on_review(make_header(part_id="p1"))  # only p1 went to review
    book.close()
    again = TruthBook(_Camera(truths), tmp_path / "truth.jsonl")
    assert again.truth("p1") == PartTruth("pit") and again.truth("p2") is None
    again.close()


def test_auto_reviewer_answers_the_real_station_with_the_truth(tmp_path, broker):
    from station_ui import accounts
    from station_ui.config import config_for
    from station_ui.server import StationServer
    from station_ui.store import Store

    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-demo"},
                     web={"port": 0})
    store = Store(cfg.db_path)
    accounts.add_user(store, ENGINEER[0], ENGINEER[1], ENGINEER[2], production=False)
    headers = add_reviews(store, 6, tmp_path / "img")
    truths = {h.part_id: (PartTruth("burr") if i % 2 else PartTruth(None, ("dust",))) for i, h in enumerate(headers)}
    book = TruthBook(_Camera(truths), tmp_path / "truth.jsonl")
    for pid in truths:
        book.capture(pid)
    server = StationServer(cfg).start()
    reviewer = AutoReviewer(server.url, (ENGINEER[0], ENGINEER[2]), book, idle_wait_s=0.05).start()
    try:
        wait_until(lambda: store.queue_stats().count == 0, timeout=20)
    finally:
        reviewer.stop()
        server.stop()
    assert reviewer.error is None and reviewer.answered == 6
    for h in headers:
        row = store.get_review(h.id)
        assert (row["final_verdict"], row["final_kind"]) == verdict_for(truths[h.part_id])
    store.close()


def _qc_demo(tmp_path, *extra, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qc.cli", "demo", "--data-dir", str(tmp_path / "demo"),
                           "--web-port", "0", "--metrics-port", "0", "--quiet", *extra],
                          capture_output=True, text=True, timeout=timeout)


def test_demo_runs_hands_off_and_again_on_the_same_data_dir(tmp_path):
    first = _qc_demo(tmp_path, "--auto-review", "--retrain-after", "0", "--parts", "120", "--rate", "40")
    assert first.returncode == 0, first.stderr
    assert "broker: mosquitto" in first.stderr
    assert "stopped cleanly" in first.stderr
    # The end summary's per-version figures account for every part.
    versions = [line for line in first.stderr.splitlines() if re.match(r"demo:   (0\.1\.0|no model)", line)]
    assert any(line.startswith("demo:   0.1.0: ") and "good parts, escapes" in line for line in versions)
    assert sum(int(re.search(r": (\d+) parts, review", line).group(1)) for line in versions) == 120
    login = (tmp_path / "demo" / "station" / "demo-login.txt").read_text().split()
    assert f"log in as {login[0]!r} with password {login[1]!r}" in first.stderr
    db = sqlite3.connect(tmp_path / "demo" / "station" / "station.db")
    truth = {json.loads(line)["part_id"]: json.loads(line)
             for line in (tmp_path / "demo" / "edge" / "truth.jsonl").read_text().splitlines()}
    decided = db.execute("SELECT part_id, final_verdict FROM reviews WHERE final_verdict IS NOT NULL").fetchall()
    assert decided, "the oracle answered nothing"
    for part_id, verdict in decided:  # every verdict is the generator's truth
        assert verdict == ("real_fault" if truth[part_id]["defect"] else "not_defect")
    db.close()

    # Again, on the embedded Python broker: same login, the edge's model registry reused.
    second = _qc_demo(tmp_path, "--retrain-after", "0", "--parts", "40", "--rate", "40", "--broker", "amqtt")
    assert second.returncode == 0, second.stderr
    assert "broker: amqtt" in second.stderr and f"password {login[1]!r}" in second.stderr
    assert "stopped cleanly" in second.stderr


def _photo_folder(root, n: int = 12, size: int = 96):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for label in ("ok", "def"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            image = np.full((size, size), 120, np.uint8) + rng.integers(0, 20, (size, size), dtype=np.uint8)
            if label == "def":
                cv2.circle(image, (size // 2, size // 2), 6, 10, -1)
            cv2.imwrite(str(root / label / f"{label}{i}.png"), image)


def test_demo_plays_a_folder_of_labelled_photos_as_the_line_with_artefacts(tmp_path):
    _photo_folder(tmp_path / "photos")
    run = _qc_demo(tmp_path, "--images", str(tmp_path / "photos"), "--auto-review", "--retrain-after", "0",
                   "--parts", "80", "--rate", "40")
    assert run.returncode == 0, run.stderr
    assert "stopped cleanly" in run.stderr
    db = sqlite3.connect(tmp_path / "demo" / "station" / "station.db")
    truth = {json.loads(line)["part_id"]: json.loads(line)
             for line in (tmp_path / "demo" / "edge" / "truth.jsonl").read_text().splitlines()}
    decided = db.execute("SELECT part_id, final_verdict, width FROM reviews WHERE final_verdict IS NOT NULL").fetchall()
    db.close()
    assert decided, "the oracle answered nothing"
    for part_id, verdict, width in decided:  # the folder's labels are the truth, and the whole photo is the part
        assert verdict == ("real_fault" if truth[part_id]["defect"] else "not_defect")
        assert width == 96
    assert any(t["artefacts"] for t in truth.values())  # lighting artefacts were injected


def test_demo_refuses_a_photo_folder_without_both_labels(tmp_path):
    _photo_folder(tmp_path / "photos")
    import shutil

    shutil.rmtree(tmp_path / "photos" / "def")
    run = _qc_demo(tmp_path, "--images", str(tmp_path / "photos"), "--retrain-after", "0", "--parts", "5")
    assert run.returncode != 0
    assert "needs labelled photos in ok/ and def/ folders" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_demo_hands_off_verdicts_trigger_a_gated_retrain(tmp_path):
    run = _qc_demo(tmp_path, "--auto-review", "--retrain-after", "25", "--rate", "20", "--train-parts", "600",
                   "--train-epochs", "1", "--until", "retrained", "--duration", "280", timeout=320)
    assert run.returncode == 0, run.stderr
    log = (tmp_path / "demo" / "trainer" / "trainer.log").read_text()
    assert "fine-tuning 0.1.0" in log and "gate on the golden set" in log
    assert ("PROMOTED:" in log or "NOT promoted:" in log) and ("stopped cleanly" in run.stderr)
    gate_log = (tmp_path / "demo" / "trainer" / "data" / "gate-log.jsonl").read_text().splitlines()
    # The first retrain's candidate follows the built-in 0.1.0 (more may follow before the demo stops).
    assert json.loads(gate_log[0])["candidate"]["version"] == "0.1.1"


def test_the_demo_names_a_mode_it_does_not_know():
    from qc.demo import _parse_modes
    from qcloop.errors import QcError

    assert _parse_modes("in-the-loop, out-of-the-loop") == ["in-the-loop", "out-of-the-loop"]
    with pytest.raises(QcError, match="sideways is not one of in-the-loop, on-the-loop, out-of-the-loop"):
        _parse_modes("in-the-loop,sideways")
