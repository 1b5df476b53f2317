"""A line's own broker bridged to the plant broker by Mosquitto's bridge, against two real mosquitto processes.

The plant broker runs from the shipped production.conf and ACL, with the ACL block
``qc broker bridge`` writes appended; the line broker runs from the shipped line.conf
(TLS, its own users, persistence) with the bridge config the same command wrote in its
include_dir. Each broker has its own CA, so the bridge can only connect by checking
the plant's certificate against the CA it was given.

Waits are on events (a message arriving, the bridge's retained state on the line
broker), never fixed sleeps. A refused publication is proven with a sentinel, as in
tests/test_broker_access.py: the forbidden message is published before an allowed
one on the same connection, so once the allowed one has arrived the other would have.
"""
from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import pytest
from broker_tls_support import SHIPPED_ACL, Client, ProductionBroker, make_pki, refused_then_sentinel
from waiting import wait_until

from qc import bridge, broker_cli, brokeradmin
from qcloop import wire

T = wire.Topics()
LINE = "line1"
SHIPPED_LINE_CONF = brokeradmin.SHIPPED_DIR / "line.conf"
BRIDGE_PASSWORD = "bridge-line1-pass-0001"
PLANT_PASSWORDS = {
    "station": "plant-station-pass-01",
    "trainer": "plant-trainer-pass-01",
    "edge-line1-cam1": "plant-edge-l1c1-pass",
    "bridge-line1": BRIDGE_PASSWORD,
}
LINE_PASSWORDS = {
    "station": "line-station-pass-001",
    "edge-line1-cam1": "line-edge-l1c1-pass-1",
    "monitor": "line-monitor-pass-001",
}
#: Test only: a user on the line broker that reads everything there (the bridge's state included).
MONITOR_ACL = "\n# Test only: reads everything on the line broker.\nuser monitor\ntopic read qc/v1/#\n"
STATE = bridge.state_topic(LINE)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qc")
    broker_cli.register(p.add_subparsers())
    return p


def run_bridge_cli(*argv: str) -> int:
    args = parser().parse_args(["broker", "bridge", *argv])
    return args.func(args)


# ------------------------------------------------------------------ the line broker
def line_broker(workdir: Path, pki, passwords: dict[str, str], acl_text: str, include_dir: Path) -> ProductionBroker:  # noqa: ANN001
    """mosquitto started from the shipped line.conf: only ports and paths rewritten, the bridge from include_dir."""
    return ProductionBroker(workdir, pki, passwords, overrides={"include_dir": str(include_dir)}, acl_text=acl_text,
                            conf=SHIPPED_LINE_CONF)


class Recorder(Client):
    """A test client that also records the retain flag, optionally with a persistent session."""

    def __init__(self, settings, client_id: str, persistent: bool = False):  # noqa: ANN001
        super().__init__(settings, client_id)
        self.retained: list[tuple[str, bytes]] = []
        if persistent:  # the same callbacks on a client that keeps its session (and its subscriptions) on the broker
            from qcloop.mqttconn import make_client
            c = make_client(settings, client_id, clean_session=False)
            c.on_connect, c.on_message, c.on_subscribe = self._on_connect, self._on_message, self._on_subscribe
            self.client = c

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((msg.topic, msg.payload))
            if msg.retain:
                self.retained.append((msg.topic, msg.payload))

    def last(self, topic: str) -> bytes | None:
        got = self.received(topic)
        return got[-1] if got else None

    def ids(self, topic: str) -> list[str]:
        return [json.loads(p)["id"] for p in self.received(topic)]


