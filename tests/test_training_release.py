"""Golden set, gate, signing and publishing: from a candidate model to a running edge."""
import dataclasses
import hashlib
import json
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from models.manifest import load_manifest, write_manifest
from models.onnx_build import constant_model_bytes, threshold_model_bytes
from models.registry import Registry
from qcloop import wire
from qcloop.mqttconn import BrokerSettings
from tests.models_support import build_version, make_test_manifest
from tests.test_edge_hot_swap import running_edge, wait_until
from training.data import ImageSet
from training.dedup import content_hash
from training.gate import GateRule, gate, gate_candidate, read_log
from training.golden import GoldenSet
from training.release import Announcer, ModelHTTPServer, keygen, next_version, release

HW = (64, 64)


@pytest.fixture(scope="module")
def parts():
    """Synthetic parts at model input size, with clear defects."""
    return ImageSet.from_synthetic(40, HW, seed=3, severity=(0.7, 1.0), artefact_rate=0.0)


@pytest.fixture
def golden(tmp_path, parts):
    return GoldenSet.load_or_freeze(tmp_path / "data" / "golden", parts, size=40)


def dark_spot_thresholds(tmp_path, golden):
    """Thresholds for the dark-spot model that pass no golden defect (and as many good parts as that allows)."""
    from edge.detector import Detector

    probe = stage(tmp_path / "probe", "0.0.1", threshold_model_bytes(HW, contrast=0.3, blur=5), (0.0, 1.0))
    det = Detector.load(probe, roi=(0, 0, HW[1], HW[0]))  # scored exactly as the gate scores
    scores = np.array([det.score(im) for im in golden.images])
    return float(scores[golden.labels == 1].min()) * 0.99, 1.0


def stage(root, version, model_bytes, thresholds):
    return build_version(root, version, input_hw=HW, thresholds=thresholds, model_bytes=model_bytes)


def test_golden_set_is_frozen_once_and_reloaded_unchanged(tmp_path, parts):
    root = tmp_path / "golden"
    first = GoldenSet.load_or_freeze(root, parts, size=12)
    assert 12 <= len(first) < len(parts) and set(first.counts().values()) != {0}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == first.counts()
    assert manifest["hash"] == first.digest()
    assert manifest["created_at"]
    other = ImageSet.from_synthetic(30, HW, seed=9)
    again = GoldenSet.load_or_freeze(root, other, size=25)  # already frozen: the candidates are ignored
    assert again.digest() == first.digest()
    assert np.array_equal(again.images, first.images) and list(again.labels) == list(first.labels)
    assert again.add(other.dedup()) == 30 and len(GoldenSet.load(root)) == len(first) + 30


def test_golden_images_and_their_near_duplicates_never_reach_training(tmp_path):
    seed_dir = tmp_path / "seed"
    photos = ImageSet.from_synthetic(24, (96, 96), seed=5, severity=(0.7, 1.0))
    for i, s in enumerate(photos.samples):
        folder = seed_dir / ("def" if s.label else "ok")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"p{i:02d}.png"), s.image)
    data = ImageSet.from_folders(seed_dir, HW).dedup()
    golden = GoldenSet.load_or_freeze(tmp_path / "golden", data, size=8)
    # A rotated copy of a golden image arrives later in the seed folder.
    gshas = {e.sha for e in golden.entries}
    src = next(s for s in data.samples if content_hash(s.image) in gshas)
    rotated = cv2.rotate(cv2.imread(src.meta["path"], cv2.IMREAD_GRAYSCALE), cv2.ROTATE_90_CLOCKWISE)
    cv2.imwrite(str(seed_dir / ("def" if src.label else "ok") / "rotated-copy.png"), rotated)
    data2 = ImageSet.from_folders(seed_dir, HW).dedup()
    train = golden.exclude_from(data2)
    paths = {s.meta["path"] for s in train.samples}
    assert not any(p.endswith("rotated-copy.png") for p in paths)
    assert not ({content_hash(s.image) for s in train.samples} & gshas)
    assert len(train) == len(data2) - len(golden) - 1 and train.stats["golden_excluded"] == len(golden) + 1


