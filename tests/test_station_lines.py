"""Several review stations on one plant broker, each serving only its own lines.

Real Mosquitto (open, and the production config with TLS, passwords and a rendered ACL),
real Ingest and Store on SQLite files, real review envelopes from qcloop.wire. Refusals by
the broker are proven with the sentinel technique of tests/test_broker_access.py: the
offender publishes the forbidden message and then an allowed one, both QoS 1, to an
observer subscribed to both; once the allowed one has arrived, the other would have too.
"""
from __future__ import annotations

import argparse
import threading

import paho.mqtt.client as mqtt
import pytest
from broker_tls_support import SHIPPED_ACL, Client, ProductionBroker, make_pki
from station_support import make_header, make_jpeg
from waiting import wait_until

from qc import brokeradmin
from qcloop import wire
from qcloop.errors import ConfigError
from station_ui.config import StationSection, config_for, load_config
from station_ui.ingest import Ingest
from station_ui.store import Store

T = wire.Topics()
ROOT = SHIPPED_ACL.parent.parent.parent


class Watcher:
    """A plain MQTT client that records every message on the topics it subscribed to before returning."""

    def __init__(self, broker, client_id: str, *topics: str):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        c.on_connect = lambda cl, u, f, rc, p: (cl.subscribe([(t, 1) for t in topics]) if topics
                                                else subscribed.set())
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert subscribed.wait(10), "the watcher could not subscribe"
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_station(tmp_path, broker, name: str, lines: list[str], client_id: str | None = None) -> Ingest:
    cfg = config_for(tmp_path / name, station={"name": name, "lines": lines},
                     mqtt={"host": broker.host, "port": broker.port, "client_id": client_id or f"qc-{name}"})
    Store(cfg.db_path).close()
    ingest = Ingest(cfg).start()
    assert ingest.connected.is_set(), f"{name} did not connect"
    return ingest


def stored_ids(ingest: Ingest) -> set[str]:
    store = Store(ingest.cfg.db_path, migrate=False)
    try:
        return {r[0] for r in store.conn.execute("SELECT id FROM reviews").fetchall()}
    finally:
        store.close()


# ------------------------------------------------------------------ two stations, one broker
def test_two_stations_each_store_and_acknowledge_only_their_own_line(tmp_path, broker):
    a = start_station(tmp_path, broker, "station-a", ["line1"])
    b = start_station(tmp_path, broker, "station-b", ["line2"])
    acks = Watcher(broker, "ack-watcher", T.review_ack("line1"), T.review_ack("line2"))
    edges = Watcher(broker, "edges")
    try:
        jpeg = make_jpeg(7)
        line1 = [make_header("line1", "cam1") for _ in range(3)] + [make_header("line1", "cam2")]
        line2 = [make_header("line2", "cam1") for _ in range(3)]
        forged = make_header("line2", "cam1")  # names line2 but comes on line1's topic
        for h in line1[:2] + line2[:2]:
            edges.publish(T.review(h.line, h.camera), wire.encode_review(h, jpeg))
        edges.publish(T.review("line1", "cam1"), wire.encode_review(forged, jpeg))
        # Published last by the same client: their acks come after everything before them was handled.
        for h in line1[2:] + line2[2:]:
            edges.publish(T.review(h.line, h.camera), wire.encode_review(h, jpeg))

        def acked(line: str) -> list[wire.ReviewAck]:
            return [wire.ReviewAck.decode(p) for p in acks.on(T.review_ack(line))]

        assert wait_until(lambda: len(acked("line1")) >= len(line1) and len(acked("line2")) >= len(line2), 15)
        assert a.wait_idle(10) and b.wait_idle(10)
        # Exactly one ack per review, from the station serving that line.
        assert sorted(k.id for k in acked("line1")) == sorted(h.id for h in line1)
        assert sorted(k.id for k in acked("line2")) == sorted(h.id for h in line2)
        assert {k.station for k in acked("line1")} == {"station-a"}
        assert {k.station for k in acked("line2")} == {"station-b"}
        assert stored_ids(a) == {h.id for h in line1}
        assert stored_ids(b) == {h.id for h in line2}
        # The forged review: dropped and counted at station-a, never stored or acknowledged anywhere.
        assert a.counts["other_line"] == 1 and a.stats()["rejected"] == 0
        assert forged.id not in {k.id for k in acked("line1") + acked("line2")}
        # station-b never even received line1's traffic: its subscription names line2 only.
        assert b.counts["received"] == len(line2) and b.counts["other_line"] == 0
        assert a.counts["received"] == len(line1) + 1
    finally:
        edges.close()
        acks.close()
        a.stop()
        b.stop()