class Link:
    """The two brokers, the bridge between them and the clients a test makes (closed at the end)."""

    def __init__(self, plant: ProductionBroker, line: ProductionBroker, bridge_dir: Path):
        self.plant, self.line, self.bridge_dir = plant, line, bridge_dir
        self.clients: list[Recorder] = []
        self.monitor = self.on_line("monitor", "monitor")
        assert self.monitor.subscribe(STATE) == [1]

    def _connect(self, broker: ProductionBroker, user: str, client_id: str, persistent: bool) -> Recorder:
        c = Recorder(broker.settings(user), client_id, persistent)
        self.clients.append(c)
        c.connect()
        assert c.reason == 0, f"{user} was refused by {broker.config_path}: {c.reason} {broker.log_tail()}"
        return c

    def on_plant(self, user: str, client_id: str, persistent: bool = False) -> Recorder:
        return self._connect(self.plant, user, client_id, persistent)

    def on_line(self, user: str, client_id: str) -> Recorder:
        return self._connect(self.line, user, client_id, False)

    def wait_bridge(self, state: bytes, timeout: float = 30) -> None:
        """Until the line broker reports the bridge up (b"1") or down (b"0")."""
        assert wait_until(lambda: self.monitor.last(STATE) == state, timeout), \
            (f"the bridge state on the line broker is {self.monitor.last(STATE)!r}, not {state!r}\n"
             f"line broker: {self.line.log_tail()}\nplant broker: {self.plant.log_tail()}")

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    root = tmp_path_factory.mktemp("bridge")
    plant_pki, line_pki = make_pki(root / "plant-pki"), make_pki(root / "line-pki")
    (root / "plant").mkdir()
    plant = ProductionBroker(root / "plant", plant_pki, PLANT_PASSWORDS)
    secret = root / "bridge-line1.secret"
    secret.write_text(BRIDGE_PASSWORD + "\n")
    bridge_dir = root / "bridge.d"
    assert run_bridge_cli(LINE, "--plant", f"127.0.0.1:{plant.port}", "--ca", str(plant_pki.ca_cert),
                          "--password-file", str(secret), "--restart-timeout", "1", "2", "-o", f"{bridge_dir}/") == 0
    # The plant's ACL: the shipped one with the block the command wrote appended, as an operator would.
    (root / "plant" / "acl").write_text(SHIPPED_ACL.read_text() + (bridge_dir / "acl-bridge-line1").read_text())
    plant.start()
    (root / "line").mkdir()
    line_acl = brokeradmin.render_acl([brokeradmin.Camera(LINE, "cam1"), brokeradmin.Camera(LINE, "cam2")])
    line = line_broker(root / "line", line_pki, LINE_PASSWORDS, line_acl + MONITOR_ACL, bridge_dir)
    line.start()
    lk = Link(plant, line, bridge_dir)
    try:
        lk.wait_bridge(b"1")
        yield lk
    finally:
        lk.close()
        line.stop()
        plant.stop()