def test_station_verdicts_of_look_alike_parts_reach_training_but_an_exact_golden_copy_does_not(tmp_path):
    """Line captures are distinct parts: renders of one design are hash-alike, yet none may be
    dropped as a "near-duplicate" of a golden image, and they are not chained into one group."""
    from training.data import Sample
    from training.dedup import dihedral_hashes, group_near_duplicates

    renders = ImageSet.from_synthetic(60, HW, seed=11)
    hashed = group_near_duplicates([dihedral_hashes(s.image) for s in renders.samples])
    assert len(set(hashed)) <= 50  # hashing would merge distinct parts
    station = ImageSet([Sample(s.image, s.label, {"source": "station", "review_id": f"r{i}",
                                                  "sha": content_hash(s.image)})
                        for i, s in enumerate(renders.samples[30:])], HW)
    data = (ImageSet.from_synthetic(30, HW, seed=12) + station).dedup()
    assert len({s.meta["group"] for s in data.samples}) == len(data) == 60
    golden = GoldenSet.load_or_freeze(tmp_path / "golden", ImageSet.from_synthetic(30, HW, seed=11).dedup(), size=30)
    copy = station.samples[0]
    golden.add(ImageSet([Sample(copy.image, copy.label, {"source": "station"})], HW))
    train = golden.exclude_from(data)
    kept = {s.meta.get("review_id") for s in train.samples} - {None}
    assert kept == {f"r{i}" for i in range(1, 30)}  # all but the exact copy of a golden image
    assert train.stats["golden_excluded"] == 1


def test_gate_promotes_a_better_candidate_refuses_a_worse_one_and_logs_both(tmp_path, golden):
    data_dir = tmp_path / "data"
    root = tmp_path / "staged"
    # Current: sends every part to review (no escapes, all review).
    current = stage(root, "1.0.0", constant_model_bytes(0.5, HW), (0.3, 0.7))
    better = stage(root, "1.0.1", threshold_model_bytes(HW, contrast=0.3, blur=5), dark_spot_thresholds(tmp_path, golden))
    worse = stage(root, "1.0.2", constant_model_bytes(0.1, HW), (0.3, 0.7))  # passes every part
    rule = GateRule(escape_tolerance=0.0, review_weight=0.25)

    up = gate(better, current, golden, rule, log_dir=data_dir)
    assert up.promoted, up.report()
    change = up.cost_change  # the cost compared as a pair on the golden set, with its interval
    assert change["low"] <= change["value"] <= change["high"] < 0, change
    assert change["value"] == pytest.approx(up.candidate.cost - up.current.cost, abs=1e-4)
    assert "paired interval" in up.report()
    assert up.candidate.escape_rate == 0.0 and up.candidate.cost < up.current.cost == 0.25
    assert up.current.review_rate == 1.0 and up.candidate.auroc is not None
    down = gate(worse, current, golden, rule, log_dir=data_dir)
    assert not down.promoted
    assert down.candidate.escape_rate == 1.0
    assert "escape" in down.reason
    assert "promote if escape" in down.report() and "NOT promoted" in down.report()

    first = gate(worse, None, golden, rule, log_dir=data_dir)  # no current model: the escape budget decides
    assert not first.promoted and "budget" in first.reason

    logged = read_log(data_dir)
    assert [e["promoted"] for e in logged] == [True, False, False]
    assert logged[0]["candidate"]["version"] == "1.0.1" and logged[0]["current"]["version"] == "1.0.0"
    assert logged[1]["candidate"]["escape_rate"] == 1.0 and logged[2]["current"] is None
    assert logged[0]["golden"]["hash"] == golden.digest() and logged[0]["rule"]["review_weight"] == 0.25


def test_gate_cost_rule_refuses_an_equal_candidate(tmp_path, golden):
    root = tmp_path / "staged"
    a = stage(root, "1.0.0", constant_model_bytes(0.5, HW), (0.3, 0.7))
    m, data = make_test_manifest("1.0.1", constant_model_bytes(0.5, HW), HW, (0.3, 0.7))
    same = gate_candidate(m, data, a, golden, GateRule(), log_dir=tmp_path)
    assert not same.promoted and "not lower" in same.reason