def test_a_station_restricted_to_a_line_drops_the_all_lines_filters_of_its_old_session(tmp_path, broker):
    """The session is persistent: the every-line subscription of an earlier config must not live on."""
    cfg = config_for(tmp_path / "st", station={"name": "st"},
                     mqtt={"host": broker.host, "port": broker.port, "client_id": "qc-st-persist"})
    Store(cfg.db_path).close()
    Ingest(cfg).start().stop()  # every line, the broker keeps the session and its filters
    ingest = start_station(tmp_path, broker, "st", ["line1"], client_id="qc-st-persist")
    acks = Watcher(broker, "ack-watcher", T.review_ack("line1"), T.review_ack("line2"))
    edges = Watcher(broker, "edges")
    try:
        other, own = make_header("line2", "cam1"), make_header("line1", "cam1")
        edges.publish(T.review("line2", "cam1"), wire.encode_review(other, make_jpeg(1)))
        edges.publish(T.review("line1", "cam1"), wire.encode_review(own, make_jpeg(2)))
        assert wait_until(lambda: acks.on(T.review_ack("line1")), 10)
        assert ingest.wait_idle(10)
        assert ingest.counts["received"] == 1 and ingest.counts["other_line"] == 0
        assert acks.on(T.review_ack("line2")) == [] and stored_ids(ingest) == {own.id}
    finally:
        edges.close()
        acks.close()
        ingest.stop()


def test_line_settings_are_sent_only_for_the_stations_own_lines(tmp_path, broker):
    cfg = config_for(tmp_path / "st", station={"name": "st", "lines": ["line2"]},
                     mqtt={"host": broker.host, "port": broker.port, "client_id": "qc-st-settings"})
    store = Store(cfg.db_path, station="st")
    for line in ("line1", "line2"):  # sent in name order: line1's would go out before line2's
        store.set_line_mode(line, "on-the-loop", 60.0, "REJECT", "erik")
    store.close()
    seen = Watcher(broker, "settings-watcher", T.settings("line1"), T.settings("line2"))
    ingest = Ingest(cfg).start()
    try:
        assert wait_until(lambda: seen.on(T.settings("line2")), 10), "the station's own line got no settings"
        assert wire.LineSettings.decode(seen.on(T.settings("line2"))[0]).mode == "on-the-loop"
        # Whoever asks (the review capacity control, a settings page): another station's line gets nothing
        # from here. The line2 message after it is the sentinel: once it is seen, line1's would have been.
        ingest.publish_line_settings(wire.LineSettings("line1", mode="out-of-the-loop", band_scale=0.5))
        ingest.publish_line_settings(wire.LineSettings("line2", mode="out-of-the-loop"))
        assert wait_until(lambda: len(seen.on(T.settings("line2"))) == 2, 10)
        assert seen.on(T.settings("line1")) == []
    finally:
        ingest.stop()
        seen.close()


def test_a_station_keeps_the_trainer_status_of_its_own_lines_product_only(tmp_path, broker):
    """A plant's trainer reports per product (P/train/status/<product>); a station shows the one of its lines."""
    from station_ui import reports

    ingest = start_station(tmp_path, broker, "st-l1", ["line1"])
    seen = Watcher(broker, "trainer-watcher")
    try:
        for product, lines, runs in (("impeller", ["line1"], 3), ("housing", ["line2", "line3"], 7)):
            status = wire.TrainStatus("idle", runs=runs, current="1.2.0", product=product, lines=tuple(lines))
            seen.publish(T.train_status(product), status.encode())
        seen.publish(T.train_status("sentinel"), wire.TrainStatus("idle", lines=("line1",), product="sentinel").encode())
        assert wait_until(lambda: ingest.counts["trainer_status"] == 2, 10), ingest.counts
        assert ingest.counts["other_line_status"] == 1  # the housing product's lines are not this station's
        store = Store(ingest.cfg.db_path, migrate=False)
        try:
            topics = {r[0] for r in store.conn.execute("SELECT topic FROM trainer_status").fetchall()}
            shown = reports.trainer(store)
        finally:
            store.close()
    finally:
        ingest.stop()
        seen.close()
    assert topics == {T.train_status("impeller"), T.train_status("sentinel")}
    assert shown is not None and shown["product"] in ("impeller", "sentinel") and shown["lines"] == ["line1"]


