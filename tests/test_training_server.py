"""The retraining server: triggers over a real broker, one retrain at a time, real training, gate, release."""
import hashlib
import io
import json
import threading
import time
import urllib.request
from types import SimpleNamespace

import cv2
import paho.mqtt.client as mqtt
import pytest

from models.onnx_build import constant_model_bytes
from models.signing import load_public_key, verify
from qcloop import configfile, wire
from qcloop.errors import ConfigError
from tests.models_support import make_test_manifest
from tests.station_support import add_reviews, make_station
from tests.waiting import wait_until
from training.data import ImageSet
from training.gate import read_log
from training.golden import GoldenSet
from training.release import keygen
from training.serve_config import ServeConfig, load_config
from training.server import TrainServer
from training.station_source import StationSource

HW = (64, 64)


@pytest.fixture(scope="module")
def seed_images(tmp_path_factory):
    """A seed folder of synthetic part photographs (ok/ and def/)."""
    root = tmp_path_factory.mktemp("seed")
    for i, s in enumerate(ImageSet.from_synthetic(48, HW, seed=2, severity=(0.7, 1.0)).samples):
        folder = root / ("def" if s.label else "ok")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"part{i:03d}.png"), s.image)
    return root


def server_config(tmp_path, broker, seed_images, **triggers):
    keygen(tmp_path / "keys" / "trainer.key", tmp_path / "keys" / "trainer.pub")
    raw = {
        "data": {"dir": str(tmp_path / "trainer"), "seed_folders": [str(seed_images)], "size": 64, "golden_size": 12},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": f"trainer-{tmp_path.name[-12:]}",
                 "lines": ["L1"]},
        "keys": {"private": str(tmp_path / "keys" / "trainer.key"), "public": str(tmp_path / "keys" / "trainer.pub")},
        "gate": {"escape_budget": 1.0},  # the first model is promoted whatever one epoch makes of it
        "train": {"epochs": 1, "val": 0.3},
        "triggers": {"verdicts": 0, "every_hours": 0, "on_request": True, **triggers},
        "serve": {"host": "127.0.0.1", "port": 0},
    }
    return configfile.from_dict(raw, ServeConfig)


class Watcher:
    """A client on the trainer's retained topics, and a way to send it requests and verdicts."""

    def __init__(self, broker, *topics):
        self.got: dict[str, list] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.monotonic_ns()}")
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        for t in topics:
            self.c.subscribe(t, qos=1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.setdefault(msg.topic, []).append(json.loads(msg.payload))

    def last(self, topic):
        with self.lock:
            return (self.got.get(topic) or [None])[-1]

    def send(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_a_station_request_runs_a_real_retrain_that_is_gated_signed_served_and_announced(tmp_path, broker,
                                                                                         seed_images):
    cfg = server_config(tmp_path, broker, seed_images)
    topics = wire.Topics()
    server = TrainServer(cfg, log_to=io.StringIO()).start()
    w = Watcher(broker, topics.train_status(), topics.model("L1"))
    try:
        assert server.connected.wait(10)
        w.send(topics.retrain_request(), wire.RetrainRequest("erik", time.time(), station="st1").encode())
        done = lambda: (w.last(topics.train_status()) or {}).get("last") is not None  # noqa: E731
        assert wait_until(done, timeout=60), server.last
        status = w.last(topics.train_status())
        assert wait_until(lambda: w.last(topics.model("L1")) is not None, 10)
        ann = wire.ModelAnnouncement.decode(json.dumps(w.last(topics.model("L1"))).encode())
        raw = urllib.request.urlopen(ann.manifest_url, timeout=5).read()
    finally:
        w.close()
        server.stop()
    assert status["state"] == "idle", status
    typed = wire.TrainStatus.decode(json.dumps(status))  # what the station's ingest will accept
    assert typed.last is not None
    assert typed.last.gate is not None
    assert typed.last.gate.promoted
    assert status["last"]["ok"], status
    assert status["last"]["promoted"], status
    assert "requested by erik" in status["last"]["reason"]
    # 48 seed images cannot certify the escape budget: the status says so, and how many defects would.
    cal = status["last"]["calibration"]
    assert cal["confidence"] == 0.95
    assert cal["certified"]["escape"] is False
    assert cal["defects_to_certify"] > 0
    golden = GoldenSet.load(cfg.data.dir / "golden")
    assert len(golden) >= 12 and set(golden.counts().values()) != {0}
    assert status["last"]["gate"]["candidate"]["images"] == len(golden) and "rule_text" in status["last"]["gate"]
    reg = server.registry
    assert reg.current_version() == ann.version == "1.0.0"
    manifest = reg.manifest("1.0.0")
    verify(manifest, load_public_key(cfg.keys.public))  # signed over the golden figures
    assert manifest.metrics["golden"]["golden_set"] == golden.summary()
    assert hashlib.sha256(raw).hexdigest() == ann.sha256 and ann.signature == manifest.signature
    # The golden images were kept out of training and validation.
    assert manifest.dataset["stats"]["golden_excluded"] >= len(golden)
    trained = sum(sum(c.values()) for c in manifest.dataset["counts"].values())
    assert trained == 48 - manifest.dataset["stats"]["golden_excluded"]
    assert [e["promoted"] for e in read_log(cfg.data.dir)] == [True]
    # family = "auto": a first model on 48 seed images is the pretrained family (training.defaults).
    assert manifest.detector["family"] == "lite2"


def test_auto_family_follows_the_running_model_so_a_retrain_can_fine_tune_it(tmp_path, broker, seed_images):
    import dataclasses

    from models.builtin import install_into

    cfg = server_config(tmp_path, broker, seed_images)
    server = TrainServer(cfg, log_to=io.StringIO())
    assert server._network(None, 100).family == "lite2" and server._network(None, 5000).family == "defectnet"
    version = install_into(server.registry)  # the built-in model
    builtin = server.registry.manifest(version)
    assert server._network(version, 100).family == builtin.detector.get("family", "defectnet")
    fixed = TrainServer(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, family="defectnet")),
                        log_to=io.StringIO())
    assert fixed._network(None, 100).family == "defectnet"