def test_gate_cost_counts_escapes_so_a_candidate_that_passes_fewer_defects_can_win(tmp_path, golden):
    root = tmp_path / "staged"
    passes_all = stage(root, "1.0.0", constant_model_bytes(0.1, HW), (0.3, 0.7))  # no false rejects, all escape
    rejects_all = stage(root, "1.0.1", constant_model_bytes(0.9, HW), (0.3, 0.7))  # no escapes, all good rejected
    up = gate(rejects_all, passes_all, golden, GateRule(escape_weight=10.0))
    assert up.promoted, up.report()
    assert up.candidate.cost == pytest.approx(1.0) and up.current.cost == pytest.approx(10.0)
    assert "10 x escape" in up.report()
    blind = gate(rejects_all, passes_all, golden, GateRule(escape_weight=0.0))
    assert not blind.promoted and "not lower" in blind.reason


def test_next_version_bumps_the_last_number(tmp_path):
    reg = Registry(tmp_path / "reg")
    assert next_version(reg) == "1.0.0"
    build_version(reg.root, "1.0.9")
    build_version(reg.root, "1.0.10")
    assert next_version(reg) == "1.0.11"


@pytest.fixture
def trainer(tmp_path):
    keygen(tmp_path / "keys" / "trainer.key", tmp_path / "keys" / "trainer.pub")
    reg = Registry(tmp_path / "trainer" / "registry")
    build_version(reg.root, "1.0.0", input_hw=HW, thresholds=(0.0, 1.0), set_current=True)  # what the edge runs
    server = ModelHTTPServer(reg).start()
    yield {"registry": reg, "key": tmp_path / "keys" / "trainer.key", "pub": tmp_path / "keys" / "trainer.pub",
           "server": server, "url": server.url}
    server.stop()


def test_model_server_serves_published_files_only(trainer):
    reg, url = trainer["registry"], trainer["url"]
    body = urllib.request.urlopen(f"{url}/1.0.0/manifest.json", timeout=5).read()
    assert body == (reg.version_dir("1.0.0") / "manifest.json").read_bytes()
    assert urllib.request.urlopen(f"{url}/1.0.0/model.onnx", timeout=5).read() == reg.model_path("1.0.0").read_bytes()
    for bad in ("/CURRENT", "/history.jsonl", "/1.0.0/../CURRENT", "/9.9.9/manifest.json", "/1.0.0/other",
                "/", "/1.0.0/manifest.json/x"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + bad, timeout=5)
        assert err.value.code == 404, bad


def test_released_model_is_signed_announced_and_taken_by_a_running_edge(tmp_path, broker, trainer):
    reg = trainer["registry"]
    service, actuator, decisions = running_edge(tmp_path / "edge", broker, trainer)
    announcer = Announcer(BrokerSettings(host=broker.host, port=broker.port)).start()
    try:
        version = next_version(reg)
        m, data = make_test_manifest(version, constant_model_bytes(0.95, HW), HW, (0.3, 0.7), parent="1.0.0")
        signed = release(reg, m, data, trainer["key"], golden_metrics={"escape_rate": 0.0, "images": 40})
        assert reg.current_version() == version == "1.0.1"
        assert reg.manifest(version).metrics["golden"]["images"] == 40 and signed.signature
        ann = announcer.announce(reg, version, trainer["server"], ["L1"])
        assert ann.sha256 == hashlib.sha256((reg.version_dir(version) / "manifest.json").read_bytes()).hexdigest()
        assert wait_until(lambda: any(d.model == version for d in decisions))
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 10)
    finally:
        announcer.stop()
        service.stop()
    models = [d.model for d in decisions]
    k = models.index(version)
    assert set(models[:k]) == {"1.0.0"} and set(models[k:]) == {version}
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == len(set(ids)) == service.pipeline.triggered
    assert not service.watcher.refused


