"""``qc train serve``: the retraining server -- triggers, one retrain at a time, gate, release, status.

One process that retrains when (a) a configured number of new verdicts has arrived
on ``Topics.all_verdicts()`` (QoS 1, persistent session: verdicts sent while the
server is down still count), (b) a schedule comes due, or (c) an engineer presses
"retrain now" at the station (``wire.RetrainRequest``). Retrains never overlap: one
worker thread runs them, and a request that arrives during a run is queued once --
ten presses during a run give one more run, not ten.

A retrain: sync new station items + read the seed folders -> freeze (first time) or
load the golden set and exclude it with its near-duplicates -> ``build_model`` ->
gate against the current model -> if promoted: sign, registry, flip, announce.
What the server is doing and its last result (with the gate figures) are published
retained on ``Topics.train_status()``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from models.registry import Registry
from qcloop import wire
from qcloop.errors import ConfigError, QcError, WireError
from qcloop.mqttconn import BrokerFailover, make_client
from training.gate import gate_candidate
from training.golden import GoldenSet
from training.release import Announcer, ModelHTTPServer, next_version, release
from training.serve_config import GateSection, ProductSection, ServeConfig, load_config

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ server
class TrainServer:
    """The retraining server of one product: all the lines of a trainer without [[products]], or one product's.

    A product's server keeps its dataset, golden set, lineage and registry under
    ``<data>/products/<name>/``, learns from its lines' verdicts only, retrains when asked for
    one of its lines (or for every line), announces to its lines only and reports on its own
    status topic; the model HTTP server and the retrain lock are the plant trainer's (PlantTrainer).
    """

    def __init__(self, cfg: ServeConfig, build: Callable[..., Any] | None = None, log_to=sys.stderr,
                 product: ProductSection | None = None, run_lock: threading.Lock | None = None):
        self.cfg = cfg
        self.topics = cfg.mqtt.topics
        self.product = product
        self.name = product.name if product is not None else ""
        self.lines: tuple[str, ...] = tuple(product.lines if product is not None else cfg.mqtt.lines)
        self.data_dir = cfg.data.dir / "products" / self.name if product is not None else cfg.data.dir
        self.registry = Registry(self.data_dir / "registry")
        self._build = build
        self._log_to = log_to
        self.state = "idle"
        self._reason = ""
        self.last: wire.TrainRun | None = None
        self.runs = 0
        self.verdicts_since = 0
        self._told = 0.0
        self.connected = threading.Event()
        self._cv = threading.Condition()
        self._pending: str | None = None
        self._busy = False
        self._run_lock = run_lock or threading.Lock()  # a plant trainer's products share one: one retrain at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.http: ModelHTTPServer | None = None  # set before start() when the plant trainer serves the models
        self._own_http = False
        self.announcer: Announcer | None = None
        self.client: mqtt.Client | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_s: float = 10.0) -> TrainServer:
        check_ready(self.cfg)
        if self.http is None:
            self.http = ModelHTTPServer(self.registry, self.cfg.serve.host, self.cfg.serve.port,
                                        self.cfg.serve.public_url, explain_token=explain_token(self.cfg)).start()
            self._own_http = True
        client_id = self.cfg.mqtt.client_id + (f"-{self.name}" if self.name else "")
        # Both clients move to the next of [mqtt].brokers when the one in use fails.
        self.announcer = Announcer(self.cfg.mqtt, client_id + "-pub").start(wait_s)
        c = make_client(self.cfg.mqtt, client_id, clean_session=False)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c
        self.broker = BrokerFailover(c, self.cfg.mqtt, f"trainer {self.name}".strip()).start()
        self._spawn(self._worker, "retrain-worker")
        if self.cfg.triggers.every_hours > 0:
            self._spawn(self._schedule, "retrain-schedule")
        self.connected.wait(wait_s)
        self._publish_status()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(30)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        if self.announcer is not None:
            self.announcer.stop()
        if self.http is not None and self._own_http:
            self.http.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ triggers
    def request(self, reason: str) -> str:
        """Ask for a retrain: 'started', 'queued' (one will follow the running one) or 'already queued'."""
        with self._cv:
            if self._pending is not None:
                return "already queued"
            self._pending = reason
            self._cv.notify_all()
            answer = "queued" if self._busy else "started"
        log.info("retrain %s: %s", answer, reason)
        self._publish_status(wait=False)
        return answer

    @property
    def queued(self) -> str | None:
        return self._pending

    @property
    def busy(self) -> bool:
        return self._busy

    def _on_connect(self, client, userdata, flags, reason_code, props) -> None:  # noqa: ANN001
        if reason_code != 0:
            log.error("broker refused the trainer: %s", reason_code)
            return
        if self.product is None:
            client.subscribe(self.topics.all_verdicts(), qos=1)
        else:  # a product learns from its own lines' verdicts only
            for line in self.lines:
                client.subscribe(self.topics.verdict(line), qos=1)
        if self.cfg.triggers.on_request:
            client.subscribe(self.topics.retrain_request(), qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        try:
            if msg.topic == self.topics.retrain_request():
                req = wire.RetrainRequest.decode(msg.payload)
                if self.product is not None and req.line and req.line not in self.lines:
                    return  # another product's line
                self.request(f"requested by {req.user}" + (f" at {req.station}" if req.station else "")
                             + (f": {req.reason}" if req.reason else ""))
                return
            verdict = wire.Verdict.decode(msg.payload)
        except WireError as exc:
            log.warning("ignored a message on %s: %s", msg.topic, exc)
            return
        if verdict.undone:
            return
        with self._cv:
            self.verdicts_since += 1
            due = 0 < self.cfg.triggers.verdicts <= self.verdicts_since
            tell = time.monotonic() - self._told >= 1.0
            if tell:
                self._told = time.monotonic()
        if due:
            self.request(f"{self.verdicts_since} new verdicts")
        elif tell:  # the count towards the next retrain, at most once a second
            self._publish_status(wait=False)

    def _schedule(self) -> None:
        period = self.cfg.triggers.every_hours * 3600.0
        while not self._stop.wait(period):
            self.request(f"schedule (every {self.cfg.triggers.every_hours:g} h)")

    def _worker(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._stop.is_set())
                if self._stop.is_set():
                    return
                reason, self._pending, self._busy = self._pending, None, True
            try:
                self.retrain_once(reason)
            finally:
                with self._cv:
                    self._busy = False
                self._publish_status()

    # ------------------------------------------------------------------ one retrain
    def retrain_once(self, reason: str = "manual") -> dict:
        """Run one retrain now (callers are serialised); return the result published as ``last``."""
        with self._run_lock:
            t0 = time.monotonic()
            with self._cv:
                self.verdicts_since = 0
            self.runs += 1
            self._set_state("training", reason)
            try:
                result = self._retrain(reason)
            except QcError as exc:
                log.error("retrain failed: %s", exc)
                result = {"ok": False, "error": str(exc)}
            except Exception as exc:  # the server must outlive one bad run
                log.exception("retrain crashed")
                result = {"ok": False, "error": repr(exc)}
            result.update(reason=reason, seconds=round(time.monotonic() - t0, 1), finished=time.time())
            self.last = _run_record(result)
            self._set_state("idle", reason)
            return result

    def _retrain(self, reason: str) -> dict:
        from training.defaults import EMA
        from training.pipeline import Budgets
        from training.train import TrainConfig

        cfg = self.cfg
        data, sources = self.collect()
        golden = GoldenSet.load_or_freeze(self.data_dir / "golden", data, cfg.data.golden_size, cfg.train.seed)
        train_set = golden.exclude_from(data)
        current = self.registry.current_version()
        version = next_version(self.registry, cfg.train.first_version)
        line, train_set = hold_out_line_parts(train_set, cfg.gate, self.data_dir / "line-gate" / version)
        if line is not None:
            print(f"line gate set: {len(line)} recent station verdicts {line.counts()}, held out from training",
                  file=self._log_to, flush=True)
        build = self._build or _default_build()
        net = self._network(current, len(train_set))
        parent = self._fine_tune_parent(current, net)
        if parent is not None:
            # The candidate scores as many views of a part as the model it fine-tunes.
            views = self.registry.manifest(current).detector.get("views", 1)
            tcfg = TrainConfig(epochs=cfg.train.fine_tune_epochs, lr=cfg.train.fine_tune_lr, seed=cfg.train.seed,
                               progress=False, init_model=parent, net=net, dihedral_mean=views == 8)
            print(f"fine-tuning {current} for {tcfg.epochs} epochs", file=self._log_to, flush=True)
        else:
            tcfg = TrainConfig(epochs=cfg.train.epochs, seed=cfg.train.seed, progress=False, net=net,
                               ema=EMA[net.family])
        built = build(train_set, version, tcfg,
                      Budgets(cfg.train.escape_budget, cfg.train.review_budget, cfg.train.false_reject_budget,
                              review_cost=cfg.gate.review_weight),
                      roi=cfg.data.roi, val=cfg.train.val, golden=0.0, parent=current, sources=sources,
                      log=self._log_to)
        self._set_state("gating", reason)
        decision = gate_candidate(built.manifest, built.model_bytes,
                                  self.registry.version_dir(current) if current else None, golden,
                                  cfg.gate.rule(), log_dir=self.data_dir, line=line)
        print(decision.report(), file=self._log_to)
        out = {"ok": True, "version": version, "promoted": decision.promoted, "gate": decision.to_dict(),
               "calibration": calibration_summary(built.manifest.metrics.get("calibration", {}))}
        if decision.promoted:
            figures = {**dataclasses.asdict(decision.candidate), "golden_set": golden.summary()}
            release(self.registry, built.manifest, built.model_bytes, cfg.keys.private, golden_metrics=figures,
                    reason=f"promoted by the gate ({reason})")
            ann = self.announcer.announce(self.registry, version, self.http.base_url(self.name), self.lines)
            out["announced"] = {"lines": list(self.lines), "manifest_url": ann.manifest_url}
        return out

    def _network(self, current: str | None, n_images: int):  # noqa: ANN201 (training.family.NetSpec)
        """The network to train: the configured family, or with "auto" the running model's."""
        from training.defaults import family_for
        from training.family import NetSpec
        from training.warmstart import parent_spec

        if self.cfg.train.family != "auto":
            return NetSpec(self.cfg.train.family)
        if current:
            from models.manifest import MANIFEST_NAME, load_manifest

            manifest = load_manifest(self.registry.version_dir(current) / MANIFEST_NAME)
            return dataclasses.replace(parent_spec(manifest, NetSpec()), extra={})
        return NetSpec(family_for(n_images))

    def _fine_tune_parent(self, current: str | None, net) -> Path | None:  # noqa: ANN001 (training.family.NetSpec)
        """The current model's folder when warm start is on and its weights fit this trainer's network."""
        if not (self.cfg.train.warm_start and current):
            return None
        from training.errors import TrainError
        from training.warmstart import load_parent

        folder = self.registry.version_dir(current)
        try:
            load_parent(folder, net)
        except (TrainError, QcError) as exc:
            print(f"training from scratch: {exc}", file=self._log_to, flush=True)
            return None
        return folder

    def collect(self) -> tuple[Any, list]:
        """Station items (synced first) + seed folders + synthetic parts, deduplicated.

        A station that cannot be reached or refuses the token is skipped for this run, said in the
        log and in the run's sources; what was synced from it before still trains, and its cursor
        stays where it was, so its new verdicts come with the next run.
        """
        from training.data import ImageSet
        from training.errors import DatasetError
        from training.station_source import merge

        cfg, hw = self.cfg, (self.cfg.data.size, self.cfg.data.size)
        sets, sources = [], []
        for src in stations(self.cfg):
            entry: dict[str, Any] = {"station": src.url, **({"name": src.name} if src.name else {})}
            try:
                synced = src.sync()
                entry.update(new_items=synced.fetched, cursor=synced.cursor)
            except DatasetError as exc:
                log.warning("station %s skipped for this retrain: %s", src.name or src.url, exc)
                print(f"station {src.name or src.url} skipped for this retrain: {exc}", file=self._log_to, flush=True)
                entry.update(new_items=0, cursor=src.cursor(), error=str(exc))
            # A source may serve several products' lines: a product reads its own lines' items only.
            items = src.load(hw, lines=self.lines if self.product is not None else None)
            if self.product is not None:
                entry["items"] = len(items)
            sets.append(items)
            sources.append(entry)
        for folder in (self.product.seed_folders if self.product is not None else cfg.data.seed_folders):
            sets.append(ImageSet.from_folders(folder, hw, cfg.data.roi))
            sources.append({"folder": str(folder)})
        if cfg.data.synthetic:
            sets.append(ImageSet.from_synthetic(cfg.data.synthetic, hw, seed=cfg.data.synthetic_seed))
            sources.append({"synthetic": {"seed": cfg.data.synthetic_seed, "parts": cfg.data.synthetic}})
        return merge([s for s in sets if len(s)]).dedup(), sources

    # ------------------------------------------------------------------ status
    def _set_state(self, state: str, reason: str) -> None:
        self.state = state
        self._reason = reason
        self._publish_status(wait=False)

    def status(self) -> wire.TrainStatus:
        return wire.TrainStatus(state=self.state, reason=self._reason, time=time.time(), queued=self._pending,
                                runs=self.runs, verdicts_since_last=self.verdicts_since,
                                current=self.registry.current_version(), last=self.last, product=self.name,
                                lines=self.lines)

    def _publish_status(self, wait: bool = True) -> None:
        if self.announcer is None:
            return
        try:
            payload = self.status().encode()
            if wait:
                self.announcer.publish_retained(self.topics.train_status(self.name), payload)
            else:
                self.announcer.client.publish(self.topics.train_status(self.name), payload, qos=1, retain=True)
        except QcError as exc:  # WireError included: a figure the wire cannot carry
            log.warning("train status not published: %s", exc)