def test_enough_new_verdicts_start_a_retrain(tmp_path, broker, seed_images):
    cfg = server_config(tmp_path, broker, seed_images, verdicts=3, on_request=False)
    server = TrainServer(cfg, log_to=io.StringIO()).start()
    w = Watcher(broker)
    try:
        assert server.connected.wait(10)
        for _ in range(2):
            w.send(wire.Topics().verdict("L1"), wire.Verdict(wire.new_review_id(), "real_fault", "pit", "olga", time.time()).encode())
        assert wait_until(lambda: server.verdicts_since == 2, 10)
        assert server.runs == 0 and server.queued is None
        w.send(wire.Topics().verdict("L1"), wire.Verdict(wire.new_review_id(), "not_defect", "glare", "olga", time.time()).encode())
        assert wait_until(lambda: server.last is not None, timeout=60)
    finally:
        w.close()
        server.stop()
    assert server.runs == 1
    assert server.last.ok
    assert "3 new verdicts" in server.last.reason


def test_retrains_never_overlap_and_requests_during_a_run_queue_once(tmp_path, broker, seed_images):
    """Real training takes seconds, so this one test holds the run open with a stand-in build."""
    release_build = threading.Event()
    active, calls, peak = [0], [], [0]
    lock = threading.Lock()

    def held_build(data, version, *args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            calls.append(version)
        try:
            release_build.wait(30)
            m, b = make_test_manifest(version, constant_model_bytes(0.5, HW), HW, (0.3, 0.7),
                                      parent=kwargs.get("parent"))
            return SimpleNamespace(manifest=m, model_bytes=b)
        finally:
            with lock:
                active[0] -= 1

    cfg = server_config(tmp_path, broker, seed_images)
    server = TrainServer(cfg, build=held_build, log_to=io.StringIO()).start()
    w = Watcher(broker)
    try:
        assert server.connected.wait(10)
        req = lambda who: wire.RetrainRequest(who, time.time()).encode()  # noqa: E731
        w.send(wire.Topics().retrain_request(), req("erik"))
        assert wait_until(lambda: len(calls) == 1, timeout=60)
        for who in ("ada", "erik", "ada"):
            w.send(wire.Topics().retrain_request(), req(who))
        assert wait_until(lambda: server.queued is not None, timeout=60)
        assert server.request("direct") == "already queued"
        assert len(calls) == 1  # still held: nothing ran beside it
        release_build.set()
        assert wait_until(lambda: len(calls) == 2 and not server.busy and server.last is not None
                          and server.runs == 2)
        assert server.queued is None  # the queued request was the only one: no third run is due
    finally:
        w.close()
        server.stop()
    assert peak[0] == 1 and server.runs == 2
    # The first candidate (no current model) was promoted; the identical second one was not.
    assert [e["promoted"] for e in read_log(cfg.data.dir)] == [True, False]
    assert calls == ["1.0.0", "1.0.1"] and server.registry.current_version() == "1.0.0"


def test_config_rejects_unknown_keys_and_keeps_the_token_out(tmp_path):
    example = load_config("training/serve.example.toml")
    assert example.station.token_env == "QC_STATION_TOKEN" and example.triggers.verdicts > 0
    bad = tmp_path / "serve.toml"
    bad.write_text('[station]\nurl = "http://st:8080"\ntoken = "secret"\n')
    with pytest.raises(ConfigError, match=r"\[station\]\.token: unknown key"):
        load_config(bad)
    bad.write_text('[triggers]\nverdicts = -1\n')
    with pytest.raises(ConfigError, match=r"\[triggers\]\.verdicts"):
        load_config(bad)


def test_station_source_fetches_only_new_items_and_keeps_hard_negatives(tmp_path):
    from werkzeug.serving import make_server

    from station_ui import accounts
    from station_ui.store import Store

    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path, station=cfg.station.name)
    token = accounts.add_token(store, "trainer")
    heads = add_reviews(store, 5, cfg.image_dir)
    store.record_verdict(heads[0].id, "real_fault", "pit", "olga")
    store.record_verdict(heads[1].id, "not_defect", "glare", "olga")
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_port}"
    try:
        src = StationSource(url, token, tmp_path / "trainer", page=1)
        first = src.sync()
        assert first.fetched == 2 and first.cursor > 0
        assert src.sync().fetched == 0  # nothing new: the cursor held
        store.record_verdict(heads[2].id, "not_defect", "dust", "olga")
        store.record_verdict(heads[3].id, "not_defect", "other", "olga")  # good, but no lighting to learn from
        assert src.sync().fetched == 2
        data = src.load(HW)
        with pytest.raises(Exception, match="refused the API token"):
            StationSource(url, "wrong", tmp_path / "other").sync()
    finally:
        http.shutdown()
        store.close()
    by_id = {s.meta["review_id"]: s for s in data.samples}
    assert len(data) == 4 and by_id[heads[0].id].label == 1
    glare = by_id[heads[1].id]
    assert glare.label == 0
    assert glare.meta["kind"] == "glare"
    assert glare.meta["hard_negative"]
    assert by_id[heads[2].id].meta["kind"] == "dust" and data.stats["station_hard_negatives"] == 2
    other = by_id[heads[3].id]
    assert other.label == 0 and not other.meta.get("hard_negative")


