"""`qc bench ...`: benchmarks that print figures (JSON with --json). Never timed assertions.

Each benchmark lives with the part it measures; this module only registers them.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from qcloop.cli import add_group


def register(sub: argparse._SubParsersAction) -> None:
    cmds = add_group(sub, "bench", help="measure speed, memory and delivery; prints figures (JSON with --json)")

    edge = cmds.add_parser("edge", help="edge pipeline throughput, latency, memory (full pipeline, real broker)",
                           description="Full edge pipeline on pre-rendered synthetic 1280x1024 frames: as fast as it can, "
                           "the model alone, then a fixed rate; prints parts_per_s, raw_model_parts_per_s, ratio, "
                           "latency_ms_p50/p99, uninspected, rss_mb.")
    edge.add_argument("--json", action="store_true", help="print one JSON object")
    edge.add_argument("--model", type=Path, default=None, help="model version dir (default: the built-in model)")
    edge.add_argument("--parts", type=int, default=3000, help="parts in the as-fast-as-possible phase")
    edge.add_argument("--rate", type=float, default=100.0, help="parts/s in the fixed-rate phase")
    edge.add_argument("--rate-parts", type=int, default=1000, help="parts in the fixed-rate phase")
    edge.add_argument("--quiet", action="store_true", help="no progress on stderr")
    edge.set_defaults(func=lambda args: importlib.import_module("edge.bench").main_json(args))

    faults = cmds.add_parser("faults", help="kill the broker, the edge or the station mid-stream; count lost and "
                             "duplicated reviews", description="Fault scenarios on loopback with a real mosquitto "
                             "(persistence on) and the edge and station as processes: broker-kill, edge-kill, "
                             "station-kill, station-away. Prints sent, stored, lost, duplicates and recovery_s per "
                             "scenario; lost and duplicates must be 0.")
    faults.add_argument("--json", action="store_true", help="print one JSON object")
    faults.add_argument("--reviews", type=int, default=2000, help="reviews (= parts) per scenario (default 2000)")
    faults.add_argument("--scenario", action="append", choices=("broker-kill", "edge-kill", "station-kill",
                        "station-away"), help="run only this scenario (repeatable; default: all four)")
    faults.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR and keep it (configs, logs, databases) for inspection")
    faults.add_argument("--quiet", action="store_true", help="no progress on stderr")
    faults.set_defaults(func=lambda args: importlib.import_module("qcloop.faults.bench").main(args))

    for module in ("station_ui.cli", "training.cli"):
        try:
            part = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        hook = getattr(part, "register_bench", None)
        if hook:
            hook(cmds)
