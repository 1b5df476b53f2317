"""The plant rig of ``qc bench plant``: brokers, bridges, edges, stations, reviewers and the trainer.

``PlantRig`` starts each part of a plant of several lines as a real process on loopback (the
plant broker with TLS, passwords and the plant ACL; per line a broker bridged to it through a
``qc.tcplink.TcpLink`` that can be cut, edges, a station scoped to the line and an oracle
reviewer; the trainer at the plant), and a ``Listener`` that records what reaches the plant.
The run and its figures are qc.bench_plant's.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
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

from qc import bridge
from qc.broker import MosquittoBroker, free_port, terminate
from qc.brokeradmin import TRAINER_USER, Camera, render_acl, set_password
from qc.pki import make_pki
from qc.stationdb import query_station
from qc.tcplink import TcpLink
from qcloop import wire
from qcloop.errors import QcError, WireError
from qcloop.mqttconn import BrokerSettings, make_client

PREFIX = wire.DEFAULT_PREFIX
T = wire.Topics(PREFIX)
#: The cameras' frames: the size of the line's real cameras, replayed from this many pre-rendered parts
#: (enough for the line's mix: about 10 % defects, 20 % lighting artefacts, 1 % uncertain).
FRAME = (1280, 1024)
PRERENDER = 120
#: Reviews per line per second the edges aim at: the audit rate is raised to reach it (the model alone
#: sends about 1 % of parts for review), so every line has reviews, and verdicts, every second.
REVIEWS_PER_LINE_S = 3.0
MODEL_REVIEW_SHARE = 0.011  # the built-in model's review share on the synthetic line (README, qc bench line)
#: Trigger to decision: the line's 50 ms leaves no room for twelve edges sharing a small machine's cores;
#: this bench measures delivery, so a part is late only when the machine is far behind.
DEADLINE_MS = 250.0
#: The bridge reconnects 1 s after a lost link, backing off to 5 s (production default 2 30): a
#: returned plant link is used within seconds.
RESTART_TIMEOUT = (1, 5)
OBSERVER_USER = "bench-observer"
SYS_TOPICS = ("$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent",
              "$SYS/broker/bytes/received", "$SYS/broker/bytes/sent")


class PlantBenchError(QcError):
    """The plant bench's options are wrong, a part did not start, or a condition was not reached in time."""


@dataclass(frozen=True)
class PlantOptions:
    lines: int = 3
    cameras: int = 4
    rate: float = 20.0
    duration: float = 60.0
    cut_after: float = 20.0
    cut: float = 20.0

    def __post_init__(self) -> None:
        if not 1 <= self.lines <= 20:
            raise PlantBenchError(f"--lines {self.lines}: give 1 to 20 lines")
        if not 1 <= self.cameras <= 16:
            raise PlantBenchError(f"--cameras {self.cameras}: give 1 to 16 cameras per line")
        if not 0 < self.rate <= 200:
            raise PlantBenchError(f"--rate {self.rate:g}: parts per second per camera, above 0 and at most 200")
        if self.duration < 2:
            raise PlantBenchError(f"--duration {self.duration:g}: at least 2 seconds")
        if self.cut < 0 or self.cut_after < 0:
            raise PlantBenchError(f"--cut-after {self.cut_after:g} and --cut {self.cut:g} must not be negative")
        if self.cut and self.cut_after + self.cut > self.duration:
            raise PlantBenchError(f"--cut-after {self.cut_after:g} + --cut {self.cut:g} must end within "
                                  f"--duration {self.duration:g}: the cut line must be producing while it is cut")

    @property
    def parts_per_camera(self) -> int:
        return max(1, round(self.rate * self.duration))

    @property
    def audit_rate(self) -> float:
        wanted = REVIEWS_PER_LINE_S / (self.cameras * self.rate) - MODEL_REVIEW_SHARE
        return round(min(1.0, max(0.01, wanted)), 4)

    def line_names(self) -> list[str]:
        return [f"line{i}" for i in range(1, self.lines + 1)]

    def camera_names(self) -> list[str]:
        return [f"cam{i}" for i in range(1, self.cameras + 1)]