def test_the_newest_station_verdicts_become_the_lines_gate_set_and_leave_training(tmp_path):
    from training.data import Sample
    from training.serve_config import GateSection
    from training.server import hold_out_line_parts

    parts = ImageSet.from_synthetic(60, (48, 48), seed=4, defect_rate=0.1, artefact_rate=0.5)
    samples = []
    for i, s in enumerate(parts.samples):
        meta = {"source": "station", "review_id": f"r{i:03d}", "verdict_time": f"2026-12-01T10:{i:02d}:00Z",
                "verdict": "not_defect" if s.label == 0 else "defect"}
        samples.append(Sample(s.image, s.label, meta))
    seeds = ImageSet.from_synthetic(30, (48, 48), seed=5)
    data = (ImageSet(samples, (48, 48)) + seeds).dedup()
    line, rest = hold_out_line_parts(data, GateSection(line_share=0.25), tmp_path / "line-gate" / "1.0.1")
    held = {e.meta["review_id"] for e in line.entries}
    assert len(held) == 15 and held == {f"r{i:03d}" for i in range(45, 60)}  # the 15 newest verdicts
    assert not held & {s.meta.get("review_id") for s in rest.samples}  # none of them trains
    assert len(rest) == len(data) - 15 and rest.stats["line_gate_held_out"] == 15
    assert GoldenSet.load(tmp_path / "line-gate" / "1.0.1").digest() == line.digest()  # kept with the decision
    # Too few verdicts for a line set: nothing is held out.
    none, same = hold_out_line_parts(data, GateSection(line_min=100), tmp_path / "x")
    assert none is None and len(same) == len(data)
