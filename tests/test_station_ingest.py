"""Ingest against a real mosquitto: store, atomic image, ack after store, duplicates, garbage."""
from __future__ import annotations

import dataclasses
import json
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from station_support import make_header, make_jpeg
from waiting import wait_until

from qcloop import wire
from station_ui.config import config_for
from station_ui.ingest import Ingest
from station_ui.store import Store


class Edge:
    """A minimal edge side: publishes envelopes and collects review-acks."""

    def __init__(self, broker):
        self.acks: list[str] = []
        self.cond = threading.Condition()
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-edge")
        c.on_connect = lambda cl, u, f, rc, p: (cl.subscribe(wire.Topics().review_ack("line1"), qos=1),)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert self.ready.wait(10)
        self.client = c

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.acks.append(wire.ReviewAck.decode(msg.payload).id)
            self.cond.notify_all()

    def wait_acks(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.acks) >= n, 10)

    def send(self, payload: bytes, topic: str | None = None) -> None:
        self.client.publish(topic or wire.Topics().review("line1", "cam1"), payload, qos=1).wait_for_publish(10)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station(tmp_path, broker):
    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-test"})
    Store(cfg.db_path).close()
    ing = Ingest(cfg).start()
    assert ing.connected.is_set()
    yield cfg, ing
    ing.stop()


def test_review_is_stored_then_acked_and_duplicate_acked_again(station, broker):
    cfg, ing = station
    edge = Edge(broker)
    jpeg = make_jpeg(3)
    h = make_header(line="line1", camera="cam1")
    payload = wire.encode_review(h, jpeg)
    edge.send(payload)
    assert edge.wait_acks(1) and edge.acks == [h.id]
    store = Store(cfg.db_path, migrate=False)
    row = store.get_review(h.id)
    assert row["part_id"] == h.part_id and row["state"] == "pending"
    from pathlib import Path
    assert Path(row["image_path"]).read_bytes() == jpeg  # the image is on disk before the ack went out

    edge.send(payload)  # redelivery: stored once, acked again
    assert edge.wait_acks(2) and edge.acks == [h.id, h.id]
    assert store.conn.execute("SELECT count(*) FROM reviews").fetchone()[0] == 1
    assert ing.stats()["duplicates"] == 1 and ing.stats()["stored"] == 1
    edge.close()


def test_garbage_is_counted_and_ingest_keeps_working(station, broker):
    cfg, ing = station
    edge = Edge(broker)
    good = make_header()
    jpeg = make_jpeg(4)
    truncated = wire.encode_review(make_header(), jpeg)[:-50]
    edge.send(b"\x00\x00")
    edge.send(b"\xff\xff\xff\xffnot json at all")
    edge.send(truncated)
    edge.send(wire.encode_review(make_header(camera="cam9"), jpeg))  # header disagrees with the topic
    edge.send(wire.encode_review(good, jpeg))
    assert edge.wait_acks(1) and edge.acks == [good.id]
    assert ing.wait_idle(10)
    assert ing.stats()["rejected"] == 4 and ing.stats()["stored"] == 1
    assert Store(cfg.db_path, migrate=False).has_review(good.id)
    edge.close()


def test_reviews_sent_while_station_is_down_arrive_after_restart(tmp_path, broker):
    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-persist"})
    Store(cfg.db_path).close()
    Ingest(cfg).start().stop()  # the broker now holds a persistent session for this client id
    edge = Edge(broker)
    h = make_header()
    edge.send(wire.encode_review(h, make_jpeg(5)))  # nobody is listening right now
    ing = Ingest(cfg).start()
    try:
        assert edge.wait_acks(1) and edge.acks == [h.id]
        assert Store(cfg.db_path, migrate=False).has_review(h.id)
    finally:
        ing.stop()
        edge.close()