def stations(cfg: ServeConfig) -> list:  # noqa: ANN201 (list[training.station_source.StationSource])
    """Every station export API the trainer gathers verdicts from, with its token (read now)."""
    from training.station_source import StationSource

    out = []
    if cfg.station.url:
        token = os.environ.get(cfg.station.token_env, "")
        if not token:
            raise ConfigError(f"[station].token_env names {cfg.station.token_env!r}, which is not set")
        out.append(StationSource(cfg.station.url, token, cfg.data.dir, cfg.station.page))
    for s in cfg.sources:
        out.append(StationSource(s.url, s.token(), cfg.data.dir, s.page, name=s.name))
    return out


def check_ready(cfg: ServeConfig) -> None:
    """What a trainer needs before anything starts: its signing key, and every source's token."""
    if not cfg.keys.private.is_file():
        raise ConfigError(f"[keys].private {cfg.keys.private} does not exist; run `qc train keygen`")
    stations(cfg)


def explain_token(cfg: ServeConfig) -> str:
    """The token POST /explain/<version> asks for ("" : the endpoint is off)."""
    token_file = cfg.serve.explain_token_file
    try:
        return token_file.read_text().strip() if token_file is not None else ""
    except OSError as exc:
        raise ConfigError(f"[serve].explain_token_file {token_file}: {exc}") from exc


