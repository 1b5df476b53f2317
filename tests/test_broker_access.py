"""The shipped production broker config: users, TLS and the ACL, against a real mosquitto.

The broker runs from config/mosquitto/production.conf and acl (only ports and paths
rewritten), with passwords made by mosquitto_passwd and a CA made here.

Proving that a publication was refused, without sleeping: MQTT 3.1.1 acknowledges
and silently drops a publish the ACL denies, so the offender publishes the forbidden
message and then an allowed sentinel, both QoS 1, on topics an observer subscribes
to. The broker delivers one client's messages to a subscriber in the order it got
them, so once the sentinel has arrived the forbidden message would have too.
"""
from __future__ import annotations

import argparse
import io
import ssl
import threading

import pytest
from broker_tls_support import (
    SHIPPED_ACL,
    SHIPPED_CONF,
    Client,
    ProductionBroker,
    issue,
    make_ca,
    make_pki,
    refused_then_sentinel,
)
from waiting import wait_until

from qc import brokeradmin
from qc.broker import mqtt_ping
from qcloop import wire

T = wire.Topics()
PASSWORDS = {
    "station": "station-pass-0001",
    "trainer": "trainer-pass-0001",
    "edge-line1-cam1": "edge-l1c1-pass-01",
    "edge-line1-cam2": "edge-l1c2-pass-01",
    "edge-line2-cam1": "edge-l2c1-pass-01",
}
NOT_AUTHORISED = 135  # paho's reason code for CONNACK "not authorised" (3.1.1 return code 5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def prod(tmp_path_factory, pki):
    b = ProductionBroker(tmp_path_factory.mktemp("prod-broker"), pki, PASSWORDS).start()
    yield b
    b.stop()


@pytest.fixture
def connect(prod, request):
    made: list[Client] = []

    def make(user: str | None, **kw) -> Client:
        c = Client(prod.settings(user, **kw), f"{request.node.name[:40]}-{len(made)}")
        made.append(c)
        return c.connect()

    yield make
    for c in made:
        c.close()


def connected(c: Client) -> Client:
    assert c.reason == 0, f"{c.settings.username or 'anonymous'} was refused: {c.reason}"
    return c


# ------------------------------------------------------------------ the shipped files
def test_shipped_acl_is_what_qc_broker_acl_renders():
    cams = [brokeradmin.Camera(*c) for c in brokeradmin.EXAMPLE_CAMERAS]
    assert SHIPPED_ACL.read_text() == brokeradmin.render_acl(cams)