def test_a_tampered_published_manifest_is_refused_by_the_edge(tmp_path, broker, trainer):
    reg = trainer["registry"]
    service, actuator, decisions = running_edge(tmp_path / "edge", broker, trainer)
    announcer = Announcer(BrokerSettings(host=broker.host, port=broker.port)).start()
    try:
        m, data = make_test_manifest("1.0.1", constant_model_bytes(0.95, HW), HW, (0.3, 0.7))
        release(reg, m, data, trainer["key"])
        # Someone with write access to the registry but not the key widens the pass band.
        path = reg.version_dir("1.0.1") / "manifest.json"
        loaded = load_manifest(path)
        write_manifest(path, dataclasses.replace(loaded, thresholds=dataclasses.replace(loaded.thresholds,
                                                                                          pass_below=0.99,
                                                                                          reject_above=0.99)))
        announcer.announce(reg, "1.0.1", trainer["server"], ["L1"])  # sha256 of the tampered file
        assert wait_until(lambda: service.watcher.refused)
        assert "does not match" in service.watcher.refused[0]
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 10)
    finally:
        announcer.stop()
        service.stop()
    assert {d.model for d in decisions} == {"1.0.0"}


def test_announcement_is_retained_for_edges_that_connect_later(broker, trainer):
    import threading

    import paho.mqtt.client as mqtt

    reg = trainer["registry"]
    announcer = Announcer(BrokerSettings(host=broker.host, port=broker.port)).start()
    try:
        announcer.announce(reg, "1.0.0", trainer["server"], ["L1", "L2"])
    finally:
        announcer.stop()
    got, ready = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late-edge")
    c.on_message = lambda cl, u, msg: (got.append(msg), ready.set())
    c.connect(broker.host, broker.port)
    c.subscribe(wire.Topics().model("L2"), qos=1)
    c.loop_start()
    try:
        assert ready.wait(10)
    finally:
        c.loop_stop()
        c.disconnect()
    ann = wire.ModelAnnouncement.decode(got[0].payload)
    assert got[0].retain
    assert ann.version == "1.0.0"
    assert ann.manifest_url == f"{trainer['url']}/1.0.0/manifest.json"


