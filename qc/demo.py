"""The demo's orchestration: start the parts in order, show status, stop them in reverse.

Parts, as in a plant, but on one machine: a broker (Mosquitto, or the embedded
Python broker), the review station (in this process), the retraining server (a
child process at lower CPU priority, so training never starves the line), and an
edge on a simulated line (in this process). With ``--auto-review`` an oracle
reviewer answers the station's queue from the generator's ground truth.
Everything is written under one data directory; a second run reuses the keys,
the logins and the models of the first.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge.cli import LiveStatus
from qc.broker import terminate
from qc.pybroker import start_local_broker
from qcloop import wire

EXAMPLE_EDGE = Path(__file__).resolve().parent.parent / "config" / "edge.example.toml"
TOKEN_ENV = "QC_DEMO_STATION_TOKEN"
#: Parts per second on the simulated line: slow enough for one person to follow the queue while the
#: built-in model holds a share of the parts; an oracle takes more.
HUMAN_RATE, AUTO_REVIEW_RATE = 2.0, 10.0
#: ``--until compared`` stops once the newest model has decided as many parts as the one before, or this many.
COMPARE_PARTS = 2000
#: Trigger to decision on the demo's edge: the line's 50 ms, with room for the trainer sharing its cores.
DEMO_DEADLINE_MS = 250.0


#: The live status line while the demo runs (edge.cli.LiveStatus): messages and log lines clear it first.
_live: LiveStatus | None = None


def say(msg: str) -> None:
    if _live is not None:
        _live.clear()
    print(f"demo: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from qcloop.stopping import stop_on_signals

    if args.rate is None:
        args.rate = AUTO_REVIEW_RATE if args.auto_review else HUMAN_RATE
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    stop = stop_on_signals()
    started: list[tuple[str, Callable[[], None]]] = []  # stopped in reverse order, whatever happens
    try:
        broker = start_local_broker(data / "broker", port=args.mqtt_port, prefer=args.broker)
        started.append(("broker", broker.stop))
        say(f"broker: {broker.kind} on {broker.host}:{broker.port}")

        station, login, token = start_station(data / "station", broker, args.web_port)
        started.append(("station", station.stop))
        say(f"review station: {station.url}")
        say(f"  log in as {login[0]!r} with password {login[1]!r} (kept in {data / 'station' / 'demo-login.txt'})")

        keys = make_keys(data / "keys")
        trainer = None
        if args.retrain_after > 0:
            trainer = Trainer(data / "trainer", broker, station.url, token, keys, args).start()
            started.append(("trainer", trainer.stop))
            say(f"retraining server: retrains after {args.retrain_after} verdicts (log: {trainer.log_path})")

        edge, book, figures = start_edge(data, broker, keys, args)
        started.append(("camera", book.close))
        started.append(("edge", edge.stop))
        say(f"edge {edge.cfg.edge.line}/{edge.cfg.edge.camera}: simulated line at {args.rate:g} parts/s, "
            f"model {edge.detector.version}")
        if args.metrics_port:
            say(f"edge metrics: http://127.0.0.1:{args.metrics_port}/metrics  health: /healthz")

        reviewer = None
        if args.auto_review:
            from qc.demo_review import AutoReviewer

            reviewer = AutoReviewer(station.url, login, book).start()
            started.append(("auto-reviewer", reviewer.stop))
            say("auto-review: an oracle answers the queue from the generator's ground truth")
        modes = None
        if args.modes:
            modes = ModeSwitcher(station, edge, _parse_modes(args.modes), args.mode_every, args.hold_time).start()
            started.append(("mode switcher", modes.stop))
            say(f"station: the line's operating mode switches every {args.mode_every:g} s: "
                f"{' -> '.join(modes.modes)}")
        say(f"data under {data}; Ctrl-C stops everything")
        watch = Status(edge, station, trainer, reviewer, args, figures)
        watch.modes = modes
        watch.run_until(stop, args.duration)
        for line in watch.summary().splitlines():
            say(line)
    finally:
        failed = []
        for name, stop_part in reversed(started):
            try:
                stop_part()
            except Exception as exc:  # one part failing to stop must not leave the others running
                say(f"{name} did not stop cleanly: {exc}")
                failed.append(name)
        if started and not failed:
            # After an error, qc prints it next; "stopped cleanly" would read as if nothing had gone wrong.
            say("stopped the parts it had started" if sys.exc_info()[0] else "stopped cleanly")
    return 0


# ------------------------------------------------------------------ the parts
def start_station(data: Path, broker, port: int):  # noqa: ANN001, ANN201
    """The station on the demo's broker, with a demo engineer and an API token for the trainer,
    both made once per data dir."""
    from station_ui import accounts
    from station_ui.config import config_for
    from station_ui.server import StationServer
    from station_ui.store import Store

    data.mkdir(parents=True, exist_ok=True)
    cfg = config_for(data, mqtt={"host": broker.host, "port": broker.port, "client_id": "qc-demo-station"},
                     web={"port": port})
    pin_file, token_file = data / "demo-login.txt", data / "demo-token.txt"
    store = Store(cfg.db_path)
    try:
        if not pin_file.exists():
            name, pin = "demo", secrets.token_urlsafe(9)  # an engineer: review, dashboard and history
            accounts.add_user(store, name, "engineer", pin, production=False)
            _write_secret(pin_file, f"{name} {pin}\n")
        if not token_file.exists():
            _write_secret(token_file, accounts.add_token(store, f"demo-trainer-{secrets.token_hex(3)}") + "\n")
    finally:
        store.close()
    name, pin = pin_file.read_text().split()
    return StationServer(cfg).start(), (name, pin), token_file.read_text().strip()


def _write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text)


def make_keys(folder: Path) -> tuple[Path, Path]:
    from training.release import keygen

    private, public = folder / "trainer.key", folder / "trainer.pub"
    if not private.exists():
        folder.mkdir(parents=True, exist_ok=True)
        keygen(private, public)
    return private, public


def start_edge(data: Path, broker, keys: tuple[Path, Path], args: argparse.Namespace):  # noqa: ANN001, ANN201
    from edge.config import load_config
    from edge.service import EdgeService
    from hardware.factory import make_camera
    from qc.demo_figures import LineFigures
    from qc.demo_review import TruthBook

    cfg = load_config(EXAMPLE_EDGE)
    cfg = replace(cfg,
                  edge=replace(cfg.edge, data_dir=data / "edge"),
                  model=replace(cfg.model, public_key=keys[1]),
                  # The demo retrains on the cores the edge inspects on (a plant's trainer has its own
                  # server): at the line's 50 ms, 156 of 4,202 parts failed safe as late while it trained.
                  decision=replace(cfg.decision, audit_rate=args.audit_rate, deadline_ms=DEMO_DEADLINE_MS),
                  trigger=replace(cfg.trigger, rate_hz=args.rate),
                  mqtt=replace(cfg.mqtt, host=broker.host, port=broker.port),
                  metrics=replace(cfg.metrics, port=args.metrics_port))
    if args.images is not None:
        # Real photographs as the line: mixed ok/def, with the synthetic line's lighting artefacts, and
        # the whole photograph as the part (the built-in model's ROI is the synthetic frame's).
        camera, (width, height) = photo_line(args.images, cfg.camera.artefact_rate, cfg.camera.seed)
        cfg = replace(cfg, model=replace(cfg.model, roi=(0, 0, width, height)))
    else:
        camera = make_camera(cfg.camera)
    book = TruthBook(camera, data / "edge" / "truth.jsonl")
    edge = EdgeService(cfg, camera=book, max_parts=args.parts)  # a camera passed in stays ours to close
    edge.pipeline.review_listeners.append(book.on_review)
    figures = LineFigures(book)
    edge.pipeline.listeners.append(figures.on_decision)
    edge.start()
    return edge, book, figures


def photo_line(folder: Path, artefact_rate: float, seed: int):  # noqa: ANN201 (a Camera and the photos' size)
    """A camera that plays a labelled folder of photographs (``ok/`` and ``def/`` anywhere below it) in a
    new random order each pass, with lighting artefacts on ``artefact_rate`` of them; and the photos' size.
    Refused, naming the cause, unless both labels are there and every photo has one size."""
    import cv2

    from hardware.cameras import ArtefactCamera, FolderCamera
    from hardware.errors import CameraError

    try:
        photos = FolderCamera(folder, shuffle=seed)
    except CameraError as exc:
        raise SystemExit(f"qc demo --images: {exc}") from None
    labels = {p.parent.name.lower().split("_")[0] for p in photos.files}
    if not {"ok", "def"} <= labels:
        raise SystemExit(f"qc demo --images: {folder} needs labelled photos in ok/ and def/ folders (the "
                         f"oracle reviewer answers from them); found folders {sorted(labels)}")
    sizes: dict[tuple[int, int], Path] = {}
    for path in photos.files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SystemExit(f"qc demo --images: unreadable image file {path}")
        sizes.setdefault((image.shape[1], image.shape[0]), path)
        if len(sizes) > 1:
            (a, pa), (b, pb) = sizes.items()
            raise SystemExit(f"qc demo --images: the photos must share one size: {pa} is {a[0]}x{a[1]}, "
                             f"{pb} is {b[0]}x{b[1]}")
    return ArtefactCamera(photos, rate=artefact_rate, seed=seed), next(iter(sizes))


class Trainer:
    """``qc train serve`` in a child process, configured for the demo's broker, station and keys."""

    def __init__(self, folder: Path, broker, station_url: str, token: str, keys: tuple[Path, Path],  # noqa: ANN001
                 args: argparse.Namespace):
        self.folder = folder
        self.config_path = folder / "serve.toml"
        self.log_path = folder / "trainer.log"
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self._seed_registry()
        self.config_path.write_text(trainer_config(folder, broker, station_url, keys, args))
        self._env = {**os.environ, TOKEN_ENV: token}

    def _seed_registry(self) -> None:
        """The trainer starts from what the edges run, so its first candidate is gated against it."""
        from models import builtin
        from models.registry import Registry

        registry = Registry(self.folder / "data" / "registry")
        if registry.current_version() is None:
            builtin.install_into(registry)

    def start(self) -> Trainer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "qc.cli", "train", "serve", "--config",
                                      str(self.config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=self._env, start_new_session=True,
                                     preexec_fn=lambda: os.nice(10))  # the line comes first
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        terminate(self.proc, 15)  # the server stops between steps; a retrain cut short is redone next time