class PlantTrainer:
    """A plant's trainer of several products ([[products]]): one TrainServer per product, one model HTTP
    server (each product's models under /<product>/), and one retrain at a time across them."""

    def __init__(self, cfg: ServeConfig, build: Callable[..., Any] | None = None, log_to=sys.stderr):
        if not cfg.products:
            raise ConfigError("a plant trainer needs [[products]]; without them, run one TrainServer")
        self.cfg = cfg
        lock = threading.Lock()
        self.servers = [TrainServer(cfg, build, log_to, product=p, run_lock=lock) for p in cfg.products]
        self.http: ModelHTTPServer | None = None

    def product(self, name: str) -> TrainServer:
        return next(s for s in self.servers if s.name == name)

    def start(self, wait_s: float = 10.0) -> PlantTrainer:
        check_ready(self.cfg)  # before the model server starts
        self.http = ModelHTTPServer({s.name: s.registry for s in self.servers}, self.cfg.serve.host,
                                    self.cfg.serve.port, self.cfg.serve.public_url,
                                    explain_token=explain_token(self.cfg)).start()
        try:
            for s in self.servers:
                s.http = self.http
                s.start(wait_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        if self.http is not None:
            self.http.stop()


def _default_build() -> Callable[..., Any]:
    from training.pipeline import build_model  # torch loads here, not at import

    return build_model


def serve(config_path: str | Path) -> int:
    """Run the server until interrupted (SIGINT/SIGTERM)."""
    from qcloop.stopping import stop_on_signals

    cfg = load_config(config_path)
    server: TrainServer | PlantTrainer = PlantTrainer(cfg).start() if cfg.products else TrainServer(cfg).start()
    stop = stop_on_signals()
    for s in server.servers if isinstance(server, PlantTrainer) else [server]:
        print(f"qc train serve: {('product ' + s.name + ', lines ' + ', '.join(s.lines) + ': ') if s.name else ''}"
              f"models at {s.http.base_url(s.name)}, status on {s.topics.train_status(s.name)}", file=sys.stderr)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


def _run_record(result: dict) -> wire.TrainRun:
    """A run's outcome as the trainer status carries it; a figure the wire refuses becomes the run's error."""
    try:
        return wire.TrainRun.from_json(result)
    except WireError as exc:
        return wire.TrainRun(ok=False, error=f"the run's report is malformed: {exc}", reason=str(result.get("reason", "")))


def calibration_summary(cal: dict) -> dict:
    """What the train status says of a candidate's calibration: the budgets, whether the labels certify
    them at the stated confidence, and how many more labelled defects would certify the escape budget."""
    keys = ("confidence", "escape_budget", "review_budget", "false_reject_budget", "certified", "escape_rate_upper",
            "defects_to_certify", "note")
    return {k: cal[k] for k in keys if k in cal}


def hold_out_line_parts(data, gate: GateSection, root: Path):  # noqa: ANN001, ANN201 (ImageSet in, (GoldenSet | None, ImageSet) out)
    """The most recent station verdicts as the line's gate set (frozen under ``root``), and ``data`` without them.

    Whole near-duplicate groups are held out, newest verdict first, until ``line_share`` of the station's
    verdicts (at most ``line_max``) are; with fewer than ``line_min`` station verdicts there is no line set.
    """
    from collections import Counter

    from training.data import ImageSet

    station = [s for s in data.samples if s.meta.get("source") == "station"]
    want = min(gate.line_max, int(gate.line_share * len(station)))
    if len(station) < gate.line_min or want < 1:
        return None, data
    newest = sorted(station, key=lambda s: (str(s.meta.get("verdict_time") or ""), s.meta.get("review_id", "")),
                    reverse=True)
    size = Counter(s.meta["group"] for s in data.samples)
    groups: set = set()
    held = 0
    for s in newest:
        if held >= want:
            break
        if s.meta["group"] not in groups:
            groups.add(s.meta["group"])
            held += size[s.meta["group"]]
    line_parts = ImageSet([s for s in data.samples if s.meta["group"] in groups], data.hw)
    rest = ImageSet([s for s in data.samples if s.meta["group"] not in groups], data.hw,
                    {**data.stats, "line_gate_held_out": len(line_parts)})
    return GoldenSet.freeze(root, line_parts), rest
