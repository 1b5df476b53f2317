"""The fault rig: a persistent mosquitto, an edge process and a station process, plus the counting.

Everything is written under one work directory (broker/, edge/, station/, with each
process's log). Readiness is waited on, never slept for: the broker's CONNACK
(MosquittoBroker.start), the edge's /healthz saying it reached the broker, rows in
the station's database.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.journal import JournalSummary, read_journal
from qc.broker import MosquittoBroker, free_port, terminate
from qc.stationdb import query_station
from qcloop.errors import QcError

LINE, CAMERA = "faults", "cam1"
STATION_CLIENT_ID = "qc-faults-station"
#: A real CNN (input size, width, depth) that takes well over the line's period on one inference
#: thread (about 40 ms against 25 ms at 40 parts/s on this two-core box): an edge given a model it
#: cannot run at line rate, so its inspection queue overflows (queue-full) every few parts while most
#: parts are still decided by the model. A model only just slower than the period (the earlier 30 ms
#: one) let a quiet run finish without a single queue-full part.
SLOW_MODEL = ((640, 640), 64, 3)


class FaultRigError(QcError):
    """A part of the fault rig did not start, or a condition was not reached in time."""


@dataclass(frozen=True)
class RigOptions:
    rate_hz: float = 40.0  # parts per second on the synthetic line; each part is one review
    resend_after_s: float = 2.0  # the edge resends an unacknowledged review after this
    max_in_flight: int = 64
    max_queued_messages: int | None = None  # the broker's per-client queue (None: the rig's large default)
    reconnect_max_s: float = 1.0
    deadline_ms: float = 10000.0  # trigger to decision; far beyond the line's needs unless a scenario tightens it
    queue_size: int = 64  # frames waiting for inference
    slow_model: bool = False  # run a model slower than the line's period (SLOW_MODEL) instead of the built-in one


@dataclass(frozen=True)
class Counts:
    sent: frozenset
    stored_ids: frozenset
    rows: int
    parts_with_several_reviews: int
    journal: JournalSummary

    @property
    def stored(self) -> int:
        return len(self.stored_ids)

    @property
    def lost(self) -> int:
        return len(self.sent - self.stored_ids)

    @property
    def duplicates(self) -> int:
        return (self.rows - self.stored) + self.parts_with_several_reviews + len(self.journal.double_decided)

    @property
    def unknown(self) -> int:
        return len(self.stored_ids - self.sent)

    @property
    def unwritten(self) -> int:
        return len(self.journal.promised - self.sent)


@dataclass
class FaultRig:
    work: Path
    options: RigOptions = field(default_factory=RigOptions)
    say: Callable[[str], None] = lambda msg: None
    broker: MosquittoBroker | None = None
    edge: subprocess.Popen | None = None
    station: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.work = Path(self.work)
        for d in ("broker", "edge", "station"):
            (self.work / d).mkdir(parents=True, exist_ok=True)
        self.edge_metrics_port = free_port()
        self.station_port = free_port()
        self.plc_port: int | None = None  # a Modbus PLC the edge actuates (qc.faults.plc), when a scenario needs one
        self.plc: Any = None
        self._runs = Counter()

    # ------------------------------------------------------------------ paths
    @property
    def journal_path(self) -> Path:
        return self.work / "edge" / "data" / "decisions.jsonl"

    @property
    def station_db(self) -> Path:
        return self.work / "station" / "data" / "station.db"

    # ------------------------------------------------------------------ broker
    def start_broker(self) -> MosquittoBroker:
        extra = ["sys_interval 1"]  # $SYS/broker/publish/messages/dropped, once a second
        if self.options.max_queued_messages is not None:
            extra.append(f"max_queued_messages {self.options.max_queued_messages}")  # the last value wins
        if self.broker is None:
            self.broker = MosquittoBroker(self.work / "broker", persistence=True, extra_config=extra)
        return self.broker.start()

    # ------------------------------------------------------------------ station
    def write_station_config(self) -> Path:
        b = self.broker
        path = self.work / "station" / "station.toml"
        path.write_text(
            '[station]\nname = "faults"\ndata_dir = "data"\n\n'
            f'[mqtt]\nhost = "{b.host}"\nport = {b.port}\nclient_id = "{STATION_CLIENT_ID}"\n'
            f"reconnect_max_s = {self.options.reconnect_max_s}\nkeepalive_s = 5\n\n"
            f'[web]\nhost = "127.0.0.1"\nport = {self.station_port}\nthreads = 4\n')
        return path

    def start_station(self) -> subprocess.Popen:
        cfg = self.write_station_config()
        self.station = self._spawn("station", ["station", "run", "--config", str(cfg)])
        return self.station

    # ------------------------------------------------------------------ edge
    def write_edge_config(self) -> Path:
        b, o = self.broker, self.options
        path = self.work / "edge" / "edge.toml"
        path.write_text(
            f'[edge]\nline = "{LINE}"\ncamera = "{CAMERA}"\ndata_dir = "data"\njournal = true\n\n'
            f"[model]\nseed_builtin = {'false' if o.slow_model else 'true'}\nwarmup = 1\n\n"
            # Every score is in the uncertain band (HOLD, review); a saturated score of 1.0 is
            # REJECT, and audit_rate 1 sends that for review too: one review per part.
            "[decision]\npass_below = 0.0\nreject_above = 1.0\naudit_rate = 1.0\n"
            f"deadline_ms = {o.deadline_ms}\nqueue_size = {o.queue_size}\n\n"
            "[camera]\ntype = \"synthetic\"\nseed = 3\n\n"
            f"[trigger]\ntype = \"software\"\nrate_hz = {o.rate_hz}\n\n"
            f"[outbox]\nresend_after_s = {o.resend_after_s}\nmax_in_flight = {o.max_in_flight}\n"
            "queue_size = 256\n\n"
            f'[mqtt]\nhost = "{b.host}"\nport = {b.port}\nkeepalive_s = 5\n'
            f"reconnect_max_s = {o.reconnect_max_s}\npublish_results = false\nstatus_every_s = 1\n\n"
            f'[metrics]\nhost = "127.0.0.1"\nport = {self.edge_metrics_port}\n'
            + ("" if self.plc_port is None else
               f'\n[actuator]\ntype = "modbus"\nhost = "127.0.0.1"\nport = {self.plc_port}\nreject_coil = 0\n'
               "result_register = 4\nready_coil = 5\nack_coil = 6\ntimeout_s = 0.2\nhandshake_timeout_s = 0.5\n"))
        return path

    def install_slow_model(self) -> None:
        """Put SLOW_MODEL in the edge's registry as its live model (the registry trusts what is on its
        disk when the edge has no public key, as the rig's edge has not)."""
        from models.manifest import InputSpec, OutputSpec, Thresholds, make_manifest
        from models.onnx_build import tiny_cnn_bytes
        from models.registry import Registry

        registry = Registry(self.work / "edge" / "data" / "models")
        if registry.current_version() is not None:
            return  # a restarted edge keeps its model
        (h, w), width, depth = SLOW_MODEL
        data = tiny_cnn_bytes(input_hw=(h, w), width=width, depth=depth)
        manifest = make_manifest("0.9.0-slow", data, InputSpec("image", (1, 1, h, w), colour="gray"),
                                 Thresholds(0.3, 0.7), output=OutputSpec("score"))
        registry.add(manifest, data)
        registry.set_current(manifest.version, reason="fault rig: a model slower than the line")

    def start_edge(self, parts: int) -> subprocess.Popen:
        if self.options.slow_model:
            self.install_slow_model()
        cfg = self.write_edge_config()
        self.edge = self._spawn("edge", ["edge", "run", "--config", str(cfg), "--parts", str(parts),
                                         "--drain", "600", "--quiet"])
        return self.edge

    def edge_health(self) -> dict | None:
        """The edge's /healthz answer (also while it answers 503, naming its alarms); None when it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.edge_metrics_port}/healthz", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:
            try:
                return json.loads(err.read())
            except ValueError:
                return None
        except (urllib.error.URLError, OSError, ValueError):
            return None  # not up yet

    def wait_edge_connected(self, timeout: float = 60.0) -> None:
        self.wait(lambda: (self.edge_health() or {}).get("broker_connected") is True, timeout,
                  "the edge to reach the broker", proc=self.edge)

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self._runs[name] += 1
        log = (self.work / name / f"{name}-{self._runs[name]}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "qc.cli", *args], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.work / name)
        log.close()
        self.say(f"started {name} (pid {proc.pid})")
        return proc

    def pause_station(self) -> None:
        self.station.send_signal(signal.SIGSTOP)

    def resume_station(self) -> None:
        if self.station is not None and self.station.poll() is None:
            self.station.send_signal(signal.SIGCONT)

    @staticmethod
    def kill(proc: subprocess.Popen) -> int:
        """SIGKILL, as a crash would; returns the exit status (-9)."""
        proc.send_signal(signal.SIGKILL)
        return proc.wait(10)

    @staticmethod
    def terminate(proc: subprocess.Popen | None, timeout: float = 30.0) -> int | None:
        return terminate(proc, timeout)

    def close(self) -> None:
        self.resume_station()  # a paused station would not act on SIGTERM
        self.terminate(self.edge)
        self.terminate(self.station)
        if self.broker:
            self.broker.stop()

    def log_tail(self, name: str, n: int = 1500) -> str:
        path = self.work / name / f"{name}-{self._runs[name]}.log"
        try:
            return path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ waiting
    def wait(self, cond: Callable[[], object], timeout: float, what: str,
             proc: subprocess.Popen | None = None, interval: float = 0.05) -> None:
        """Poll cond until it holds; fail naming what was awaited (and the process's log if it died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if proc is not None and proc.poll() is not None:
                name = "edge" if proc is self.edge else "station"
                raise FaultRigError(f"waiting for {what}: the {name} exited with {proc.returncode}: "
                                    f"{self.log_tail(name)}")
            time.sleep(interval)
        if not cond():
            raise FaultRigError(f"{what} did not happen within {timeout:.0f} s (work dir {self.work})")

    # ------------------------------------------------------------------ counting
    def stored_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT id FROM reviews")}

    def count(self) -> Counts:
        journal = read_journal(self.journal_path)
        rows = self._query("SELECT id, part_id FROM reviews")
        per_part = Counter(part for _, part in rows)
        stored = frozenset(r[0] for r in rows)
        # A SIGKILL can land after a review is durable (and sent) but before its journal line is
        # written: a stored review the journal promised at actuation was sent all the same.
        sent = journal.stored | (stored & journal.promised)
        return Counts(sent=sent, stored_ids=stored, rows=len(rows),
                      parts_with_several_reviews=sum(1 for n in per_part.values() if n > 1), journal=journal)

    def _query(self, sql: str) -> list[tuple]:
        return query_station(self.station_db, sql, error=FaultRigError)


class DroppedCounter:
    """Follows the broker's $SYS count of messages dropped at queue limits (reset by a broker restart)."""

    TOPIC = "$SYS/broker/publish/messages/dropped"

    def __init__(self, broker: MosquittoBroker):
        import paho.mqtt.client as mqtt

        self.value = 0
        self.seen = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="qc-faults-sys", clean_session=True)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(self.TOPIC, qos=0)
        c.on_message = self._on_message
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001 - paho callback
        try:
            self.value = int(msg.payload)
        except ValueError:
            return
        self.seen.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
