"""How every part connects to the broker: one settings table and one client factory.

The edge, the station and the trainer each extend ``BrokerSettings`` with their own
keys, so credentials, TLS and reconnect behave the same everywhere. Secrets are never
in a config file: the password comes from an environment variable or a file named
here, read when connecting. Clients use paho's VERSION2 callbacks, a fixed client id
and a persistent session, so the broker keeps QoS 1 messages while a part is away.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from qcloop import wire
from qcloop.configfile import check_range, field_error
from qcloop.errors import ConfigError


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = wire.DEFAULT_PREFIX
    client_id: str = ""  # fixed, so the broker keeps this part's session; "" = the part's default
    username: str = ""
    password_env: str = ""  # name of an environment variable holding the password
    password_file: Path | None = None  # or a file holding it (owner-only rights)
    tls: bool = False
    ca_file: Path | None = None  # CA that signed the broker's certificate (None: the system's)
    cert_file: Path | None = None  # client certificate, when the broker asks for one
    key_file: Path | None = None
    keepalive_s: int = 15
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        check_range("port", self.port, 1, 65535)
        check_range("keepalive_s", self.keepalive_s, 5, 3600)
        check_range("reconnect_max_s", self.reconnect_max_s, 0.5, 300)
        if self.password_env and self.password_file:
            raise field_error("password_env", "set password_env or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise field_error("cert_file", "a client certificate needs both cert_file and key_file")

    @property
    def topics(self) -> wire.Topics:
        return wire.Topics(self.prefix)

    def password(self) -> str | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"[mqtt].password_env names {self.password_env!r}, which is not set")
            return value
        if self.password_file:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"[mqtt].password_file {self.password_file}: {exc}") from exc
        return None


def make_client(
    s: BrokerSettings, client_id: str, *, will: tuple[str, bytes] | None = None, clean_session: bool = False
) -> mqtt.Client:
    """A paho client configured from settings (not yet connected). ``will`` = (topic, payload), retained."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311
    )
    if will is not None:
        c.will_set(will[0], will[1], qos=1, retain=True)
    if s.username:
        c.username_pw_set(s.username, s.password())
    if s.tls:
        c.tls_set(
            ca_certs=str(s.ca_file) if s.ca_file else None,
            certfile=str(s.cert_file) if s.cert_file else None,
            keyfile=str(s.key_file) if s.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    # paho annotates int but sleeps on any number; 0.2 s keeps a restarted broker's reconnect quick.
    c.reconnect_delay_set(min_delay=0.2, max_delay=s.reconnect_max_s)  # type: ignore[arg-type]
    return c
