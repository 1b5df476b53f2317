"""Bad input is refused with a clear error naming it, and nothing else is harmed.

Covers what the part tests do not already: at the station ingest a non-JPEG image,
an oversized envelope and a replayed review id with different content; at the edge
a malformed or unknown review-ack; at the web station a verdict for an unknown item;
out-of-range station config values; and, on a running edge, a truncated model file,
a model whose input shape disagrees with its manifest, a model that outputs NaN and
a bad signature. (Truncated JPEGs, bad JSON, headers that disagree with their topic,
wrong sha256, unsigned or tampered manifests, older versions and out-of-range edge
config values are in test_wire, test_station_ingest, test_edge_hot_swap and
test_edge_service.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import struct
from pathlib import Path

import pytest
from station_support import OPERATOR, login, make_header, make_jpeg, make_station, page_csrf

from edge.config import MqttSection
from edge.link import EdgeLink, ReviewSender
from edge.outbox import Outbox
from models.manifest import load_manifest, write_manifest
from models.onnx_build import constant_model_bytes
from models.signing import sign
from qcloop import codec, wire
from qcloop.errors import ConfigError
from station_ui.config import config_for
from station_ui.config import load_config as load_station_config
from station_ui.ingest import Ingest
from station_ui.store import Store
from tests.models_support import build_version, tiny_model
from tests.test_edge_hot_swap import announce, model_server, running_edge  # noqa: F401 (fixture)
from tests.test_station_ingest import Edge
from tests.waiting import wait_until


# ------------------------------------------------------------------ station ingest
@pytest.fixture
def ingest(tmp_path, broker):
    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-bad",
                                            "max_review_bytes": 64 * 1024})
    Store(cfg.db_path).close()
    ing = Ingest(cfg).start()
    assert ing.connected.is_set()
    yield cfg, ing
    ing.stop()


def _envelope_with_image(header: wire.ReviewHeader, image: bytes) -> bytes:
    head = codec.dumps(header.to_json())
    return struct.pack(">I", len(head)) + head + image


@pytest.mark.parametrize("kind, message", [
    ("png-image", "not a JPEG (no SOI marker)"),
    ("oversized", "over the limit of 65536"),
])
def test_station_refuses_a_bad_envelope_and_stores_the_next_good_one(ingest, broker, caplog, kind, message):
    cfg, ing = ingest
    caplog.set_level(logging.WARNING, logger="station_ui.ingest")
    edge = Edge(broker)
    bad = make_header()
    if kind == "png-image":
        payload = _envelope_with_image(bad, b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    else:
        payload = _envelope_with_image(bad, make_jpeg(1)[:-2] + b"\0" * (70 * 1024) + b"\xff\xd9")
    good = make_header()
    try:
        edge.send(payload)
        edge.send(wire.encode_review(good, make_jpeg(2)))
        assert edge.wait_acks(1) and edge.acks == [good.id]  # the bad one is never acked
        assert ing.wait_idle(10)
    finally:
        edge.close()
    assert ing.stats()["rejected"] == 1 and ing.stats()["stored"] == 1
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    store = Store(cfg.db_path, migrate=False)
    assert store.has_review(good.id) and not store.has_review(bad.id)
    assert not list(cfg.image_dir.rglob(f"{bad.id}*"))


def test_a_replayed_review_id_with_other_content_keeps_the_first(ingest, broker):
    cfg, ing = ingest
    edge = Edge(broker)
    first = make_header(part_id="P-first", score=0.4)
    replay = dataclasses.replace(first, part_id="P-forged", score=0.9)
    jpeg = make_jpeg(3)
    try:
        edge.send(wire.encode_review(first, jpeg))
        assert edge.wait_acks(1)
        edge.send(wire.encode_review(replay, make_jpeg(4)))
        assert edge.wait_acks(2) and edge.acks == [first.id, first.id]  # acked, so the sender stops resending
    finally:
        edge.close()
    assert ing.stats()["duplicates"] == 1
    row = Store(cfg.db_path, migrate=False).get_review(first.id)
    assert row["part_id"] == "P-first" and row["score"] == 0.4
    assert Path(row["image_path"]).read_bytes() == jpeg  # the stored image was not overwritten


# -------------------------------------------------------------------- edge link
def test_edge_ignores_a_malformed_or_unknown_review_ack_and_keeps_its_outbox(tmp_path, broker, caplog):
    caplog.set_level(logging.WARNING, logger="edge.link")
    outbox = Outbox(tmp_path / "outbox")
    kept = make_header(line="L1", camera="c1")
    outbox.put(kept, make_jpeg(5))
    link = EdgeLink(MqttSection(host=broker.host, port=broker.port), "L1", "c1", client_id="bad-ack-edge")
    sender = ReviewSender(outbox, link, resend_after_s=60, max_in_flight=4)
    link.start()
    try:
        assert link.connected.wait(10)
        ack_topic = wire.Topics().review_ack("L1")
        import paho.mqtt.client as mqtt

        station = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad-ack-station")
        station.connect(broker.host, broker.port)
        station.loop_start()
        unknown = wire.ReviewAck(wire.new_review_id()).encode()

        def probe() -> bool:  # until the edge's subscription is in place at the broker
            station.publish(ack_topic, unknown, qos=1).wait_for_publish(10)
            return wait_until(lambda: link.acks_received >= 1, timeout=0.5)

        assert wait_until(probe, timeout=20)
        for payload in (b"{not json", b'{"id": 7}', unknown):
            station.publish(ack_topic, payload, qos=1).wait_for_publish(10)
        assert wait_until(lambda: link.bad_messages == 2 and link.acks_received >= 2)
        station.loop_stop()
        station.disconnect()
    finally:
        link.stop()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "review-ack is not valid JSON" in messages and "review-ack: field 'id' must be a string" in messages
    assert outbox.ids() == {kept.id} and outbox.bytes == len(make_jpeg(5))
    assert sender.errors == 0


# ---------------------------------------------------------------- station web
def test_verdict_for_an_unknown_item_is_404_naming_it(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    c = app.test_client()
    login(c, *OPERATOR[::2])
    token = page_csrf(c)
    r = c.post("/review/verdict", json={"review_id": "no-such-item", "verdict": "real_fault", "kind": "pit"},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 404 and "'no-such-item'" in r.get_json()["error"]
    assert store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 0
    assert len(store.audit_entries(action="verdict")) == 0


@pytest.mark.parametrize("text, key", [
    ("[web]\nthreads = 1\n", "[web].threads: must be >= 2, got 1"),
    ("[mqtt]\nqueue_size = 0\n", "[mqtt].queue_size: must be >= 1, got 0"),
    ("[mqtt]\nmax_review_bytes = 99999999999\n", "[mqtt].max_review_bytes: must be <="),
    ("[web]\nundo_window_s = -1.0\n", "[web].undo_window_s: must be >= 0.0"),
    ("[station]\nname = ''\n", "[station].name: must be 1..64 characters"),
    ("critical_lines = 'line1'\n", "critical_lines: must be a list"),
])
def test_out_of_range_station_config_names_the_file_and_the_key(tmp_path, text, key):
    path = tmp_path / "station.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_station_config(path)
    assert str(path) in str(err.value) and key in str(err.value)


# --------------------------------------------------------------- running edge
def _publish(model_server, version, model_bytes, input_hw=(64, 64), signature=None):  # noqa: F811
    d = build_version(model_server["root"], version, model_bytes=model_bytes, input_hw=input_hw)
    m = sign(load_manifest(d / "manifest.json"), model_server["key"])
    if signature is not None:
        m = dataclasses.replace(m, signature=signature)
    write_manifest(d / "manifest.json", m)
    raw = (d / "manifest.json").read_bytes()
    return wire.ModelAnnouncement(version, f"{model_server['url']}/{version}/manifest.json",
                                  hashlib.sha256(raw).hexdigest(), m.signature)


@pytest.mark.parametrize("kind, why", [
    ("truncated-file", "model.onnx: onnxruntime cannot load the model"),
    ("wrong-input-shape", "manifest says [1, 1, 32, 32], model has [1, 1, 64, 64]"),
    ("nan-output", "score nan is not a finite value"),
    ("bad-signature", "signature does not match the manifest"),
])
def test_running_edge_refuses_a_bad_model_and_keeps_inspecting_with_its_own(tmp_path, broker, model_server,  # noqa: F811
                                                                           kind, why):
    service, actuator, decisions = running_edge(tmp_path, broker, model_server)
    try:
        if kind == "truncated-file":
            data = tiny_model((64, 64), 1)
            ann = _publish(model_server, "2.0.0", data[: len(data) // 2])
        elif kind == "wrong-input-shape":
            ann = _publish(model_server, "2.0.0", tiny_model((64, 64), 1), input_hw=(32, 32))
        elif kind == "nan-output":
            ann = _publish(model_server, "2.0.0", constant_model_bytes(float("nan")))
        else:
            ann = _publish(model_server, "2.0.0", constant_model_bytes(0.9), signature="AAAA" + "B" * 84)
        announce(broker, ann)
        assert wait_until(lambda: service.watcher.refused)
        n = len(decisions)
        assert wait_until(lambda: len(decisions) > n + 10)
    finally:
        service.stop()
    assert why in service.watcher.refused[0], service.watcher.refused
    assert "model-refused" in service.metrics.alarms.active()
    assert {d.model for d in decisions} == {"1.0.0"} and not any(d.fail_safe for d in decisions)
    assert service.registry.current_version() == "1.0.0"
    ids = [c[0] for c in actuator.calls]
    assert len(ids) == len(set(ids)) == service.pipeline.triggered
