"""A running edge takes a new signed model between two parts, refuses bad ones, and rolls back."""
import dataclasses
import functools
import hashlib
import http.server
import threading
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from models.errors import SignatureError
from models.manifest import load_manifest, write_manifest
from models.onnx_build import constant_model_bytes
from models.registry import Registry
from models.signing import generate_keypair, load_private_key, sign
from qcloop import wire
from tests.models_support import build_version
from tests.test_edge_service import write_config
from tests.waiting import wait_until


@pytest.fixture
def model_server(tmp_path):
    """The trainer's side: a signing key, a registry, and an HTTP server over it."""
    generate_keypair(tmp_path / "trainer.key", tmp_path / "trainer.pub")
    root = tmp_path / "published"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "key": load_private_key(tmp_path / "trainer.key"), "pub": tmp_path / "trainer.pub",
           "url": f"http://127.0.0.1:{server.server_address[1]}"}
    server.shutdown()


def publish(model_server, version, score, tamper=False, signed=True):
    d = build_version(model_server["root"], version, model_bytes=constant_model_bytes(score), thresholds=(0.3, 0.7))
    m = load_manifest(d / "manifest.json")
    if signed:
        m = sign(m, model_server["key"])
    if tamper:
        m = dataclasses.replace(m, thresholds=dataclasses.replace(m.thresholds, reject_above=0.99))
    write_manifest(d / "manifest.json", m)
    raw = (d / "manifest.json").read_bytes()
    return wire.ModelAnnouncement(version, f"{model_server['url']}/{version}/manifest.json",
                                  hashlib.sha256(raw).hexdigest(), m.signature)


def announce(broker, ann):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trainer")
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(wire.Topics().model("L1"), ann.encode(), qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def sign_in_place(version_dir, key):
    """As the trainer's release does: the manifest on disk carries the trainer's signature (key or key file)."""
    if not hasattr(key, "sign"):
        key = load_private_key(key)
    write_manifest(version_dir / "manifest.json", sign(load_manifest(version_dir / "manifest.json"), key))


def running_edge(tmp_path, broker, model_server, rate_hz=100.0):
    cfg = load_config(write_config(tmp_path, broker))
    sign_in_place(cfg.registry_dir / "1.0.0", model_server["key"])  # an edge that verifies runs signed models only
    cfg = replace(cfg, trigger=replace(cfg.trigger, rate_hz=rate_hz),
                  model=replace(cfg.model, public_key=model_server["pub"], follow_registry_s=0.1),
                  decision=replace(cfg.decision, deadline_ms=1000))
    actuator = SimulatedActuator()
    service = EdgeService(cfg, actuator=actuator)
    decisions = []
    service.pipeline.listeners.append(decisions.append)
    service.start()
    assert service.link.connected.wait(10)
    return service, actuator, decisions


def test_new_signed_model_goes_live_under_a_running_line_with_no_part_missed(tmp_path, broker, model_server):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        assert wait_until(lambda: len(decisions) > 30)
        announce(broker, publish(model_server, "2.0.0", score=0.95))
        assert wait_until(lambda: any(d.model == "2.0.0" for d in decisions))
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 30)
    finally:
        service.stop()
    models = [d.model for d in decisions]
    k = models.index("2.0.0")
    assert set(models[:k]) == {"1.0.0"} and set(models[k:]) == {"2.0.0"}  # one clean switch between parts
    assert all(d.action == "REJECT" and not d.fail_safe for d in decisions[k:])
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == len(set(ids)) == service.pipeline.triggered  # no part missed, none decided twice
    assert not any(d.fail_safe for d in decisions)
    swap = service.watcher.swaps[0]
    assert swap["version"] == "2.0.0" and "first_part_ms" in swap
    assert Registry(service.registry.root).current_version() == "2.0.0"