# ------------------------------------------------------------------ the shipped line config
def test_shipped_line_conf_is_a_tls_broker_with_persistence_and_the_bridge_dir_last():
    keys = [ln.split() for ln in SHIPPED_LINE_CONF.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ["allow_anonymous", "false"] in keys and ["persistence", "true"] in keys
    assert [k for k in keys if k[0] == "listener"] == [["listener", "8883"]]
    assert any(k[0] == "max_queued_messages" and int(k[1]) > 0 for k in keys)
    assert keys[-1][0] == "include_dir"  # mosquitto asks for it last


# ------------------------------------------------------------------ across the bridge
def test_the_lines_messages_go_up_and_acks_and_settings_stay_on_the_line(link):
    plant_station = link.on_plant("station", "up-plant-station")
    trainer = link.on_plant("trainer", "up-plant-trainer")
    plant_edge = link.on_plant("edge-line1-cam1", "up-plant-edge")
    assert plant_station.subscribe(T.all_reviews(), "qc/v1/+/+/status", "qc/v1/+/+/result") == [1, 1, 1]
    assert trainer.subscribe(T.all_verdicts(), T.retrain_request()) == [1, 1]
    assert plant_edge.subscribe(T.review_ack(LINE), T.settings(LINE), T.verdict(LINE)) == [1, 1, 1]
    edge, station = link.on_line("edge-line1-cam1", "up-line-edge"), link.on_line("station", "up-line-station")

    edge.publish(T.status(LINE, "cam1"), b'{"id":"status-1"}', retain=True)
    edge.client.publish(T.result(LINE, "cam1"), b'{"id":"result-1"}', qos=0).wait_for_publish(10)
    edge.publish(T.review(LINE, "cam1"), b'{"id":"review-1"}')
    assert wait_until(lambda: plant_station.received(T.review(LINE, "cam1")) == [b'{"id":"review-1"}'], 15), \
        f"the review did not reach the plant: {link.line.log_tail()} {link.plant.log_tail()}"
    assert plant_station.received(T.status(LINE, "cam1")) == [b'{"id":"status-1"}']
    assert plant_station.received(T.result(LINE, "cam1")) == [b'{"id":"result-1"}']

    # The line's station acks a review and sets the line's mode: both for this line only.
    station.publish(T.review_ack(LINE), wire.ReviewAck("review-1").encode())
    station.publish(T.settings(LINE), b'{"mode":"in-the-loop"}')
    station.publish(T.retrain_request(), b'{"id":"retrain-1"}')
    station.publish(T.verdict(LINE), b'{"id":"verdict-1"}')
    assert wait_until(lambda: trainer.received(T.verdict(LINE)) and plant_edge.received(T.verdict(LINE)), 15)
    assert trainer.received(T.retrain_request()) == [b'{"id":"retrain-1"}']
    # Published before the verdict on the same connection: had they crossed, they would be here already.
    assert plant_edge.received(T.review_ack(LINE)) == [] and plant_edge.received(T.settings(LINE)) == []

    # The status went up retained: a part connecting to the plant later still sees it.
    late = link.on_plant("station", "up-plant-late")
    late.subscribe(T.status(LINE, "cam1"))
    assert wait_until(lambda: late.retained == [(T.status(LINE, "cam1"), b'{"id":"status-1"}')], 10)


def test_a_retained_model_announced_on_the_plant_reaches_the_line_and_no_other_lines(link):
    trainer = link.on_plant("trainer", "down-trainer")
    watcher = link.on_line("monitor", "down-watcher")
    assert watcher.subscribe("qc/v1/model/#", T.train_status()) == [1, 1]
    ann = wire.ModelAnnouncement("1.2.3", "https://models.plant/1.2.3/manifest.json", "ab" * 32, "sig")
    other = wire.ModelAnnouncement("9.9.9", "https://models.plant/9.9.9/manifest.json", "cd" * 32, "sig")
    trainer.publish(T.model("line2"), other.encode(), retain=True)  # for another line: must not come down
    trainer.publish(T.model(LINE), ann.encode(), retain=True)
    trainer.publish(T.train_status(), b'{"state":"idle"}', retain=True)
    assert wait_until(lambda: watcher.last(T.model(LINE)) == ann.encode()
                      and watcher.last(T.train_status()) == b'{"state":"idle"}', 15), \
        f"the model did not come down: {link.line.log_tail()}"
    assert watcher.received(T.model("line2")) == []

    # Retained on the line broker too: an edge connecting later gets it at once.
    edge = link.on_line("edge-line1-cam1", "down-late-edge")
    edge.subscribe(T.model(LINE))
    assert wait_until(lambda: edge.retained == [(T.model(LINE), ann.encode())], 10)


def restart_line_broker(link) -> None:  # noqa: ANN001
    link.monitor.close()
    link.line.stop()
    link.line.start()  # same port, same persistence directory
    link.monitor = link.on_line("monitor", f"monitor-{len(link.clients)}")
    assert link.monitor.subscribe(STATE) == [1]


def test_a_line_broker_restarted_while_the_plant_is_down_keeps_its_model_and_its_queue(link):
    """The line's own persistence: the retained model and the reviews waiting for the plant survive its restart."""
    trainer = link.on_plant("trainer", "restart-trainer")
    plant_station = link.on_plant("station", "restart-plant-station", persistent=True)
    assert plant_station.subscribe(T.all_reviews(LINE)) == [1]
    ann = wire.ModelAnnouncement("1.2.4", "https://models.plant/1.2.4/manifest.json", "ef" * 32, "sig")
    watcher = link.on_line("monitor", "restart-watcher")
    watcher.subscribe(T.model(LINE))
    trainer.publish(T.model(LINE), ann.encode(), retain=True)
    assert wait_until(lambda: watcher.last(T.model(LINE)) == ann.encode(), 15)
    watcher.close()

    link.plant.stop()
    link.wait_bridge(b"0")
    edge = link.on_line("edge-line1-cam1", "restart-edge-before")
    before = [f"before-{i:02d}" for i in range(10)]
    for review in before:
        edge.publish(T.review(LINE, "cam1"), json.dumps({"id": review}).encode())
    edge.close()
    restart_line_broker(link)
    link.wait_bridge(b"0")
    # Only the line broker's own persistence can hand this over now: the plant is down.
    edge = link.on_line("edge-line1-cam1", "restart-edge-after")
    edge.subscribe(T.model(LINE))
    assert wait_until(lambda: (T.model(LINE), ann.encode()) in edge.retained, 10), \
        f"the retained model was not kept by the line broker: {edge.messages} {link.line.log_tail()}"
    after = [f"after-{i:02d}" for i in range(10)]
    for review in after:
        edge.publish(T.review(LINE, "cam1"), json.dumps({"id": review}).encode())

    link.plant.start()
    link.wait_bridge(b"1")
    topic = T.review(LINE, "cam1")
    assert wait_until(lambda: set(plant_station.ids(topic)) == set(before + after), 30), \
        f"lost: {sorted(set(before + after) - set(plant_station.ids(topic)))}\n{link.line.log_tail()}"


def test_nothing_published_on_the_line_while_the_plant_is_down_is_lost(link):
    """Plant stopped, reviews and verdicts published on the line, plant restarted: every one arrives."""
    n = 40
    # Persistent sessions on the plant, subscribed before the cut: the plant keeps them across its restart.
    plant_station = link.on_plant("station", "cut-plant-station", persistent=True)
    trainer = link.on_plant("trainer", "cut-plant-trainer", persistent=True)
    assert plant_station.subscribe(T.all_reviews(LINE)) == [1]
    assert trainer.subscribe(T.verdict(LINE)) == [1]
    edge, station = link.on_line("edge-line1-cam1", "cut-line-edge"), link.on_line("station", "cut-line-station")

    link.plant.stop()
    link.wait_bridge(b"0")
    reviews = [f"review-{i:03d}" for i in range(n)]
    verdicts = [f"verdict-{i:03d}" for i in range(n)]
    for review, verdict in zip(reviews, verdicts):
        edge.publish(T.review(LINE, "cam1"), json.dumps({"id": review}).encode())  # waits for the line's PUBACK
        station.publish(T.verdict(LINE), json.dumps({"id": verdict}).encode())
    link.plant.start()  # same port, same persistence directory

    link.wait_bridge(b"1")
    topic = T.review(LINE, "cam1")
    assert wait_until(lambda: set(plant_station.ids(topic)) == set(reviews)
                      and set(trainer.ids(T.verdict(LINE))) == set(verdicts), 30), \
        (f"lost: {sorted(set(reviews) - set(plant_station.ids(topic)))} "
         f"{sorted(set(verdicts) - set(trainer.ids(T.verdict(LINE))))}\n{link.line.log_tail()}")
    # QoS 1 may deliver a message twice; a repeated id is the same review, never an extra one.
    assert len(set(plant_station.ids(topic))) == n and len(set(trainer.ids(T.verdict(LINE)))) == n


# ------------------------------------------------------------------ the plant's ACL for the bridge user
def test_the_bridge_user_of_one_line_cannot_publish_into_another_lines_topics(link):
    forger = link.on_plant("bridge-line1", "forger-line1")  # its own credentials, straight to the plant
    station, trainer = link.on_plant("station", "acl-station"), link.on_plant("trainer", "acl-trainer")
    edge = link.on_plant("edge-line1-cam1", "acl-edge")
    refused_then_sentinel(forger, station, T.review("line2", "cam1"), T.review(LINE, "cam1"))
    refused_then_sentinel(forger, station, T.status("line2", "cam1"), T.status(LINE, "cam2"))
    refused_then_sentinel(forger, trainer, T.verdict("line2"), T.verdict(LINE))
    # Nor speak for the station or the trainer of its own line.
    refused_then_sentinel(forger, edge, T.review_ack(LINE), T.verdict(LINE))
    refused_then_sentinel(forger, edge, T.model(LINE), T.verdict(LINE))


def test_the_bridge_user_reads_only_its_own_lines_models(link):
    reader = link.on_plant("bridge-line1", "reader-line1")
    trainer = link.on_plant("trainer", "acl-models-trainer")
    assert reader.subscribe(T.model("line2"), T.model(LINE)) == [1, 1]  # mosquitto 2 filters at delivery
    trainer.publish(T.model("line2"), b'{"for":"line2"}')
    trainer.publish(T.model(LINE), b'{"for":"line1"}')
    assert wait_until(lambda: reader.received(T.model(LINE)), 10)
    assert reader.received(T.model("line2")) == []


# ------------------------------------------------------------------ qc broker bridge
@pytest.mark.parametrize("line", ["", "line/1", "line+", "#", " line1", "line 1", "line:1", "model", "train",
                                  "bridge"])
def test_bad_line_names_are_refused_naming_them(line, tmp_path):
    with pytest.raises(brokeradmin.BrokerAdminError, match=f"line name {line!r}".replace("+", r"\+")):
        bridge.check_line(line)
    with pytest.raises(brokeradmin.BrokerAdminError, match=f"line name {line!r}".replace("+", r"\+")):
        bridge.render_bridge_acl(line)


def test_bridge_is_a_reserved_line_name_for_cameras_too():
    with pytest.raises(brokeradmin.BrokerAdminError, match="'bridge' is reserved"):
        brokeradmin.Camera("bridge", "cam1")


@pytest.fixture
def ca(tmp_path):
    return make_pki(tmp_path / "pki").ca_cert


def test_missing_or_weak_passwords_are_refused(tmp_path, ca, capsys, monkeypatch):
    out = str(tmp_path / "out") + "/"
    with pytest.raises(SystemExit) as exc:
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), "-o", out)
    assert exc.value.code == 2
    assert "one of the arguments --password-file --password-env is required" in capsys.readouterr().err
    monkeypatch.delenv("QC_NO_SUCH_VAR", raising=False)
    with pytest.raises(brokeradmin.BrokerAdminError, match="--password-env QC_NO_SUCH_VAR: .* not set"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), "--password-env", "QC_NO_SUCH_VAR", "-o", out)
    monkeypatch.setenv("QC_SHORT", "short")
    with pytest.raises(brokeradmin.BrokerAdminError, match="--password-env QC_SHORT: .*12\\+ characters"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), "--password-env", "QC_SHORT", "-o", out)
    empty = tmp_path / "empty.secret"
    empty.write_text("\n")
    with pytest.raises(brokeradmin.BrokerAdminError, match=f"--password-file {empty} is empty"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), "--password-file", str(empty), "-o", out)
    missing = tmp_path / "missing.secret"
    with pytest.raises(brokeradmin.BrokerAdminError, match=f"--password-file {missing}: No such file"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), "--password-file", str(missing), "-o", out)
    with pytest.raises(brokeradmin.BrokerAdminError, match="exactly one"):
        bridge.read_password(None, None)
    assert not (tmp_path / "out").exists()  # nothing written on a refusal


