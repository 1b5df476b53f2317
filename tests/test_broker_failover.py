"""An ordered list of brokers: edge, station and trainer move to the next when the one they use fails.

Two real mosquitto brokers, A then B, as a plant's active/standby pair. Stopping A moves
every part to B, and the loop keeps working there: a review the edge publishes after
the move is stored by a station that moved too, and a verdict reaches the trainer,
whose status goes out through B. A part whose first broker is down (or refuses it)
starts on the second, and the list is cycled: from B back to A when B fails.
"""

from __future__ import annotations

import io
import logging
import time

import pytest

from edge.config import EdgeConfig, MqttSection
from edge.link import EdgeLink, ReviewSender
from edge.outbox import Outbox
from qc.broker import free_port
from qcloop import configfile, wire
from qcloop.errors import ConfigError
from qcloop.mqttconn import BrokerSettings, parse_broker
from station_ui.config import config_for
from station_ui.ingest import Ingest
from station_ui.store import Store
from tests.station_support import make_header, make_jpeg
from tests.test_training_server import Watcher
from tests.waiting import wait_until
from training.release import keygen
from training.serve_config import ServeConfig
from training.server import TrainServer


def address(b) -> str:
    return f"{b.host}:{b.port}"


def start_edge(brokers: list[str], outbox: Outbox, client_id: str = "qc-edge-L1-c1"):
    link = EdgeLink(MqttSection(brokers=tuple(brokers), reconnect_max_s=1.0), "L1", "c1", client_id=client_id)
    sender = ReviewSender(outbox, link, resend_after_s=0.5, max_in_flight=16)
    link.start()
    sender.start()
    return link, sender


def start_station(tmp_path, brokers: list[str], client_id: str = "st-failover") -> tuple[object, Ingest]:
    cfg = config_for(tmp_path / "st", mqtt={"brokers": brokers, "client_id": client_id, "reconnect_max_s": 1.0})
    Store(cfg.db_path).close()
    return cfg, Ingest(cfg).start(wait_s=None)


def on(part, broker_address: str) -> bool:
    """The part is connected, and to this broker."""
    return part.connected.is_set() and part.broker.current == broker_address


# ------------------------------------------------------------------ the loop moves to the standby
def test_edge_and_station_move_to_b_when_a_stops_and_a_later_review_is_stored_through_b(
    broker_factory, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="qcloop.mqttconn")
    a, b = broker_factory(), broker_factory()
    brokers = [address(a), address(b)]
    cfg, ingest = start_station(tmp_path, brokers)
    outbox = Outbox(tmp_path / "outbox")
    link, sender = start_edge(brokers, outbox)
    store = Store(cfg.db_path, migrate=False)
    try:
        assert wait_until(lambda: on(link, address(a)) and on(ingest, address(a)), 10)
        before = make_header(line="L1", camera="c1")
        outbox.put(before, make_jpeg(1))
        sender.wake()
        assert wait_until(lambda: store.has_review(before.id) and outbox.depth() == 0, 15)

        a.stop()
        assert wait_until(lambda: on(link, address(b)) and on(ingest, address(b)), 20), (
            link.broker.current,
            ingest.broker.current,
        )
        after = make_header(line="L1", camera="c1")
        outbox.put(after, make_jpeg(2))
        sender.wake()
        # Stored by the station through B, and acknowledged back to the edge through B.
        assert wait_until(lambda: store.has_review(after.id) and outbox.depth() == 0, 15)
        assert ingest.stats()["stored"] == 2
        assert link.broker.moves == 1 and ingest.broker.moves == 1
    finally:
        sender.stop()
        link.stop()
        ingest.stop()
        store.close()
    moved = [r.getMessage() for r in caplog.records if "moving to" in r.getMessage()]
    assert any(f"broker {address(a)} failed" in m and f"moving to {address(b)}" in m for m in moved), moved
    assert all(", ".join(brokers) in m for m in moved), moved  # each names the whole list