@pytest.mark.parametrize("kind, why", [
    ("tampered", "does not match"),
    ("unsigned", "unsigned"),
    ("older", "older than the running"),
    ("bad-hash", "sha256"),
])
def test_bad_models_are_refused_and_the_running_one_is_kept(tmp_path, broker, model_server, kind, why):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        if kind == "tampered":
            ann = publish(model_server, "2.0.0", 0.95, tamper=True)
        elif kind == "unsigned":
            ann = publish(model_server, "2.0.0", 0.95, signed=False)
        elif kind == "older":
            ann = publish(model_server, "0.9.0", 0.95)
        else:
            ann = dataclasses.replace(publish(model_server, "2.0.0", 0.95), sha256="0" * 64)
        announce(broker, ann)
        assert wait_until(lambda: service.watcher.refused)
        assert why in service.watcher.refused[0]
        assert "model-refused" in service.metrics.alarms.active()
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 10)
    finally:
        service.stop()
    assert {d.model for d in decisions} == {"1.0.0"}
    assert service.registry.current_version() == "1.0.0"


def test_rollback_returns_a_running_edge_to_the_previous_model(tmp_path, broker, model_server):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        announce(broker, publish(model_server, "2.0.0", score=0.95))
        assert wait_until(lambda: any(d.model == "2.0.0" for d in decisions))
        Registry(service.registry.root).rollback(reason="test")  # as `qc edge rollback` does
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n and decisions[-1].model == "1.0.0")
    finally:
        service.stop()
    assert service.registry.current_version() == "1.0.0"
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == len(set(ids)) == service.pipeline.triggered


def test_a_shadow_candidate_is_scored_beside_the_live_model_without_touching_actuation(tmp_path, broker, model_server):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    # The live model passes every part with confidence; the shadow candidate (score 0.95) would reject.
    service.pipeline.cfg = replace(service.pipeline.cfg, shadow_review_rate=1.0, pass_below=0.9999, reject_above=1.0)
    first = len(decisions) + 2  # parts already in flight may have been decided under the old thresholds
    reviews = []
    service.pipeline.review_listeners.append(reviews.append)
    try:
        ann = dataclasses.replace(publish(model_server, "2.0.0", score=0.95), mode="shadow")
        announce(broker, ann)
        assert wait_until(lambda: service.pipeline.shadow is not None)
        assert wait_until(lambda: service.pipeline.shadow_disagreements >= 20)
        shadow = service.status().shadow  # what the station's dashboard shows beside the live model
        assert shadow is not None
        assert shadow.version == "2.0.0"
        assert shadow.parts >= 20
        assert shadow.agree == shadow.parts - service.pipeline.shadow_disagreements
    finally:
        service.stop()
    assert {d.model for d in decisions} == {"1.0.0"}  # the live model decided every part
    assert {d.action for d in decisions[first:]} == {"PASS"}  # and the shadow changed no action
    assert service.registry.current_version() == "1.0.0"  # CURRENT did not move
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == len(set(ids)) == service.pipeline.triggered
    shadow_reviews = [h for h in reviews if "shadow 2.0.0 would REJECT" in h.detail]
    assert shadow_reviews and all(h.reason == "audit" for h in shadow_reviews)  # reviewers stay blind
    body = service.metrics.exposition().decode()
    assert 'qc_shadow_parts_total{agreement="disagree",version="2.0.0"}' in body


def _tamper(version_dir):
    """What a careless or hostile hand does on the edge box: thresholds edited in the manifest on disk."""
    m = load_manifest(version_dir / "manifest.json")
    write_manifest(version_dir / "manifest.json",
                   dataclasses.replace(m, thresholds=dataclasses.replace(m.thresholds, pass_below=0.999, reject_above=1.0)))


def test_a_manifest_edited_on_disk_is_refused_at_start(tmp_path, broker, model_server):
    cfg = load_config(write_config(tmp_path, broker))
    cfg = replace(cfg, model=replace(cfg.model, public_key=model_server["pub"]))
    sign_in_place(cfg.registry_dir / "1.0.0", model_server["key"])
    service = EdgeService(cfg, actuator=SimulatedActuator())  # signed: it loads
    service.start()
    service.stop()
    _tamper(cfg.registry_dir / "1.0.0")
    with pytest.raises(SignatureError, match="1.0.0: signature does not match"):
        EdgeService(cfg, actuator=SimulatedActuator())