def test_bad_plant_address_ca_and_output_are_refused(tmp_path, ca, monkeypatch):
    monkeypatch.setenv("QC_BRIDGE_PW", BRIDGE_PASSWORD)
    base = ["--password-env", "QC_BRIDGE_PW"]
    for plant, why in [("plant", "must be HOST:PORT"), ("plant:http", "'http' must be a number"),
                       ("plant:70000", "'70000' must be a number from 1 to 65535"), ("[::1]:8883", "IPv6")]:
        with pytest.raises(brokeradmin.BrokerAdminError, match=f"--plant '{plant}'.*{why}".replace("[", r"\[")):
            run_bridge_cli(LINE, "--plant", plant, "--ca", str(ca), *base, "-o", str(tmp_path))
    with pytest.raises(brokeradmin.BrokerAdminError, match="--ca .*nope.crt: cannot read"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(tmp_path / "nope.crt"), *base, "-o", str(tmp_path))
    (tmp_path / "not-pem.crt").write_text("hello\n")
    with pytest.raises(brokeradmin.BrokerAdminError, match="not a PEM certificate"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(tmp_path / "not-pem.crt"), *base, "-o", str(tmp_path))
    with pytest.raises(brokeradmin.BrokerAdminError, match="ending in .conf"):
        run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), *base, "-o", str(tmp_path / "bridge.txt"))
    with pytest.raises(brokeradmin.BrokerAdminError, match="line name 'model' is reserved"):
        run_bridge_cli("model", "--plant", "plant:8883", "--ca", str(ca), *base, "-o", str(tmp_path))
    for prefix in ["qc/", "/qc", "qc/+", "qc v1", ""]:
        with pytest.raises(brokeradmin.BrokerAdminError, match=f"topic prefix {prefix!r}".replace("+", r"\+")):
            run_bridge_cli(LINE, "--plant", "plant:8883", "--ca", str(ca), *base, "--prefix", prefix,
                           "-o", str(tmp_path))
    assert not list(tmp_path.glob("*bridge*"))  # nothing written on a refusal


