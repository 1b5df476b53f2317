"""Test support for the production broker: mosquitto run from the shipped config, with a CA from qc.pki.

The shipped ``config/mosquitto/production.conf`` and ``acl`` are copied into a test
directory with only the machine-specific values rewritten (port, file paths, log
destination); every access rule comes from the shipped files, so a wrong ACL fails
the tests. Readiness is a completed TLS handshake, polled against a deadline.
"""
from __future__ import annotations

import getpass
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from waiting import wait_until

from qc import brokeradmin
from qc.broker import find_mosquitto, free_port, terminate
from qc.pki import Pki, issue, make_ca, make_pki  # noqa: F401 (the CA the tests' brokers use; re-exported)
from qcloop.mqttconn import BrokerSettings, make_client

SHIPPED_CONF = brokeradmin.SHIPPED_DIR / "production.conf"
SHIPPED_ACL = brokeradmin.SHIPPED_DIR / "acl"


# ------------------------------------------------------------------ the broker
#: Shipped keys whose values are machine paths or ports; the test must find each one.
_REWRITTEN = ("listener", "cafile", "certfile", "keyfile", "password_file", "acl_file",
              "persistence_location", "log_dest")


def rewrite_config(text: str, values: dict[str, str]) -> str:
    """The shipped config with the values of the keys in ``values`` replaced; fails if one is missing."""
    out, seen = [], set()
    for line in text.splitlines():
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key in values:
            if key in seen:
                raise AssertionError(f"the shipped config sets {key!r} twice; the test expects one")
            seen.add(key)
            line = f"{key} {values[key]}"
        out.append(line)
    missing = sorted(set(values) - seen)
    assert not missing, f"the shipped production.conf lacks {missing}"
    return "\n".join(out) + "\n"


class ProductionBroker:
    """mosquitto started from a shipped config (the plant's production.conf unless ``conf`` names another,
    e.g. line.conf) and the shipped ACL, with users made by the test."""

    def __init__(self, workdir: Path, pki: Pki, passwords: dict[str, str], overrides: dict[str, str] | None = None,
                 acl_text: str | None = None, conf: Path = SHIPPED_CONF):
        self.workdir, self.pki, self.passwords = workdir, pki, passwords
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        passwd = workdir / "passwd"
        for user, password in passwords.items():
            brokeradmin.set_password(passwd, user, password)
        (workdir / "acl").write_text(SHIPPED_ACL.read_text() if acl_text is None else acl_text)
        data = workdir / "data"
        data.mkdir()
        values = {"listener": f"{self.port} 127.0.0.1", "cafile": str(pki.ca_cert), "certfile": str(pki.server_cert),
                  "keyfile": str(pki.server_key), "password_file": str(passwd), "acl_file": str(workdir / "acl"),
                  "persistence_location": f"{data}/", "log_dest": f"file {self.log_path}", **(overrides or {})}
        text = rewrite_config(conf.read_text(), values)
        if os.geteuid() == 0:
            text += f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to a user that cannot read tmp_path
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self) -> ProductionBroker:
        exe = find_mosquitto()
        assert exe, "mosquitto is not installed"
        self.proc = subprocess.Popen([exe, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        ready = wait_until(lambda: self.proc.poll() is not None or self._handshake_ok(), timeout=15)
        if self.proc.poll() is not None or not ready:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise AssertionError(f"mosquitto did not come up with the shipped config: {err} {self.log_tail()}")
        return self

    def _handshake_ok(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return True
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.proc)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def settings(self, user: str | None, *, password: str | None = None, ca: Path | None = None, tls: bool = True,
                 cls: type = BrokerSettings, **kw) -> BrokerSettings:
        """Settings as a part would have them: its user, its password in a file, TLS with the plant CA."""
        pw_file = None
        if user is not None:
            pw_file = self.workdir / f"{user}.secret"
            pw_file.write_text((password if password is not None else self.passwords[user]) + "\n")
        return cls(host="127.0.0.1", port=self.port, username=user or "", password_file=pw_file,
                   tls=tls, ca_file=ca or self.pki.ca_cert, reconnect_max_s=1.0, **kw)


# ------------------------------------------------------------------ clients
class Client:
    """A paho client from qcloop.mqttconn.make_client that records what happens to it."""

    def __init__(self, settings: BrokerSettings, client_id: str):
        self.settings = settings
        self.connack = threading.Event()
        self.reason = None
        self.suback: dict[int, list] = {}
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        c = make_client(settings, client_id, clean_session=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    def _on_connect(self, client, userdata, flags, reason_code, props) -> None:  # noqa: ANN001
        self.reason = reason_code
        self.connack.set()
        if reason_code != 0:
            client.disconnect()  # do not keep retrying with refused credentials

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def _on_subscribe(self, client, userdata, mid, reason_codes, props) -> None:  # noqa: ANN001
        self.suback[mid] = list(reason_codes)

    def connect(self) -> Client:
        self.client.connect(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"
        return self

    def subscribe(self, *topics: str) -> list:
        """Subscribe with QoS 1; return the SUBACK reason codes."""
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        assert wait_until(lambda: mid in self.suback, 10), "no SUBACK"
        return self.suback[mid]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)  # PUBACK: the broker took it (a denied publish is acked and dropped)

    def received(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused_then_sentinel(offender: Client, observer: Client, forbidden: str, sentinel: str) -> None:
    """Proves an ACL refusal without sleeping: MQTT 3.1.1 acknowledges and silently drops a publish the ACL
    denies, so the offender publishes the forbidden message and then an allowed sentinel (QoS 1); the broker
    delivers one client's messages in order, so once the sentinel has arrived the other would have too."""
    assert observer.subscribe(forbidden, sentinel) == [1, 1]
    offender.publish(forbidden, b'{"forged":true}')
    offender.publish(sentinel, b'{"sentinel":true}')
    assert wait_until(lambda: observer.received(sentinel), 10), f"the allowed sentinel on {sentinel} did not arrive"
    assert observer.received(forbidden) == [], f"{offender.settings.username} could publish on {forbidden}"