def test_a_flip_or_rollback_on_disk_to_an_edited_model_is_refused_and_the_running_one_kept(
        tmp_path, broker, model_server):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        announce(broker, publish(model_server, "2.0.0", score=0.95))
        assert wait_until(lambda: any(d.model == "2.0.0" for d in decisions))
        _tamper(service.registry.version_dir("1.0.0"))
        Registry(service.registry.root).rollback(reason="test")  # as `qc edge rollback` does
        assert wait_until(lambda: any("1.0.0: signature does not match" in r for r in service.watcher.refused))
        assert "model-refused" in service.metrics.alarms.active()
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 10)
    finally:
        service.stop()
    assert {d.model for d in decisions[n:]} == {"2.0.0"}  # the edited model never ran


def test_the_built_in_model_is_accepted_unsigned_by_its_pinned_hash_only(tmp_path, model_server):
    from edge.trust import ModelTrust
    from models import builtin

    trust = ModelTrust(model_server["pub"])
    shipped = load_manifest(builtin.DEFAULT_DIR / "manifest.json")
    trust.check_stored(shipped)  # unsigned, but exactly the built-in one
    assert hashlib.sha256(shipped.canonical_bytes()).hexdigest() == builtin.PINNED_SHA256  # the pin is current
    edited = dataclasses.replace(shipped, thresholds=dataclasses.replace(shipped.thresholds, reject_above=1.0))
    with pytest.raises(SignatureError, match="unsigned"):
        trust.check_stored(edited)


def test_a_rollback_sticks_across_a_restart_until_a_newer_model_or_an_engineer_lifts_it(
        tmp_path, broker, model_server):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        announce(broker, publish(model_server, "2.0.0", score=0.95))  # retained: every restart gets it again
        assert wait_until(lambda: any(d.model == "2.0.0" for d in decisions))
        Registry(service.registry.root).rollback(reason="test")  # as `qc edge rollback` does
        assert wait_until(lambda: decisions[-1].model == "1.0.0")
    finally:
        service.stop()
    cfg = service.cfg
    again = EdgeService(cfg, actuator=SimulatedActuator())
    seen = []
    again.pipeline.listeners.append(seen.append)
    again.start()
    try:
        assert wait_until(lambda: "2.0.0" in again.watcher.kept_rolled_back)  # the retained one arrived, refused
        n = len(seen)
        assert wait_until(lambda: len(seen) > n + 10)
        assert {d.model for d in seen} == {"1.0.0"}
        assert "model-refused" not in again.metrics.alarms.active()  # an engineer's decision, not a fault
        announce(broker, publish(model_server, "3.0.0", score=0.95))  # a newer model is taken as usual
        assert wait_until(lambda: seen[-1].model == "3.0.0")
    finally:
        again.stop()
    assert Registry(cfg.registry_dir).current_version() == "3.0.0"


def test_allow_model_lifts_a_rollback(tmp_path, capsys):
    from qc.cli import main

    build_version(tmp_path / "models", "1.0.0", set_current=True)
    build_version(tmp_path / "models", "2.0.0", set_current=True)
    (tmp_path / "edge.toml").write_text('[edge]\nline = "L1"\ncamera = "c1"\n[model]\nregistry = "models"\n')
    assert main(["edge", "rollback", "--config", str(tmp_path / "edge.toml")]) == 0
    assert "2.0.0 stays refused" in capsys.readouterr().out
    assert Registry(tmp_path / "models").rolled_back() == {"2.0.0"}
    assert main(["edge", "allow-model", "2.0.0", "--config", str(tmp_path / "edge.toml")]) == 0
    assert Registry(tmp_path / "models").rolled_back() == set()
    assert main(["edge", "allow-model", "2.0.0", "--config", str(tmp_path / "edge.toml")]) == 1