def test_release_commands_register_without_torch_and_gate_from_the_command_line(tmp_path, golden, capsys):
    import argparse
    import subprocess
    import sys

    from training.release_cli import register

    code = ("import sys, argparse; from training.release_cli import register; "
            "p = argparse.ArgumentParser(); register(p.add_subparsers()); assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    parser = argparse.ArgumentParser(prog="qc train")
    register(parser.add_subparsers())
    args = parser.parse_args(["keygen", "--private", str(tmp_path / "k.key"), "--public", str(tmp_path / "k.pub")])
    assert args.func(args) == 0 and (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    root = tmp_path / "staged"
    cand = stage(root, "1.0.0", constant_model_bytes(0.1, HW), (0.3, 0.7))  # passes every defect
    args = parser.parse_args(["gate", str(cand), "--data", str(tmp_path / "data")])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "NOT promoted" in out
    assert "escape 1.0000" in out
    assert "rule:" in out
    assert read_log(tmp_path / "data")[-1]["candidate"]["version"] == "1.0.0"


def test_gate_accepts_an_escape_within_budget_when_the_current_model_passes_nothing():
    from training.gate import GateRule, ModelFigures, decide

    def figures(version, escapes, false_reject, review):
        return ModelFigures(version, 0.1, 0.9, 1000, 400, 600, escapes, escapes / 400, false_reject, review, None,
                            false_reject + 0.25 * review)

    rule = GateRule(escape_budget=0.005)
    stuck = figures("1.0.0", 0, 0.80, 0.20)  # rejects almost everything: no escapes, no use
    ok, why = decide(figures("1.0.1", 1, 0.02, 0.03), stuck, rule)  # 0.0025 escapes: within budget
    assert ok, why
    ok, why = decide(figures("1.0.2", 4, 0.01, 0.01), stuck, rule)  # 0.01 escapes: over budget and worse
    assert not ok and "worse than the current's" in why


def test_gate_promotes_a_candidate_the_paired_interval_cannot_tell_apart_and_refuses_one_truly_not_better():
    """With promote_unless_worse, a candidate is refused on cost only when the paired interval of
    (candidate - current) does not reach below 0; by default the point estimate must be lower."""
    from training.gate import GateRule, ModelFigures, decide

    def figures(version, cost):
        return ModelFigures(version, 0.1, 0.9, 41, 15, 26, 0, 0.0, cost, 0.0, None, cost)

    rule = GateRule(escape_tolerance=1.0, promote_unless_worse=True)
    current, noisy = figures("1.0.0", 0.19), figures("1.0.1", 0.24)
    strict = GateRule(escape_tolerance=1.0)  # the default: the point estimate must be lower
    assert not decide(noisy, current, strict, cost_change={"value": 0.05, "low": -0.12, "high": 0.21})[0]
    ok, why = decide(noisy, current, rule, cost_change={"value": 0.05, "low": -0.12, "high": 0.21})
    assert ok and "may be better" in why and "[-0.1200, +0.2100]" in why
    ok, why = decide(noisy, current, rule, cost_change={"value": 0.05, "low": 0.01, "high": 0.09})  # truly worse
    assert not ok and "does not reach below 0" in why
    ok, why = decide(current, current, rule, cost_change={"value": 0.0, "low": 0.0, "high": 0.0})  # the same model
    assert not ok
    assert "possibly lower" in rule.describe() and "possibly lower" not in strict.describe()


def test_golden_images_keep_their_weight_through_the_manifest(tmp_path, parts):
    """The gate counts golden images by weight (training.gate): the weight must survive freezing and loading."""
    from training.data import Sample

    weighted = ImageSet([Sample(s.image, s.label, {**s.meta, "weight": 5.0 if s.label == 0 else 1.0})
                         for s in parts.samples], HW)
    GoldenSet.load_or_freeze(tmp_path / "golden", weighted.dedup(), size=len(parts))
    again = GoldenSet.load(tmp_path / "golden")
    assert list(again.weights) == [5.0 if y == 0 else 1.0 for y in again.labels]
    assert GoldenSet.load_or_freeze(tmp_path / "plain", parts.dedup(), size=len(parts)).weights is None


def test_gate_refuses_a_candidate_that_scraps_the_lines_good_parts_though_the_golden_set_would_promote_it(
        tmp_path, golden, parts):
    """The demo's case: on the clean golden parts the candidate is better, while on the line's own parts
    (good ones under glare, shadows and dust) it rejects good parts the current model does not."""
    root = tmp_path / "staged"
    current = stage(root, "1.0.0", constant_model_bytes(0.5, HW), (0.3, 0.7))  # reviews every part
    pass_below, _ = dark_spot_thresholds(tmp_path, golden)
    from edge.detector import Detector

    probe = Detector.load(stage(root, "0.0.2", threshold_model_bytes(HW, contrast=0.3, blur=5), (0.0, 1.0)),
                          roi=(0, 0, HW[1], HW[0]))
    good_max = max(probe.score(im) for im, y in zip(golden.images, golden.labels) if y == 0)
    # Rejects what scores above every clean good part: no false reject on the golden set.
    candidate = stage(root, "1.0.1", threshold_model_bytes(HW, contrast=0.3, blur=5), (pass_below, good_max * 1.01))
    rule = GateRule()
    alone = gate(candidate, current, golden, rule)
    assert alone.promoted and alone.candidate.false_reject_rate == 0.0, alone.report()  # the golden set promotes it
    good_under_lights = ImageSet.from_synthetic(300, HW, seed=31, defect_rate=0.0, artefact_rate=1.0)
    defects = ImageSet([s for s in parts.samples if s.label == 1], HW)
    line = GoldenSet.load_or_freeze(tmp_path / "data" / "line", (good_under_lights + defects).dedup(),
                                    size=len(good_under_lights) + len(defects))
    refused = gate(candidate, current, golden, rule, log_dir=tmp_path / "data", line=line)
    assert not refused.promoted
    assert "false reject" in refused.reason
    assert "line's own parts" in refused.reason
    paired = refused.line
    assert paired["candidate"]["false_reject_rate"] > paired["current"]["false_reject_rate"] == 0.0
    d = paired["delta"]["false_reject_rate"]
    assert d["low"] <= d["value"] <= d["high"] and d["high"] > 0
    assert "paired interval" in refused.report() and read_log(tmp_path / "data")[-1]["line"]["images"] == len(line)
    # The other way round the same line set favours the model that rejects nothing there.
    back = gate(current, candidate, golden, rule, line=line)
    assert back.line["delta"]["false_reject_rate"]["value"] < 0 and "line's own parts" not in back.reason