def builtin_budgets() -> tuple[float, float, float]:
    """(escape, review, false reject) budgets the built-in model was calibrated to: a retrain on the demo's
    line is held to the same ones, so the gate compares like with like."""
    from models import builtin
    from models.manifest import load_manifest

    cal = load_manifest(builtin.DEFAULT_DIR / "manifest.json").metrics.get("calibration", {})
    return (float(cal.get("escape_budget", 0.01)), float(cal.get("review_budget", 0.08)),
            float(cal.get("false_reject_budget", 0.02)))


def trainer_config(folder: Path, broker, station_url: str, keys: tuple[Path, Path],  # noqa: ANN001
                   args: argparse.Namespace) -> str:
    escape, review, false_reject = builtin_budgets()
    if args.images is not None:  # a line of real photos: the verdicts are all the trainer has
        synthetic, golden, epochs = 0, max(30, args.retrain_after // 3), 30
    else:
        synthetic, golden, epochs = args.train_parts, max(50, min(400, args.train_parts // 4)), 4
    if args.train_epochs is not None:
        epochs = args.train_epochs
    return f"""# written by qc demo; edit the demo's options instead
[data]
dir = {json.dumps(str(folder / "data"))}
synthetic = {synthetic}          # synthetic parts of the same line, besides the station's verdicts
synthetic_seed = 7
golden_size = {golden}   # frozen at the first build, never trained on

[station]
url = {json.dumps(station_url.rstrip("/"))}
token_env = "{TOKEN_ENV}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "qc-demo-trainer"
lines = ["line1"]

[keys]
private = {json.dumps(str(keys[0]))}
public = {json.dumps(str(keys[1]))}

[train]
warm_start = true                 # fine-tune the running model on the verdicts
fine_tune_epochs = {epochs}
fine_tune_lr = 0.0003
val = 0.4                              # a large calibration set: the escape threshold rests on its weakest defects
escape_budget = {escape:g}                 # the built-in model's budgets: a retrain is held to what it replaces
review_budget = {review:g}
false_reject_budget = {false_reject:g}

[gate]
escape_tolerance = 0.01                # one or two escapes more on the demo's ~170 golden defects is noise

[triggers]
verdicts = {args.retrain_after}
every_hours = 0
on_request = true

[serve]
host = "127.0.0.1"
port = 0
"""


# ------------------------------------------------------------------ the status line
def _parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in wire.OPERATING_MODES]
    if bad or not modes:
        from qcloop.errors import QcError

        raise QcError(f"--modes: {', '.join(bad) or 'none given'} is not one of {', '.join(wire.OPERATING_MODES)}")
    return modes


class ModeSwitcher:
    """Switches the demo line's operating mode from the station, as an engineer's Settings page does: the
    setting is saved (audited) and sent to the edges retained; the edge applies it from its next part.
    Counts, per mode, the parts decided and how the held ones left the hold lane."""

    def __init__(self, station, edge, modes: list[str], every_s: float, hold_time_s: float):  # noqa: ANN001
        self.station, self.edge, self.modes = station, edge, modes
        self.every_s, self.hold_time_s = every_s, hold_time_s
        self.current = ""
        self.parts: dict[str, int] = {}
        self.reviews: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-modes", daemon=True)
        edge.pipeline.listeners.append(self._on_decision)

    def _on_decision(self, d) -> None:  # noqa: ANN001 - edge.decision.Decision
        mode = self.edge.pipeline.mode
        self.parts[mode] = self.parts.get(mode, 0) + 1
        if d.review:
            self.reviews[mode] = self.reviews.get(mode, 0) + 1

    def start(self) -> ModeSwitcher:
        self._switch(self.modes[0])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.every_s):
            i += 1
            self._switch(self.modes[i % len(self.modes)])

    def _switch(self, mode: str) -> None:
        from station_ui.store import Store

        store = Store(self.station.cfg.db_path, migrate=False, station=self.station.cfg.station.name)
        try:
            settings = store.set_line_mode(self.edge.cfg.edge.line, mode, self.hold_time_s, "REJECT", "demo-engineer")
        finally:
            store.close()
        if self.station.ingest is not None:
            self.station.ingest.publish_line_settings(settings)
        self.current = mode
        say(f"station: line {settings.line} set to {mode}" + (f" (held parts wait {self.hold_time_s:g} s)"
                                                            if mode == "in-the-loop" else ""))

    def words(self) -> str:
        h = self.edge.holds
        per_mode = ", ".join(f"{m}: {n} parts, {self.reviews.get(m, 0)} reviews" for m, n in self.parts.items())
        return (f"modes: {per_mode}; hold lane: {h.released} released, {h.rejected} rejected by a verdict, "
                f"{h.fell_back} by the fallback")


class Status:
    """The live status line, and what to do next."""

    def __init__(self, edge, station, trainer, reviewer, args: argparse.Namespace, figures):  # noqa: ANN001
        self.edge, self.station, self.trainer, self.reviewer, self.args = edge, station, trainer, reviewer, args
        self.figures = figures  # qc.demo_figures.LineFigures: the truth per model version
        self.trainer_state: dict = {}
        self.models_seen = [edge.detector.version]
        self._client = None
        self._store = None  # the station's database, read for the queue length
        self.modes: ModeSwitcher | None = None
        if trainer is not None:
            self._watch_trainer()

    def _watch_trainer(self) -> None:
        from qcloop.mqttconn import BrokerSettings, make_client

        settings = BrokerSettings(host=self.edge.cfg.mqtt.host, port=self.edge.cfg.mqtt.port)
        topic = wire.Topics(settings.prefix).train_status()
        c = make_client(settings, f"qc-demo-watch-{secrets.token_hex(3)}", clean_session=True)
        c.on_connect = lambda client, *a: client.subscribe(topic, qos=1)
        c.on_message = lambda client, userdata, msg: self._on_trainer(msg.payload)
        c.connect_async(settings.host, settings.port)
        c.loop_start()
        self._client = c

    def _on_trainer(self, payload: bytes) -> None:
        try:
            self.trainer_state = json.loads(payload)
        except ValueError:
            pass

    def note_model(self) -> None:
        version = self.edge.pipeline.detector.version
        if version != self.models_seen[-1]:
            self.models_seen.append(version)

    def queue(self) -> int:
        if self._store is None:
            from station_ui.store import Store

            self._store = Store(self.station.cfg.db_path, migrate=False)
        return self._store.queue_stats().count

    def line(self) -> str:
        s = self.edge.status()
        q = self.queue()
        versions = "  ".join(v.short() for v in self.figures.versions()[-2:])
        mode = f"{s.mode} (held {s.held})  " if self.modes is not None else ""
        return (f"parts {s.parts:>6}  {_actions(s)}  queue {q:>3}  {mode}{versions or 'model ' + s.model}  "
                f"{self.trainer_words()}  | {self.next_step(q)}")

    def trainer_words(self) -> str:
        if self.trainer is None:
            return "trainer off"
        if not self.trainer.alive():
            return f"trainer STOPPED (see {self.trainer.log_path})"
        t = self.trainer_state
        if t.get("state") in ("training", "gating"):
            return f"trainer {t['state']}"
        last = t.get("last") or {}
        if last:
            verdict = ("promoted " + last.get("version", "?")) if last.get("promoted") else (
                "kept current" if last.get("ok") else "failed")
            return f"trainer idle, last: {verdict}"
        n = t.get("verdicts_since_last", 0)
        return f"trainer idle, {n}/{self.args.retrain_after} verdicts"

    def next_step(self, queue: int) -> str:
        url = self.station.url
        if len(self.models_seen) > 1:
            return f"model {self.models_seen[-1]} is live: compare the models at {url}dashboard"
        if self.trainer_state.get("state") in ("training", "gating"):
            return "retraining on your verdicts; the line keeps running"
        if self.reviewer is not None:
            return f"auto-review answered {self.reviewer.answered}; watch {url}review"
        if queue:
            return f"review the queue at {url}review"
        return "waiting for uncertain parts"

    def run_until(self, stop: threading.Event, duration: float | None) -> None:
        global _live
        with LiveStatus() as live:
            _live = live
            try:
                self._watch(stop, duration, live)
            finally:
                _live = None

    def _watch(self, stop: threading.Event, duration: float | None, live: LiveStatus) -> None:
        t0 = time.monotonic()
        while not stop.is_set() and not self.edge.pipeline.finished.is_set():
            self.note_model()
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            if self.args.until == "promoted" and len(self.models_seen) > 1:
                break
            if self.args.until == "compared" and self.compared():
                break
            if self.args.until == "retrained" and self.trainer_state.get("last"):
                break
            if not self.args.quiet:
                live.show(self.line()[:220])
            stop.wait(0.5)
        self.note_model()  # the last model change is noticed even on the way out
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
        if self._store is not None:
            self._store.close()

    def compared(self) -> bool:
        """A retrained model is live and has decided as many parts as the model before it (or COMPARE_PARTS)."""
        if len(self.models_seen) < 2:
            return False
        before = self.figures.parts_of(self.models_seen[-2])
        return self.figures.parts_of(self.models_seen[-1]) >= min(before, COMPARE_PARTS)

    def summary(self) -> str:
        s = self.edge.status()
        out = f"{s.parts} parts: {_actions(s)}; models {' -> '.join(self.models_seen)}"
        if self.reviewer is not None:
            out += f"; auto-review answered {self.reviewer.answered}"
            if self.reviewer.error:
                out += f" ({self.reviewer.error})"
        if self.modes is not None:
            out += "\n" + self.modes.words()
        audits = self._audits()
        out += "\nper model version, from the line's truth (the station's audit estimates in brackets):"
        for v in self.figures.versions():
            out += "\n  " + v.words(audits.get(v.model))
        return out

    def _audits(self) -> dict:
        """The station's per-version figures (its Models table), or nothing when they cannot be read."""
        from station_ui import reports
        from station_ui.store import Store

        try:
            store = Store(self.station.cfg.db_path, migrate=False)
        except Exception:  # the summary must not fail on the way out
            return {}
        try:
            return {m["model"]: m for m in reports.models(store)}
        finally:
            store.close()


def _actions(status: wire.EdgeStatus) -> str:
    a = status.actions
    return f"PASS {a.get('PASS', 0)} HOLD {a.get('HOLD', 0)} REJECT {a.get('REJECT', 0)}"