def test_the_trainers_retained_status_reaches_the_store_and_garbage_there_is_ignored(station, broker):
    cfg, ing = station
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-trainer")
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = wire.Topics().train_status()
    try:
        client.publish(topic, b"not json", qos=1, retain=True).wait_for_publish(10)
        client.publish(topic, wire.TrainStatus("gating", current="0.1.0").encode(), qos=1,
                       retain=True).wait_for_publish(10)
        store = Store(cfg.db_path, migrate=False)
        assert wait_until(lambda: ing.counts["trainer_status"] == 1, 10)
        rows = store.conn.execute("SELECT topic, payload FROM trainer_status").fetchall()
        assert [(r["topic"], json.loads(r["payload"])["state"]) for r in rows] == [(topic, "gating")]
        assert ing.counts["received"] == 0  # a status is not a review
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_malformed_edge_status_is_dropped_and_counted_and_the_dashboard_still_answers(station, broker):
    from station_ui import accounts
    from station_ui.app import create_app
    from tests.station_support import ENGINEER, login

    cfg, ing = station
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-edge-status")
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = wire.Topics().status("L1", "cam1")
    def sent_until(payload: bytes, arrived) -> bool:  # the ingest's subscription may still be on its way
        return wait_until(lambda: client.publish(topic, payload, qos=1).wait_for_publish(10) or arrived(), 10)

    try:
        assert sent_until(b'{"state":"running","parts":"lots"}', lambda: ing.counts["bad_status"] >= 1)
        assert ing.counts["status"] == 0  # dropped, never stored
        good = wire.EdgeStatus("running", line="L1", camera="cam1", model="1.0.0", parts=3, actions={"PASS": 3})
        assert sent_until(good.encode(), lambda: ing.counts["status"] >= 1)
    finally:
        client.disconnect()
        client.loop_stop()
    store = Store(cfg.db_path, migrate=False)
    (row,) = store.conn.execute("SELECT payload FROM edge_status").fetchall()
    assert wire.EdgeStatus.decode(row["payload"]) == good
    accounts.add_user(store, *ENGINEER)
    c = create_app(cfg).test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    assert c.get("/dashboard").status_code == 200


def test_one_review_id_written_five_ways_is_stored_once(station, broker):
    cfg, ing = station
    edge = Edge(broker)
    rid = uuid.uuid4()
    jpeg = make_jpeg(6)
    variants = [str(rid), str(rid).upper(), "{" + str(rid) + "}", rid.urn, rid.hex]
    for variant in variants:
        edge.send(wire.encode_review(dataclasses.replace(make_header(line="line1", camera="cam1"), id=variant), jpeg))
    assert edge.wait_acks(5)
    assert edge.acks == [str(rid)] * 5  # every copy acknowledged, under the one canonical id
    store = Store(cfg.db_path, migrate=False)
    assert store.conn.execute("SELECT count(*) FROM reviews").fetchone()[0] == 1
    assert ing.stats()["duplicates"] == 4
    edge.close()


def test_verdicts_ruled_while_the_broker_is_down_are_sent_after_a_station_restart(tmp_path, broker_factory):
    from qc.broker import free_port

    port = free_port("127.0.0.1")  # nothing listens here yet: the broker is down
    cfg = config_for(tmp_path / "st", mqtt={"host": "127.0.0.1", "port": port, "client_id": "st-verdicts"})
    store = Store(cfg.db_path, station="st1")
    h = make_header(line="line1", camera="cam1")
    store.insert_reviews([(h, str(tmp_path / "img.jpg"), 10)])
    ing = Ingest(cfg).start(wait_s=0)
    out = store.record_verdict(h.id, "real_fault", "pit", "olga")
    ing.publish_verdict(out.message)
    ing.stop()  # the station restarts before the broker is back: nothing may be lost with its memory

    b = broker_factory(port=port)
    got: list[wire.Verdict] = []
    arrived = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trainer-like")
    sub.on_message = lambda c, u, msg: (got.append(wire.Verdict.decode(msg.payload)), arrived.set())
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(wire.Topics().verdict("line1"), qos=1)
    sub.connect(b.host, b.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        again = Ingest(cfg).start()
        try:
            assert arrived.wait(10), "the queued verdict never reached the broker"
            assert wait_until(lambda: store.unsent_verdicts() == [], 10)  # the PUBACK took it off the outbox
        finally:
            again.stop()
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [out.message]