# ------------------------------------------------------------------ config
def test_station_lines_default_to_every_line():
    section = StationSection()
    assert section.lines == () and section.serves("line1") and section.serves("anything")
    assert load_config(ROOT / "station_ui" / "station.example.toml").station.lines == ()
    served = StationSection(lines=("line1", "line2"))
    assert served.serves("line2") and not served.serves("line3")


@pytest.mark.parametrize("lines, message", [
    (["line1", "line1"], "'line1' is listed twice"),
    (["line/1"], "one topic level"),
    (["line+"], "one topic level"),
    ([""], "one topic level"),
    ([" line1"], "one topic level"),
    (["model"], "'model' is reserved"),
    (["train"], "'train' is reserved"),
    ([1], "must be a string"),
    ("line1", "must be a list"),
])
def test_bad_station_lines_are_refused_naming_the_key(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=r"\[station\]\.lines") as err:
        config_for(tmp_path, station={"lines": lines})
    assert message in str(err.value)


# ------------------------------------------------------------------ broker ACL per station
STATIONS = {"station-a": ["line1"], "station-b": ["line2"]}
CAMERAS = [brokeradmin.Camera("line1", "cam1"), brokeradmin.Camera("line2", "cam1")]
PASSWORDS = {"station-a": "station-a-pass-01", "station-b": "station-b-pass-01", "observer": "observer-pass-001",
             "edge-line1-cam1": "edge-l1c1-pass-01", "edge-line2-cam1": "edge-l2c1-pass-01"}


def test_station_users_read_and_write_only_their_lines_on_the_production_broker(tmp_path_factory, tmp_path):
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    # The ACL under test, plus a test-only observer that may read everything (no station user can read
    # review-acks, so none could watch for a forged one).
    acl = brokeradmin.render_acl(CAMERAS, stations=STATIONS) + "\nuser observer\ntopic read qc/v1/#\n"
    prod = ProductionBroker(tmp_path_factory.mktemp("prod-stations"), pki, PASSWORDS, acl_text=acl).start()
    made: list[Client] = []

    def connect(user: str) -> Client:
        c = Client(prod.settings(user), f"lines-{user}")
        made.append(c)
        c.connect()
        assert c.reason == 0, f"{user} was refused: {c.reason} {prod.log_tail()}"
        return c

    ingest = None
    try:
        st_a, st_b, observer = connect("station-a"), connect("station-b"), connect("observer")
        edge1, edge2 = connect("edge-line1-cam1"), connect("edge-line2-cam1")
        # mosquitto grants a subscription beyond the ACL and filters each message at delivery.
        st_a.subscribe(T.all_reviews(), T.review("line2", "cam1"))
        assert st_b.subscribe(T.review("line2", "cam1")) == [1]
        edge2.publish(T.review("line2", "cam1"), b"frame of line2")
        assert wait_until(lambda: st_b.received(T.review("line2", "cam1")), 10)
        # Published only once station-b had line2's review: it reaches station-a after that one would have.
        edge1.publish(T.review("line1", "cam1"), b"frame of line1")
        assert wait_until(lambda: st_a.received(T.review("line1", "cam1")), 10), "station-a missed its own line"
        assert st_a.received(T.review("line2", "cam1")) == []

        # station-a may not acknowledge, rule on or set line2; station-b may.
        for forbidden, allowed in ((T.review_ack("line2"), T.review_ack("line1")),
                                   (T.verdict("line2"), T.verdict("line1")),
                                   (T.settings("line2"), T.settings("line1"))):
            assert observer.subscribe(forbidden, allowed) == [1, 1]
            st_a.publish(forbidden, wire.ReviewAck(wire.new_review_id()).encode())
            st_a.publish(allowed, b'{"sentinel":true}')
            assert wait_until(lambda allowed=allowed: observer.received(allowed), 10), f"no sentinel on {allowed}"
            assert observer.received(forbidden) == [], f"station-a could publish on {forbidden}"
        st_b.publish(T.review_ack("line2"), b'{"from":"station-b"}')
        assert wait_until(lambda: observer.received(T.review_ack("line2")), 10), "station-b cannot ack its line"

        # The real station under its own user: line1's review stored and acknowledged to line1's edge.
        secret = prod.settings("station-a")
        cfg = config_for(tmp_path / "station-a", station={"name": "station-a", "lines": ["line1"]}, mqtt={
            "host": secret.host, "port": secret.port, "client_id": "qc-station-a", "username": "station-a",
            "password_file": str(secret.password_file), "tls": True, "ca_file": str(secret.ca_file)})
        Store(cfg.db_path).close()
        ingest = Ingest(cfg).start()
        assert ingest.connected.is_set(), f"the station could not connect: {prod.log_tail()}"
        assert edge1.subscribe(T.review_ack("line1")) == [1]
        header = make_header("line1", "cam1")
        edge1.publish(T.review("line1", "cam1"), wire.encode_review(header, make_jpeg(9)))
        assert wait_until(lambda: edge1.received(T.review_ack("line1")), 10), f"no ack: {prod.log_tail()}"
        assert wire.ReviewAck.decode(edge1.received(T.review_ack("line1"))[0]).id == header.id
        assert stored_ids(ingest) == {header.id}
    finally:
        if ingest is not None:
            ingest.stop()
        for c in made:
            c.close()
        prod.stop()


