"""The demo's orchestration: start the parts in order, show status, stop them in reverse."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from qcloop.broker import MosquittoBroker

EXAMPLE_EDGE = Path(__file__).resolve().parent.parent / "config" / "edge.example.toml"


def run(args: argparse.Namespace) -> int:
    from edge.cli import show_status_until_stopped, status_line, stop_on_signals
    from edge.config import load_config
    from edge.service import EdgeService

    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"demo: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    broker = MosquittoBroker(data / "broker", port=args.mqtt_port, persistence=True).start()
    say(f"broker (mosquitto) on {broker.host}:{broker.port}")
    station, login = start_station(data / "station", broker, args.web_port)
    say(f"review station: {station.url}  (log in as {login[0]!r}, password {login[1]!r})")
    cfg = load_config(EXAMPLE_EDGE)
    cfg = replace(cfg,
                  edge=replace(cfg.edge, data_dir=data / "edge"),
                  trigger=replace(cfg.trigger, rate_hz=args.rate),
                  mqtt=replace(cfg.mqtt, host=broker.host, port=broker.port),
                  metrics=replace(cfg.metrics, port=args.metrics_port))
    edge = EdgeService(cfg, max_parts=args.parts)
    stop = stop_on_signals()
    edge.start()
    say(f"edge {cfg.edge.line}/{cfg.edge.camera} on a simulated line at {args.rate:g} parts/s, "
        f"model {edge.detector.version}")
    if args.metrics_port:
        say(f"edge metrics: http://127.0.0.1:{args.metrics_port}/metrics  health: /healthz")
    say(f"data under {data}; Ctrl-C stops everything")
    try:
        show_status_until_stopped(edge, stop, args.duration)
    finally:
        edge.stop()
        print("\r" + status_line(edge.status(state="stopped")), file=sys.stderr)
        station.stop()
        broker.stop()
        say("stopped cleanly")
    return 0


def start_station(data: Path, broker: MosquittoBroker, port: int) -> tuple[object, tuple[str, str]]:
    """The station on the demo's broker, with a demo reviewer whose password is made once per data dir."""
    import secrets

    from station_ui import accounts
    from station_ui.config import config_for
    from station_ui.server import StationServer
    from station_ui.store import Store

    cfg = config_for(data, mqtt={"host": broker.host, "port": broker.port, "client_id": "qc-demo-station"},
                     web={"port": port})
    pin_file = data / "demo-login.txt"
    if pin_file.exists():
        name, pin = pin_file.read_text().split()
    else:
        name, pin = "demo", secrets.token_urlsafe(9)  # an engineer: sees review, dashboard and history
        store = Store(cfg.db_path)
        accounts.add_user(store, name, "engineer", pin, production=False)
        store.close()
        pin_file.write_text(f"{name} {pin}\n")
        pin_file.chmod(0o600)
    return StationServer(cfg).start(), (name, pin)