def test_shipped_config_has_no_anonymous_no_plain_listener_and_persistence():
    keys = [ln.split() for ln in SHIPPED_CONF.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ["allow_anonymous", "false"] in keys and ["persistence", "true"] in keys
    assert [k for k in keys if k[0] == "listener"] == [["listener", "8883"]]
    assert ["require_certificate", "false"] in keys


# ------------------------------------------------------------------ who may connect
def test_anonymous_and_wrong_password_are_refused_and_users_connect(connect):
    assert connect(None).reason == NOT_AUTHORISED
    assert connect("station", password="not-the-password").reason == NOT_AUTHORISED
    assert connect("nobody", password="some-long-password").reason == NOT_AUTHORISED
    for user in PASSWORDS:
        connected(connect(user))


def test_plain_tcp_to_the_tls_listener_fails(prod):
    assert not mqtt_ping("127.0.0.1", prod.port, timeout=5)


def test_a_client_trusting_another_ca_fails(prod, tmp_path):
    other_ca, _ = make_ca(tmp_path / "other", cn="someone else's CA")
    c = Client(prod.settings("station", ca=other_ca), "wrong-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        c.client.connect("127.0.0.1", prod.port)
    assert not c.connack.is_set()


# ------------------------------------------------------------------ the ACL
def test_edge_cannot_publish_a_verdict(connect):
    edge, station = connected(connect("edge-line1-cam1")), connected(connect("station"))
    refused_then_sentinel(edge, station, T.verdict("line1"), T.result("line1", "cam1"))


def test_edge_cannot_publish_another_cameras_review_or_line(connect):
    edge, station = connected(connect("edge-line1-cam1")), connected(connect("station"))
    refused_then_sentinel(edge, station, T.review("line1", "cam2"), T.review("line1", "cam1"))
    refused_then_sentinel(edge, station, T.status("line2", "cam1"), T.status("line1", "cam1"))


def test_edge_cannot_publish_acks_models_or_retrain_requests(connect):
    edge, other = connected(connect("edge-line1-cam1")), connected(connect("edge-line1-cam2"))
    station, trainer = connected(connect("station")), connected(connect("trainer"))
    # The other edge of the line would act on a forged ack (delete a review) or a forged model.
    assert other.subscribe(T.review_ack("line1"), T.model("line1")) == [1, 1]
    assert trainer.subscribe(T.retrain_request(), T.verdict("line1")) == [1, 1]
    assert station.subscribe(T.result("line1", "cam1")) == [1]
    edge.publish(T.review_ack("line1"), wire.ReviewAck("forged").encode())
    edge.publish(T.model("line1"), b'{"forged":true}')
    edge.publish(T.retrain_request(), b'{"forged":true}')
    edge.publish(T.result("line1", "cam1"), b"{}")
    assert wait_until(lambda: station.received(T.result("line1", "cam1")), 10)
    # The broker routes each publish to every subscriber as it receives it; these are
    # published after the station had the edge's last message, so they arrive after
    # anything the edge got through.
    station.publish(T.review_ack("line1"), wire.ReviewAck("real").encode())
    station.publish(T.verdict("line1"), b'{"real":true}')
    assert wait_until(lambda: other.received(T.review_ack("line1")) and trainer.received(T.verdict("line1")), 10)
    assert other.received(T.review_ack("line1")) == [wire.ReviewAck("real").encode()]
    assert other.received(T.model("line1")) == [] and trainer.received(T.retrain_request()) == []


def test_station_cannot_publish_a_model_announcement(connect):
    station, edge = connected(connect("station")), connected(connect("edge-line1-cam1"))
    refused_then_sentinel(station, edge, T.model("line1"), T.review_ack("line1"))


def test_station_wildcards_do_not_reach_the_model_topic_of_a_line_named_verdict(tmp_path, pki):
    """P/+/verdict also matches P/model/verdict: the ACL's deny lines keep that a verdict topic."""
    acl = brokeradmin.render_acl([brokeradmin.Camera("verdict", "cam1")])
    users = {"station": PASSWORDS["station"], "edge-verdict-cam1": "edge-verdict-pass"}
    b = ProductionBroker(tmp_path, pki, users, acl_text=acl).start()
    try:
        station = connected(Client(b.settings("station"), "st-verdict").connect())
        edge = connected(Client(b.settings("edge-verdict-cam1"), "edge-verdict").connect())
        refused_then_sentinel(station, edge, T.model("verdict"), T.review_ack("verdict"))
        station.close()
        edge.close()
    finally:
        b.stop()


def test_trainer_cannot_publish_verdicts_or_acks(connect):
    trainer, station = connected(connect("trainer")), connected(connect("station"))
    refused_then_sentinel(trainer, station, T.verdict("line1"), T.train_status())
    edge = connected(connect("edge-line1-cam1"))
    refused_then_sentinel(trainer, edge, T.review_ack("line1"), T.model("line1"))


def test_allowed_publications_arrive(connect):
    edge, station = connected(connect("edge-line1-cam1")), connected(connect("station"))
    trainer = connected(connect("trainer"))
    assert station.subscribe(T.all_reviews(), "qc/v1/+/+/status", "qc/v1/+/+/result", T.train_status()) == [1] * 4
    assert trainer.subscribe(T.all_verdicts(), T.retrain_request()) == [1, 1]
    assert edge.subscribe(T.review_ack("line1"), T.verdict("line1"), T.model("line1")) == [1, 1, 1]
    sent = {
        edge: [T.status("line1", "cam1"), T.result("line1", "cam1"), T.review("line1", "cam1")],
        station: [T.review_ack("line1"), T.verdict("line1"), T.retrain_request()],
        trainer: [T.model("line1"), T.train_status()],
    }
    for sender, topics in sent.items():
        for topic in topics:
            sender.publish(topic, f"from {sender.settings.username}".encode())
    expect = {
        station: sent[edge] + [T.train_status()],
        trainer: [T.verdict("line1"), T.retrain_request()],
        edge: [T.review_ack("line1"), T.verdict("line1"), T.model("line1")],
    }
    for receiver, topics in expect.items():
        for topic in topics:
            assert wait_until(lambda receiver=receiver, topic=topic: receiver.received(topic), 10), \
                f"{receiver.settings.username} did not get the message on {topic}"


def test_edge_cannot_read_another_cameras_reviews(connect):
    spy, cam2 = connected(connect("edge-line1-cam1")), connected(connect("edge-line1-cam2"))
    station = connected(connect("station"))
    # mosquitto 2.0 grants the subscription and filters each message at delivery.
    spy.subscribe(T.all_reviews(), T.review_ack("line1"))
    station.subscribe(T.review("line1", "cam2"))
    cam2.publish(T.review("line1", "cam2"), b"frame of cam2")
    assert wait_until(lambda: station.received(T.review("line1", "cam2")), 10)
    # The broker routes a publish to every subscriber when it receives it; this ack is
    # published only after the station had the review, so it reaches the spy after it.
    station.publish(T.review_ack("line1"), wire.ReviewAck("after").encode())
    assert wait_until(lambda: spy.received(T.review_ack("line1")), 10)
    assert spy.received(T.review("line1", "cam2")) == []


# ------------------------------------------------------------------ mutual TLS
def test_require_certificate_needs_a_client_certificate_from_the_ca(tmp_path, pki):
    b = ProductionBroker(tmp_path, pki, {"station": PASSWORDS["station"]},
                         overrides={"require_certificate": "true"}).start()
    try:
        cert, key = issue(pki.ca_cert, pki.ca_key, tmp_path, "station", server=False)
        good = Client(b.settings("station", cert_file=cert, key_file=key), "mtls-good").connect()
        assert good.reason == 0
        good.close()
        bare = Client(b.settings("station"), "mtls-bare")
        # TLS 1.3 reports a missing client certificate after the handshake: either the
        # connect fails, or the connection drops without a CONNACK.
        try:
            dropped = threading.Event()
            bare.client.on_disconnect = lambda *a: dropped.set()
            bare.client.connect("127.0.0.1", b.port)
            bare.client.loop_start()
            assert dropped.wait(10) and not bare.connack.is_set()
        except (ssl.SSLError, OSError):
            pass
        finally:
            bare.close()
    finally:
        b.stop()


# ------------------------------------------------------------------ qc broker
def test_acl_generator_refuses_bad_camera_lists():
    with pytest.raises(brokeradmin.BrokerAdminError, match="LINE/CAMERA"):
        brokeradmin.Camera.parse("cam1")
    with pytest.raises(brokeradmin.BrokerAdminError, match="'model' is reserved"):
        brokeradmin.Camera("model", "cam1")
    with pytest.raises(brokeradmin.BrokerAdminError, match="'cam#1'"):
        brokeradmin.Camera("line1", "cam#1")
    with pytest.raises(brokeradmin.BrokerAdminError, match="edge-a-b-c"):
        brokeradmin.render_acl([brokeradmin.Camera("a-b", "c"), brokeradmin.Camera("a", "b-c")])
    with pytest.raises(brokeradmin.BrokerAdminError, match="12\\+ characters"):
        brokeradmin.set_password("/nonexistent/passwd", "station", "short")


def test_qc_broker_commands_write_the_acl_and_a_password(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    brokeradmin.register(parser.add_subparsers())
    out = tmp_path / "acl"
    args = parser.parse_args(["broker", "acl", "--camera", "press/top", "--prefix", "plant7/qc", "-o", str(out)])
    assert args.func(args) == 0
    text = out.read_text()
    assert "user edge-press-top\ntopic write plant7/qc/press/top/status\n" in text
    assert "topic write plant7/qc/press/top/review\n" in text and "qc/v1" not in text
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-secret\n"))
    args = parser.parse_args(["broker", "add-user", str(tmp_path / "passwd"), "edge-press-top", "--password-stdin"])
    assert args.func(args) == 0
    line = (tmp_path / "passwd").read_text()
    assert line.startswith("edge-press-top:$7$") and "a-long-enough-secret" not in line
    assert (tmp_path / "passwd").stat().st_mode & 0o077 == 0o040


# ------------------------------------------------------------------ the real parts
def test_edge_station_and_trainer_work_with_their_own_users_over_tls(prod, tmp_path):
    """Review edge -> station -> ack, and a model announcement trainer -> edge, each part as its own user."""
    from station_support import make_header, make_jpeg

    from edge.config import MqttSection
    from edge.link import EdgeLink
    from station_ui.config import config_for
    from station_ui.ingest import Ingest
    from station_ui.store import Store
    from training.release import Announcer

    st = prod.settings("station")  # writes the station's password file
    cfg = config_for(tmp_path / "station", mqtt={
        "host": st.host, "port": st.port, "client_id": "st-parts", "username": "station",
        "password_file": str(st.password_file), "tls": True, "ca_file": str(st.ca_file)})
    ingest = Ingest(cfg).start()
    # line2: the retained messages this test leaves must not meet the line1 tests above.
    acked, models = [], []
    link = EdgeLink(prod.settings("edge-line2-cam1", cls=MqttSection), "line2", "cam1", "edge-parts",
                    on_ack=acked.append)
    link.subscribe(T.model("line2"), lambda payload: models.append(wire.ModelAnnouncement.decode(payload)))
    announcer = Announcer(prod.settings("trainer"), "trainer-parts")
    try:
        link.start()
        assert ingest.connected.is_set(), f"the station could not connect: {prod.log_tail()}"
        assert link.connected.wait(10), f"the edge could not connect: {prod.log_tail()}"
        header = make_header("line2", "cam1")
        assert link.publish_review(wire.encode_review(header, make_jpeg(3)))
        assert wait_until(lambda: acked == [header.id], 10), "the station's review-ack did not reach the edge"
        store = Store(cfg.db_path)
        assert store.get_review(header.id)["camera"] == "cam1"
        store.close()
        assert wait_until(lambda: ingest.counts["status"] >= 1, 10)  # the edge's retained status

        announcer.start()
        assert announcer.connected.is_set(), f"the trainer could not connect: {prod.log_tail()}"
        ann = wire.ModelAnnouncement("1.2.3", "https://models.plant/1.2.3/manifest.json", "ab" * 32, "sig")
        announcer.publish_retained(T.model("line2"), ann.encode())
        assert wait_until(lambda: models == [ann], 10), "the model announcement did not reach the edge"
    finally:
        announcer.stop()
        link.stop()
        ingest.stop()