# ------------------------------------------------------------------ qc broker acl --station
def run_acl(tmp_path, *argv: str) -> str:
    parser = argparse.ArgumentParser()
    brokeradmin.register(parser.add_subparsers())
    out = tmp_path / "acl"
    args = parser.parse_args(["broker", "acl", *argv, "-o", str(out)])
    assert args.func(args) == 0
    return out.read_text()


def test_qc_broker_acl_renders_one_block_per_station(tmp_path):
    text = run_acl(tmp_path, "--camera", "line1/cam1", "--camera", "line2/cam1", "--camera", "line3/cam1",
                   "--station", "station-a=line1,line3", "--station", "station-b=line2")
    blocks = {b.split("\n", 2)[1]: b for b in text.split("\n\n") if b.startswith("# ")}
    assert "user station" not in blocks  # no all-lines station user beside the per-station ones
    a = blocks["user station-a"].splitlines()[2:]
    assert a == [
        "topic read qc/v1/line1/+/review", "topic read qc/v1/line1/+/status", "topic read qc/v1/line1/+/result",
        "topic read qc/v1/line1/verdict",
        "topic read qc/v1/line3/+/review", "topic read qc/v1/line3/+/status", "topic read qc/v1/line3/+/result",
        "topic read qc/v1/line3/verdict",
        "topic read qc/v1/train/status/#",
        "topic write qc/v1/line1/review-ack", "topic write qc/v1/line1/verdict", "topic write qc/v1/line1/settings",
        "topic write qc/v1/line3/review-ack", "topic write qc/v1/line3/verdict", "topic write qc/v1/line3/settings",
        "topic write qc/v1/train/request"]
    assert "line1" not in blocks["user station-b"] and "topic write qc/v1/line2/review-ack" in blocks["user station-b"]
    assert "user trainer" in blocks and "user edge-line3-cam1" in blocks
    assert "+/review-ack" not in text and "+/settings" not in text  # no station may write every line


def test_qc_broker_acl_without_stations_is_unchanged(tmp_path):
    argv = [a for cam in brokeradmin.EXAMPLE_CAMERAS for a in ("--camera", "/".join(cam))]
    assert run_acl(tmp_path, *argv) == SHIPPED_ACL.read_text()


@pytest.mark.parametrize("stations, message", [
    (["a=line1", "b=line1,line2"], "line 'line1' is served by two stations ('a' and 'b')"),
    (["a=line1,line1", "b=line2"], "station 'a' lists line 'line1' twice"),
    (["edge-line1-cam1=line1", "b=line2"], "collides with the edge box user"),
    (["trainer=line1", "b=line2"], "collides with the trainer user"),
    (["st a=line1", "b=line2"], "station user name 'st a'"),
    (["st#a=line1", "b=line2"], "station user name 'st#a'"),
    (["a=line+1", "b=line2"], "line name 'line+1'"),
    (["a=line1,model", "b=line2"], "'model' is reserved"),
    (["a=line1", "b="], "station 'b' serves no line"),
    (["a=line1"], "no --station serves line(s) line2"),
    (["a"], "must be written NAME=LINE"),
    (["a=line1", "a=line2"], "'a' is given twice"),
])
def test_qc_broker_acl_refuses_bad_station_lists(tmp_path, stations, message):
    argv = ["--camera", "line1/cam1", "--camera", "line2/cam1"]
    for s in stations:
        argv += ["--station", s]
    with pytest.raises(brokeradmin.BrokerAdminError) as err:
        run_acl(tmp_path, *argv)
    assert message in str(err.value)
