"""How every part connects to the broker: one settings table and one client factory.

The edge, the station and the trainer each extend ``BrokerSettings`` with their own
keys, so credentials, TLS and reconnect behave the same everywhere. Secrets are never
in a config file: the password comes from an environment variable or a file named
here, read when connecting. Clients use paho's VERSION2 callbacks, a fixed client id
and a persistent session, so the broker keeps QoS 1 messages while a part is away.

A plant broker may run as an active/standby pair: ``brokers`` lists them in order,
and ``BrokerFailover`` (which every part uses to connect) moves a client to the next
broker of the list when the one it uses fails, round the list for as long as it runs.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from qcloop import wire
from qcloop.configfile import check_range, field_error
from qcloop.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    # Ordered "host:port" entries (IPv6 as "[::1]:1883"), the first preferred; empty: host and port above.
    brokers: tuple[str, ...] = ()
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
        self._check_brokers()
        if self.password_env and self.password_file:
            raise field_error("password_env", "set password_env or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise field_error("cert_file", "a client certificate needs both cert_file and key_file")

    def _check_brokers(self) -> None:
        if isinstance(self.brokers, str) or not isinstance(self.brokers, (tuple, list)):
            raise field_error("brokers", f'must be a list of "host:port" strings, got {self.brokers!r}')
        object.__setattr__(self, "brokers", tuple(self.brokers))  # a list given in code: keep it hashable
        seen: dict[tuple[str, int], int] = {}
        for i, entry in enumerate(self.brokers, 1):
            try:
                address = parse_broker(entry)
            except ValueError as exc:
                raise field_error("brokers", f"entry {i} {entry!r}: {exc}") from None
            if address in seen:
                raise field_error("brokers", f"entry {i} {entry!r}: the same broker as entry {seen[address]}")
            seen[address] = i

    @property
    def endpoints(self) -> tuple[tuple[str, int], ...]:
        """The brokers to use, in order, as (host, port): ``brokers``, or just (host, port) when it is empty."""
        if self.brokers:
            return tuple(parse_broker(entry) for entry in self.brokers)
        return ((self.host, self.port),)

    @property
    def broker_list(self) -> str:
        """The brokers as a person reads them, in order, for log lines and errors: "a:1883, b:1883"."""
        return ", ".join(format_broker(h, p) for h, p in self.endpoints)

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


def parse_broker(entry: object) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6-address]:port"`` -> (host, port); ValueError saying what is wrong."""
    if not isinstance(entry, str):
        raise ValueError(f'must be a "host:port" string, got {type(entry).__name__}')
    if not entry or entry != entry.strip() or any(ch.isspace() for ch in entry):
        raise ValueError('must be "host:port" with no spaces')
    if "://" in entry or "/" in entry:
        raise ValueError('must be "host:port", not a URL (TLS is the [mqtt].tls key)')
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or not host:
            raise ValueError('an IPv6 address goes in brackets: "[::1]:1883"')
        if not rest.startswith(":"):
            raise ValueError('needs a port after the address: "[::1]:1883"')
        port_text = rest[1:]
    else:
        host, sep, port_text = entry.rpartition(":")
        if not sep:
            raise ValueError('needs a port: "host:port", e.g. "broker-a:1883"')
        if not host:
            raise ValueError('needs a host before the port: "host:port"')
        if ":" in host:
            raise ValueError('an IPv6 address goes in brackets: "[::1]:1883"')
        if "[" in host or "]" in host:
            raise ValueError('an IPv6 address goes in brackets at the start: "[::1]:1883"')
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"the port must be a number, got {port_text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port must be 1..65535, got {port}")
    return host, port


def format_broker(host: str, port: int) -> str:
    """(host, port) as written in ``brokers``: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


class BrokerFailover:
    """Connects a paho client to the first broker of ``settings.endpoints`` and moves it along the list.

    A connection attempt that fails (no TCP or TLS connection, or a connection that closed before the broker
    accepted it) moves the client to the next broker, round the list for as long as it runs. A connection
    that was established and then lost is retried on the same broker first, so a broker that only restarts
    keeps its clients; when that retry fails, the client moves on. paho's own reconnect loop (loop_start)
    does the retrying, with its delay doubling from 0.2 s up to ``reconnect_max_s``.

    Create it after the part has set its on_connect and on_disconnect callbacks: ``start`` wraps them to
    learn whether each attempt was accepted, and owns on_connect_fail. ``current`` is the broker in use
    (or being tried), as "host:port".
    """

    def __init__(self, client: mqtt.Client, settings: BrokerSettings, name: str = "client"):
        self.client, self.settings, self.name = client, settings, name
        self.endpoints = settings.endpoints
        self.index = 0
        self.moves = 0
        self._accepted = False  # the connection now open (or last opened) got CONNACK 0
        self._failures = 0  # failed attempts since the last accepted one
        self._stopping = False

    @property
    def current(self) -> str:
        return format_broker(*self.endpoints[self.index])

    def start(self) -> BrokerFailover:
        # paho types these as any of its callback versions; the parts use VERSION2 (make_client).
        part_on_connect: Any = self.client.on_connect
        part_on_disconnect: Any = self.client.on_disconnect

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
            if reason_code == 0:
                if self._failures:
                    log.info(
                        "%s: connected to broker %s (brokers: %s)", self.name, self.current, self.settings.broker_list
                    )
                self._accepted, self._failures = True, 0
            if part_on_connect is not None:
                part_on_connect(client, userdata, flags, reason_code, props)

        def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
            if part_on_disconnect is not None:
                part_on_disconnect(client, userdata, flags, reason_code, props)
            accepted, self._accepted = self._accepted, False
            # reason 0 is a disconnect this process asked for; a refused or unanswered CONNECT is a failed attempt.
            if not accepted and reason_code != 0:
                self._failed(f"the connection closed before the broker accepted it ({reason_code})")

        self.client.on_connect = on_connect
        self.client.on_disconnect = on_disconnect
        self.client.on_connect_fail = lambda client, userdata: self._failed("cannot connect")
        host, port = self.endpoints[0]
        self.client.connect_async(host, port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def _failed(self, why: str) -> None:
        """Called on paho's network thread, with no connection open: point the client at the next broker."""
        self._failures += 1
        if self._stopping or len(self.endpoints) == 1:
            return
        failed = self.current
        self.index = (self.index + 1) % len(self.endpoints)
        self.moves += 1
        host, port = self.endpoints[self.index]
        # The host and port setters refuse while paho is in its CONNECTING state (the state an attempt fails
        # in); connect_async resets the client to NEW first, and the reconnect loop then uses the new address.
        self.client.connect_async(host, port, keepalive=self.settings.keepalive_s)
        if self._failures <= len(self.endpoints):  # one round is worth a warning each; after that, quieter
            log.warning(
                "%s: broker %s failed (%s); moving to %s (brokers: %s)",
                self.name,
                failed,
                why,
                self.current,
                self.settings.broker_list,
            )
        else:
            log.debug("%s: broker %s failed (%s); trying %s", self.name, failed, why, self.current)
        if self._failures == len(self.endpoints):
            log.error(
                "%s: no broker of %s accepts a connection; trying them in turn every %g s at most",
                self.name,
                self.settings.broker_list,
                self.settings.reconnect_max_s,
            )
