"""`qc demo`: the whole loop on one machine, with one command.

Starts a private broker, the review station (when installed), and an edge on a
simulated line; shows a live status line; Ctrl-C stops everything cleanly.
Everything it writes goes under one data directory, and running it twice works.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole loop on this machine (broker, station, edge on a simulated line)",
                          description=__doc__)
    demo.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                      help="where everything the demo writes goes (default: var/demo)")
    demo.add_argument("--rate", type=float, default=20.0, help="parts per second on the simulated line (default 20)")
    demo.add_argument("--parts", type=int, default=None, help="stop after this many parts (default: run until Ctrl-C)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--mqtt-port", type=int, default=0, help="broker port (default: a free port)")
    demo.add_argument("--web-port", type=int, default=8080, help="review station port (default 8080)")
    demo.add_argument("--metrics-port", type=int, default=9108, help="edge /metrics and /healthz port (0 = off)")
    demo.set_defaults(func=lambda args: __import__("qcloop.demo", fromlist=["run"]).run(args))
