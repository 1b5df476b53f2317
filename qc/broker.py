"""Start and stop a private Mosquitto broker on a free loopback port.

Used by the tests, the benchmarks and the demo, so none of them depends on a broker
that happens to be running. The broker gets a config file written here; readiness
is an MQTT CONNECT answered with CONNACK, not a sleep.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from qcloop.errors import QcError


class BrokerError(QcError):
    """The broker could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def mqtt_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT 3.1.1 CONNECT gets a CONNACK (any return code) from host:port."""
    client_id = b"qc-probe"
    var_header = b"\x00\x04MQTT\x04\x02\x00\x05"  # protocol name, level 4, clean session, keepalive 5
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var_header + payload
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(packet)
            reply = s.recv(4)
            s.sendall(b"\xe0\x00")  # DISCONNECT
            return len(reply) >= 2 and reply[0] == 0x20
    except OSError:
        return False


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM a child process and wait; SIGKILL it if it does not stop in time. Returns its exit status."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


@dataclass
class LocalBroker:
    """A broker child process on a loopback port, with its own working directory."""

    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is saved on the way out."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class MosquittoBroker(LocalBroker):
    """A mosquitto process with its own config, data dir and log.

    ``extra_config`` lines are appended to the generated config (listeners, ACLs,
    persistence); ``persistence=True`` keeps queued QoS 1 messages across a restart.
    """

    persistence: bool = False
    extra_config: list[str] = field(default_factory=list)
    anonymous: bool = True
    kind: str = "mosquitto"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "message_size_limit 0",
        ]
        if self.persistence and hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto drops to the 'mosquitto' user, which cannot write the
            # persistence file into our directory: it would silently run without persistence.
            lines.append("user root")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        self.config_path.write_text("\n".join(lines + list(self.extra_config)) + "\n")

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        exe = find_mosquitto()
        if exe is None:
            raise BrokerError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(self.config_path)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.02)  # poll interval while waiting on readiness, not a fixed wait
        self.stop()
        raise BrokerError(f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout}s: "
                          f"{self.log_tail()}")

    def ready(self) -> bool:
        """Whether the broker takes clients now (an MQTT ping; a TLS listener answers a handshake instead)."""
        return mqtt_ping(self.host, self.port, timeout=0.5)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temporary_broker(**kwargs: object) -> MosquittoBroker:
    """A broker in a fresh temporary directory (caller starts and stops it)."""
    return MosquittoBroker(Path(tempfile.mkdtemp(prefix="qc-broker-")), **kwargs)  # type: ignore[arg-type]