# ---------------------------------------------------------------------- the plant's TLS
class TlsBroker(MosquittoBroker):
    """A MosquittoBroker whose one listener speaks TLS: ready when a TLS handshake against the CA succeeds."""

    ca_file: Path | None = None

    def ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as raw:
                with ctx.wrap_socket(raw, server_hostname=self.host):
                    return True
        except OSError:
            return False


# ---------------------------------------------------------------------- listening on a broker
class Listener:
    """A paho client on one broker that records the ids of verdicts and reviews, and $SYS counters.

    With ``persistent`` it keeps its session (fixed client id, clean session off): what arrives
    while it is away is queued for it, as for the trainer.
    """

    def __init__(self, settings: BrokerSettings, client_id: str, topics: list[str], persistent: bool = False):
        self.topics = topics
        self.verdicts: dict[str, tuple[str, float]] = {}  # review id -> (line, first arrival, epoch s)
        self.reviews: dict[str, tuple[str, float]] = {}
        self.verdict_copies: Counter = Counter()
        self.review_copies: Counter = Counter()
        self.undone = 0
        self.bad = 0
        self.sys: dict[str, int] = {}
        self.retained: dict[str, bytes] = {}
        self.changes: list[tuple[float, str, bytes]] = []  # (epoch s, topic, payload) of the retained topics
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = make_client(settings, client_id, clean_session=not persistent)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.settings = settings

    def start(self, timeout: float = 15.0) -> Listener:
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise PlantBenchError(f"a listener could not subscribe on {self.settings.host}:{self.settings.port} "
                                  f"within {timeout:g} s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, props) -> None:  # noqa: ANN001
        if reason_code == 0:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001 - paho callback
        topic, now = msg.topic, time.time()
        if topic.startswith("$SYS/"):
            try:
                self.sys[topic] = int(msg.payload)
            except ValueError:
                pass
            return
        if topic.endswith("/state") or "/train/status" in topic:
            self.retained[topic] = msg.payload
            self.changes.append((now, topic, msg.payload))
            return
        try:
            if topic.endswith("/verdict"):
                v = wire.Verdict.decode(msg.payload)
                with self._lock:
                    if v.undone:
                        self.undone += 1
                        return
                    self.verdict_copies[v.review_id] += 1
                    self.verdicts.setdefault(v.review_id, (topic.split("/")[-2], now))
            elif topic.endswith("/review"):
                header, _ = wire.decode_review(msg.payload)
                with self._lock:
                    self.review_copies[header.id] += 1
                    self.reviews.setdefault(header.id, (header.line, now))
        except WireError:
            self.bad += 1

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return len(self.verdicts), len(self.reviews)

    def of_line(self, line: str) -> tuple[dict[str, float], dict[str, float]]:
        """(verdict review id -> first arrival, review id -> first arrival) of one line."""
        with self._lock:
            return ({k: t for k, (ln, t) in self.verdicts.items() if ln == line},
                    {k: t for k, (ln, t) in self.reviews.items() if ln == line})


def sys_rates(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Per-second rates of the $SYS counters between two snapshots."""
    names = {"$SYS/broker/publish/messages/received": "publish_in_per_s",
             "$SYS/broker/publish/messages/sent": "publish_out_per_s",
             "$SYS/broker/bytes/received": "bytes_in_per_s", "$SYS/broker/bytes/sent": "bytes_out_per_s"}
    return {short: round((after.get(t, 0) - before.get(t, 0)) / max(seconds, 1e-9), 1) for t, short in names.items()}


# ---------------------------------------------------------------------- the oracle's ground truth
class PartTruths:
    """Ground truth for the parts of one line's synthetic cameras, for qc.demo_review.AutoReviewer.

    Each camera replays ``PRERENDER`` parts of its generator (seed as in its config): part number
    n (the last field of the part id) is frame (n - 1) mod PRERENDER. A frame is rendered here
    when a review of it is first asked about.
    """

    def __init__(self, seeds: dict[str, int]):
        self.seeds = seeds
        self._generators: dict[str, Any] = {}
        self._truth: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def truth(self, part_id: str):  # noqa: ANN201 - hardware.base.PartTruth | None
        camera, _, rest = part_id.partition("-")
        try:
            number = int(rest.rsplit("-", 1)[-1])
        except ValueError:
            return None
        if camera not in self.seeds:
            return None
        key = (camera, (number - 1) % PRERENDER)
        with self._lock:
            if key not in self._truth:
                if camera not in self._generators:
                    from hardware.synthetic import PartGenerator

                    self._generators[camera] = PartGenerator(seed=self.seeds[camera], width=FRAME[0],
                                                             height=FRAME[1])
                self._truth[key] = self._generators[camera].render(key[1])[1]
            return self._truth[key]


# ---------------------------------------------------------------------- one line
@dataclass
class Line:
    name: str
    index: int
    work: Path
    broker: MosquittoBroker | None = None
    link: TcpLink | None = None
    listener: Listener | None = None
    station: subprocess.Popen | None = None
    station_port: int = 0
    login: tuple[str, str] = ("", "")
    reviewer: Any = None
    edges: dict[str, subprocess.Popen] = field(default_factory=dict)
    edge_ports: dict[str, int] = field(default_factory=dict)

    @property
    def station_db(self) -> Path:
        return self.work / "station" / "data" / "station.db"

    def journal(self, camera: str) -> Path:
        return self.work / f"edge-{camera}" / "data" / "decisions.jsonl"

    def seed(self, camera: str) -> int:
        return 100 * self.index + int(camera.removeprefix("cam"))

    def query(self, sql: str, *params: object) -> list[tuple]:
        return query_station(self.station_db, sql, *params, error=PlantBenchError)


# ---------------------------------------------------------------------- the plant
class PlantRig:
    """Starts and stops every part of the plant; everything lives under ``work``."""

    def __init__(self, work: Path, options: PlantOptions, say: Callable[[str], None] = lambda msg: None):
        self.work, self.o, self.say = Path(work), options, say
        self.lines = [Line(name, i, self.work / name) for i, name in enumerate(options.line_names(), 1)]
        self.plant: TlsBroker | None = None
        self.observer: Listener | None = None
        self.trainer: subprocess.Popen | None = None
        self.secrets = self.work / "secrets"
        self._procs: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ the plant broker
    def plant_settings(self, user: str) -> BrokerSettings:
        return BrokerSettings(host="127.0.0.1", port=self.plant.port, username=user,
                              password_file=self.secrets / f"{user}.secret", tls=True, ca_file=self.ca,
                              reconnect_max_s=1.0, keepalive_s=10)

    def _password(self, passwd: Path, user: str) -> str:
        password = secrets.token_urlsafe(18)
        set_password(passwd, user, password)
        path = self.secrets / f"{user}.secret"
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return password

    def start_plant(self) -> None:
        plant_dir = self.work / "plant"
        plant_dir.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki = make_pki(self.work / "pki")  # a CA made for this run
        self.ca, cert, key = pki.ca_cert, pki.server_cert, pki.server_key
        cameras = [Camera(line.name, cam) for line in self.lines for cam in self.o.camera_names()]
        acl = render_acl(cameras, PREFIX, stations={f"station-{line.name}": [line.name] for line in self.lines})
        acl += "".join(bridge.render_bridge_acl(line.name, PREFIX) for line in self.lines)
        acl += ("\n# The bench's observer: reads what reaches the plant, and the broker's own counters.\n"
                f"user {OBSERVER_USER}\ntopic read {T.all_verdicts()}\ntopic read {T.all_reviews()}\n"
                f"topic read {T.train_status()}/#\ntopic read $SYS/#\n")
        (plant_dir / "acl").write_text(acl)
        passwd = plant_dir / "passwd"
        self.bridge_passwords = {line.name: self._password(passwd, bridge.bridge_user(line.name))
                                 for line in self.lines}
        for user in (TRAINER_USER, OBSERVER_USER):
            self._password(passwd, user)
        self.plant = TlsBroker(plant_dir, persistence=True, anonymous=False, extra_config=[
            f"cafile {self.ca}", f"certfile {cert}", f"keyfile {key}", f"tls_version {bridge.TLS_VERSION}",
            f"password_file {passwd}", f"acl_file {plant_dir / 'acl'}", "sys_interval 1",
            f"max_packet_size {bridge.MAX_PACKET_BYTES}"])
        self.plant.ca_file = self.ca
        self.plant.start(timeout=15.0)
        self.say(f"plant broker on 127.0.0.1:{self.plant.port} (TLS, users, ACL)")
        # Subscribed before anything is published, with a persistent session: every verdict and review
        # that reaches the plant is kept for it, as for the trainer.
        self.observer = Listener(self.plant_settings(OBSERVER_USER), "qc-bench-plant-observer",
                                 [T.all_verdicts(), T.all_reviews(), f"{T.train_status()}/#", *SYS_TOPICS],
                                 persistent=True).start()

    def start_trainer(self) -> None:
        from training.release import keygen

        folder = self.work / "trainer"
        folder.mkdir(parents=True, exist_ok=True)
        private, public = folder / "keys" / "trainer.key", folder / "keys" / "trainer.pub"
        private.parent.mkdir(exist_ok=True)
        keygen(private, public)
        cfg = folder / "serve.toml"
        cfg.write_text(
            "# written by qc bench plant: the plant's trainer, retrain triggers off (it only receives)\n"
            f"[data]\ndir = {json.dumps(str(folder / 'data'))}\n\n[station]\nurl = \"\"\n\n"
            f"[mqtt]\nhost = \"127.0.0.1\"\nport = {self.plant.port}\nclient_id = \"qc-plant-trainer\"\n"
            f"lines = {json.dumps(self.o.line_names())}\nusername = \"{TRAINER_USER}\"\n"
            f"password_file = {json.dumps(str(self.secrets / f'{TRAINER_USER}.secret'))}\ntls = true\n"
            f"ca_file = {json.dumps(str(self.ca))}\nreconnect_max_s = 1\n\n"
            f"[keys]\nprivate = {json.dumps(str(private))}\npublic = {json.dumps(str(public))}\n\n"
            "[triggers]\nverdicts = 0\nevery_hours = 0\non_request = false\n\n"
            "[serve]\nhost = \"127.0.0.1\"\nport = 0\n")
        self.trainer = self._spawn(folder, "trainer", ["train", "serve", "--config", str(cfg)])
        self.wait(lambda: any("/train/status" in t for t in self.observer.retained), 120,
                  "the trainer's status at the plant (it connected)", self.trainer, folder / "trainer.log")
        self.say("trainer connected to the plant broker")

    # ------------------------------------------------------------------ a line's broker and bridge
    def start_line_broker(self, line: Line) -> None:
        line.work.mkdir(parents=True, exist_ok=True)
        line.link = TcpLink(("127.0.0.1", self.plant.port)).start()
        conf = bridge.render_bridge_conf(line.name, "127.0.0.1", line.link.port, self.ca,
                                         self.bridge_passwords[line.name], PREFIX, RESTART_TIMEOUT)
        line.broker = MosquittoBroker(line.work / "broker", persistence=True,
                                      extra_config=["sys_interval 1", *conf.splitlines()])
        line.broker.start()
        os.chmod(line.broker.config_path, 0o600)  # it holds the bridge user's password
        line.listener = Listener(BrokerSettings(host=line.broker.host, port=line.broker.port, reconnect_max_s=1.0),
                                 f"qc-bench-plant-{line.name}", [bridge.state_topic(line.name, PREFIX), *SYS_TOPICS]
                                 ).start()

    def bridge_up(self, line: Line) -> bool:
        return line.listener.retained.get(bridge.state_topic(line.name, PREFIX)) == b"1"

    # ------------------------------------------------------------------ a line's station
    def start_station(self, line: Line) -> None:
        from station_ui import accounts
        from station_ui.config import load_config
        from station_ui.store import Store

        folder = line.work / "station"
        folder.mkdir(parents=True, exist_ok=True)
        line.station_port = free_port()
        cfg = folder / "station.toml"
        cfg.write_text(
            f'[station]\nname = "station-{line.name}"\ndata_dir = "data"\nlines = ["{line.name}"]\n\n'
            f'[mqtt]\nhost = "{line.broker.host}"\nport = {line.broker.port}\nclient_id = "qc-station-{line.name}"\n'
            "reconnect_max_s = 1\nkeepalive_s = 5\n\n"
            f'[web]\nhost = "127.0.0.1"\nport = {line.station_port}\nthreads = 8\n')
        store = Store(load_config(cfg).db_path)
        try:
            line.login = ("oracle", secrets.token_urlsafe(12))
            accounts.add_user(store, *line.login[:1], "engineer", line.login[1], production=False)
        finally:
            store.close()
        line.station = self._spawn(folder, "station", ["station", "run", "--config", str(cfg)])

    def station_healthy(self, line: Line) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{line.station_port}/healthz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start_reviewer(self, line: Line) -> None:
        from qc.demo_review import AutoReviewer

        seeds = {cam: line.seed(cam) for cam in self.o.camera_names()}
        line.reviewer = AutoReviewer(f"http://127.0.0.1:{line.station_port}", line.login, PartTruths(seeds),
                                     idle_wait_s=0.2).start()

    # ------------------------------------------------------------------ a line's edges
    def start_edge(self, line: Line, camera: str) -> None:
        folder = line.work / f"edge-{camera}"
        folder.mkdir(parents=True, exist_ok=True)
        port = line.edge_ports[camera] = free_port()
        cfg = folder / "edge.toml"
        cfg.write_text(
            f'[edge]\nline = "{line.name}"\ncamera = "{camera}"\ndata_dir = "data"\njournal = true\n\n'
            "[model]\nseed_builtin = true\nwarmup = 1\n\n"
            f"[decision]\naudit_rate = {self.o.audit_rate}\ndeadline_ms = {DEADLINE_MS}\nqueue_size = 16\n\n"
            f'[camera]\ntype = "synthetic"\nseed = {line.seed(camera)}\nwidth = {FRAME[0]}\nheight = {FRAME[1]}\n'
            f"prerender = {PRERENDER}\n\n"
            f'[trigger]\ntype = "software"\nrate_hz = {self.o.rate}\n\n'
            "[outbox]\nresend_after_s = 10\nmax_in_flight = 64\n\n"
            f'[mqtt]\nhost = "{line.broker.host}"\nport = {line.broker.port}\nkeepalive_s = 5\n'
            "reconnect_max_s = 1\npublish_results = true\nstatus_every_s = 1\n\n"
            f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n')
        line.edges[camera] = self._spawn(folder, "edge", ["edge", "run", "--config", str(cfg), "--parts",
                                                          str(self.o.parts_per_camera), "--drain", "600", "--quiet"])

    def edge_connected(self, line: Line, camera: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{line.edge_ports[camera]}/healthz", timeout=2) as r:
                body = r.read()
        except urllib.error.HTTPError as err:
            body = err.read()
        except (urllib.error.URLError, OSError):
            return False
        try:
            return json.loads(body).get("broker_connected") is True
        except ValueError:
            return False

    # ------------------------------------------------------------------ processes and waiting
    def _spawn(self, folder: Path, name: str, args: list[str]) -> subprocess.Popen:
        with (folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "qc.cli", *args], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder)
        self._procs.append(proc)
        return proc

    def wait(self, cond: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
        """Poll cond until it holds; fail naming what was awaited (with the log of a process that died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
                raise PlantBenchError(f"waiting for {what}: the process exited with {proc.returncode}: {tail}")
            time.sleep(0.05)  # poll interval while waiting on readiness, not a fixed wait
        if not cond():
            raise PlantBenchError(f"{what} did not happen within {timeout:.0f} s (work dir {self.work})")

    def close(self) -> None:
        for line in self.lines:
            if line.reviewer is not None:
                line.reviewer.stop()
        for proc in reversed(self._procs):
            terminate(proc, 30)
        for line in self.lines:
            if line.listener is not None:
                line.listener.stop()
            if line.link is not None:
                line.link.close()
            if line.broker is not None:
                line.broker.stop()
        if self.observer is not None:
            self.observer.stop()
        if self.plant is not None:
            self.plant.stop()


# ---------------------------------------------------------------------- the run