def test_qc_reports_a_refusal_as_one_line(tmp_path, ca, capsys, monkeypatch):
    from qc.cli import main

    monkeypatch.delenv("QC_NO_SUCH_VAR", raising=False)
    assert main(["broker", "bridge", "line/1", "--plant", "plant:8883", "--ca", str(ca),
                 "--password-env", "QC_NO_SUCH_VAR", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qc: error: line name 'line/1'") and "Traceback" not in err


def test_the_command_writes_the_bridge_config_owner_only_and_the_plant_acl_block(tmp_path, ca, capsys, monkeypatch):
    monkeypatch.setenv("QC_BRIDGE_PW", "press-bridge-secret-01")
    out = tmp_path / "etc" / "bridge.d"
    assert run_bridge_cli("press", "--plant", "plant-broker.example:8883", "--ca", str(ca), "--password-env",
                          "QC_BRIDGE_PW", "--prefix", "plant7/qc", "-o", f"{out}/") == 0
    conf, acl = out / "bridge-press.conf", out / "acl-bridge-press"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    text = conf.read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for expected in ["connection qc-press", "address plant-broker.example:8883", f"bridge_cafile {ca.resolve()}",
                     "bridge_tls_version tlsv1.2", "bridge_insecure false", "remote_username bridge-press",
                     "remote_password press-bridge-secret-01", "remote_clientid bridge-press", "cleansession false",
                     "bridge_protocol_version mqttv311", "try_private true", "notifications_local_only true",
                     "notification_topic plant7/qc/bridge/press/state",
                     "topic plant7/qc/press/+/status out 1", "topic plant7/qc/press/+/result out 0",
                     "topic plant7/qc/press/+/review out 1", "topic plant7/qc/press/verdict out 1",
                     "topic plant7/qc/train/request out 1",
                     "topic plant7/qc/model/press in 1", "topic plant7/qc/train/status/# in 1"]:
        assert expected in lines, expected
    assert lines[0] == "connection qc-press"  # every bridge option after the connection it belongs to
    assert not any("review-ack" in ln or "settings" in ln for ln in lines if ln.startswith("topic "))
    assert "qc/v1" not in text
    assert acl.read_text() == bridge.render_bridge_acl("press", "plant7/qc")
    assert "user bridge-press\ntopic write plant7/qc/press/+/status\n" in acl.read_text()
    assert "topic read plant7/qc/model/press\ntopic read plant7/qc/train/status/#\n" in acl.read_text()
    assert "secret" not in acl.read_text()
    err = capsys.readouterr().err
    assert "mode 0600" in err and "qc broker add-user" in err and "acl-bridge-press" in err and "RESTART" in err
    assert "press-bridge-secret-01" not in err

    # A file name instead: the ACL block goes beside it; an existing readable file becomes owner-only.
    named = tmp_path / "conf.d" / "qc-bridge.conf"
    named.parent.mkdir()
    named.write_text("old\n")
    named.chmod(0o644)
    assert run_bridge_cli("press", "--plant", "plant-broker.example:8883", "--ca", str(ca), "--password-env",
                          "QC_BRIDGE_PW", "-o", str(named)) == 0
    assert stat.S_IMODE(named.stat().st_mode) == 0o600 and "remote_password press-bridge-secret-01" in named.read_text()
    assert (named.parent / "acl-bridge-press").is_file()
    assert sorted(p.name for p in named.parent.iterdir()) == ["acl-bridge-press", "qc-bridge.conf"]  # no temp file
    if os.geteuid() == 0:  # given to the user mosquitto runs as, it stays theirs when written again
        os.chown(named, 65534, 65534)
        assert run_bridge_cli("press", "--plant", "plant-broker.example:8883", "--ca", str(ca), "--password-env",
                              "QC_BRIDGE_PW", "-o", str(named)) == 0
        assert (named.stat().st_uid, named.stat().st_gid) == (65534, 65534)
        assert stat.S_IMODE(named.stat().st_mode) == 0o600


def test_the_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["broker", "bridge", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for expected in ["--plant HOST:PORT", "--ca FILE", "--password-file", "--password-env", "-o DIR_OR_FILE",
                     "0600", "acl-bridge-LINE", "bridge-LINE.conf", "example:"]:
        assert expected in text, expected