def trainer_config(tmp_path, brokers: list[str]) -> ServeConfig:
    keygen(tmp_path / "keys" / "trainer.key", tmp_path / "keys" / "trainer.pub")
    raw = {
        "data": {"dir": str(tmp_path / "trainer")},
        "mqtt": {"brokers": brokers, "client_id": "trainer-failover", "lines": ["L1"], "reconnect_max_s": 1.0},
        "keys": {"private": str(tmp_path / "keys" / "trainer.key"), "public": str(tmp_path / "keys" / "trainer.pub")},
        "triggers": {"verdicts": 0, "every_hours": 0, "on_request": True},
        "serve": {"host": "127.0.0.1", "port": 0},
    }
    return configfile.from_dict(raw, ServeConfig)


def test_trainer_moves_to_b_and_a_verdict_through_b_counts_and_its_status_goes_out_through_b(broker_factory, tmp_path):
    a, b = broker_factory(), broker_factory()
    topics = wire.Topics()
    server = TrainServer(trainer_config(tmp_path, [address(a), address(b)]), log_to=io.StringIO()).start()
    w = None
    try:
        assert server.connected.is_set() and server.broker.current == address(a)
        assert server.announcer.broker.current == address(a)
        a.stop()
        assert wait_until(lambda: on(server, address(b)), 20), server.broker.current
        assert wait_until(
            lambda: server.announcer.connected.is_set() and server.announcer.broker.current == address(b), 20
        ), server.announcer.broker.current
        w = Watcher(b, topics.train_status())
        verdict = wire.Verdict(wire.new_review_id(), "real_fault", "pit", "olga", time.time(), line="L1")
        w.send(topics.verdict("L1"), verdict.encode())
        assert wait_until(lambda: server.verdicts_since == 1, 10)
        # The trainer's status (published by its announcer client) reaches B with the new count.
        assert wait_until(lambda: (w.last(topics.train_status()) or {}).get("verdicts_since_last") == 1, 10), w.got
    finally:
        if w is not None:
            w.close()
        server.stop()


# ------------------------------------------------------------------ starting with the first broker down
def test_parts_whose_first_broker_is_down_at_start_connect_to_the_second(broker_factory, tmp_path):
    b = broker_factory()
    down = f"127.0.0.1:{free_port()}"  # nothing listens here
    brokers = [down, address(b)]
    cfg, ingest = start_station(tmp_path, brokers)
    link, sender = start_edge(brokers, Outbox(tmp_path / "outbox"))
    store = Store(cfg.db_path, migrate=False)
    try:
        assert wait_until(lambda: on(link, address(b)) and on(ingest, address(b)), 15)
        h = make_header(line="L1", camera="c1")
        sender.outbox.put(h, make_jpeg(3))
        sender.wake()
        assert wait_until(lambda: store.has_review(h.id) and sender.outbox.depth() == 0, 15)
    finally:
        sender.stop()
        link.stop()
        ingest.stop()
        store.close()


def test_a_first_broker_that_refuses_the_client_is_passed_over_for_the_second(broker_factory, tmp_path):
    refusing = broker_factory(anonymous=False)  # answers CONNECT with "not authorised"
    b = broker_factory()
    link, sender = start_edge([address(refusing), address(b)], Outbox(tmp_path / "outbox"))
    try:
        assert wait_until(lambda: on(link, address(b)), 15), link.broker.current
    finally:
        sender.stop()
        link.stop()


