"""The demo's orchestration: start the parts in order, show status, stop them in reverse."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from qcloop.broker import MosquittoBroker

EXAMPLE_EDGE = Path(__file__).resolve().parent.parent / "config" / "edge.example.toml"


def run(args: argparse.Namespace) -> int:
    from edge.cli import status_line
    from edge.config import load_config
    from edge.service import EdgeService

    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"demo: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    broker = MosquittoBroker(data / "broker", port=args.mqtt_port, persistence=True).start()
    say(f"broker (mosquitto) on {broker.host}:{broker.port}")
    cfg = load_config(EXAMPLE_EDGE)
    cfg = replace(cfg,
                  edge=replace(cfg.edge, data_dir=data / "edge"),
                  trigger=replace(cfg.trigger, rate_hz=args.rate),
                  mqtt=replace(cfg.mqtt, host=broker.host, port=broker.port),
                  metrics=replace(cfg.metrics, port=args.metrics_port))
    edge = EdgeService(cfg, max_parts=args.parts)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    edge.start()
    say(f"edge {cfg.edge.line}/{cfg.edge.camera} on a simulated line at {args.rate:g} parts/s, "
        f"model {edge.detector.version}")
    if args.metrics_port:
        say(f"edge metrics: http://127.0.0.1:{args.metrics_port}/metrics  health: /healthz")
    say(f"data under {data}; Ctrl-C stops everything")
    t0 = time.monotonic()
    try:
        while not stop.is_set() and not edge.pipeline.finished.is_set():
            if args.duration is not None and time.monotonic() - t0 >= args.duration:
                break
            print("\r" + status_line(edge.status()), end="", file=sys.stderr, flush=True)
            stop.wait(0.5)
    finally:
        edge.stop()
        print("\r" + status_line(edge.status(state="stopped")), file=sys.stderr)
        broker.stop()
        say("stopped cleanly")
    return 0