def test_the_list_is_cycled_so_a_failed_b_sends_the_client_back_to_a(broker_factory, tmp_path):
    a, b = broker_factory(), broker_factory()
    link, sender = start_edge([address(a), address(b)], Outbox(tmp_path / "outbox"))
    try:
        assert wait_until(lambda: on(link, address(a)), 10)
        a.stop()
        assert wait_until(lambda: on(link, address(b)), 20)
        a.start()
        b.stop()
        assert wait_until(lambda: on(link, address(a)), 20), link.broker.current
        assert link.broker.moves == 2
        # Working on A again: the retained status the link publishes there is readable on A.
        link.publish_status(wire.EdgeStatus("running", model="1.0.0"))
        w = Watcher(a, wire.Topics().status("L1", "c1"))
        try:
            assert wait_until(lambda: (w.last(wire.Topics().status("L1", "c1")) or {}).get("state") == "running", 10)
        finally:
            w.close()
    finally:
        sender.stop()
        link.stop()


def test_a_single_broker_that_stops_is_retried_and_never_moved_from(broker_factory, tmp_path):
    a = broker_factory()
    link, sender = start_edge([address(a)], Outbox(tmp_path / "outbox"))
    try:
        assert wait_until(lambda: on(link, address(a)), 10)
        a.stop()
        assert wait_until(lambda: not link.connected.is_set(), 10)
        a.start()
        assert wait_until(lambda: on(link, address(a)), 20)
        assert link.broker.moves == 0
    finally:
        sender.stop()
        link.stop()


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("broker-a", "needs a port"),
        ("broker-a:", "the port must be a number"),
        ("broker-a:http", "the port must be a number"),
        ("broker-a:0", "1..65535"),
        ("broker-a:70000", "1..65535"),
        (":1883", "needs a host"),
        ("::1:1883", "IPv6 address goes in brackets"),
        ("[::1:1883", "IPv6 address goes in brackets"),
        ("[::1]", "needs a port after the address"),
        ("mqtt://broker-a:1883", "not a URL"),
        (" broker-a:1883", "no spaces"),
        ("", "no spaces"),
    ],
)
def test_a_bad_broker_entry_is_refused_naming_the_key_and_the_entry(entry, says):
    raw = {"mqtt": {"brokers": ["broker-b:1883", entry]}}
    with pytest.raises(ConfigError) as err:
        configfile.from_dict(raw, EdgeConfig, source="edge.toml")
    text = str(err.value)
    assert text.startswith("edge.toml: [mqtt].brokers: entry 2 "), text
    assert repr(entry) in text and says in text, text


def test_broker_list_validation_rejects_repeats_and_non_lists():
    with pytest.raises(ConfigError, match=r"\[mqtt\]\.brokers: entry 2 'a:1883': the same broker as entry 1"):
        configfile.from_dict({"mqtt": {"brokers": ["a:1883", "a:1883"]}}, EdgeConfig, source="edge.toml")
    with pytest.raises(ConfigError, match=r"\[mqtt\]\.brokers: must be a list"):
        configfile.from_dict({"mqtt": {"brokers": "a:1883"}}, EdgeConfig, source="edge.toml")
    with pytest.raises(ValueError, match="must be a list"):
        BrokerSettings(brokers="a:1883")  # type: ignore[arg-type]


def test_good_entries_give_the_endpoints_in_order_and_an_empty_list_means_host_and_port():
    s = BrokerSettings(brokers=("broker-a.plant:1883", "[::1]:8883", "10.0.0.2:1884"))
    assert s.endpoints == (("broker-a.plant", 1883), ("::1", 8883), ("10.0.0.2", 1884))
    assert s.broker_list == "broker-a.plant:1883, [::1]:8883, 10.0.0.2:1884"
    assert parse_broker("[fe80::1]:1883") == ("fe80::1", 1883)
    plain = BrokerSettings(host="broker-a", port=1884)
    assert plain.endpoints == (("broker-a", 1884),) and plain.broker_list == "broker-a:1884"
    loaded = configfile.from_dict({"mqtt": {"brokers": ["a:1", "b:2"]}}, EdgeConfig, source="edge.toml")
    assert loaded.mqtt.brokers == ("a:1", "b:2") and loaded.mqtt.endpoints == (("a", 1), ("b", 2))
