"""`qc bench ...`: benchmarks that print figures (JSON with --json). Never timed assertions.

The benchmarks that start a broker or several parts live here (qc.bench_edge,
qc.bench_station, qc.faults.bench); a part's own benchmarks live with it and are added
by its ``register_bench`` (training.cli). This module only registers them.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from qcloop.commands import add_group


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
    edge.set_defaults(func=lambda args: importlib.import_module("qc.bench_edge").main_json(args))

    faults = cmds.add_parser("faults", help="kill the broker, the edge or the station mid-stream, take the PLC away; "
                             "count lost and duplicated reviews", description="Fault scenarios on loopback with a real "
                             "mosquitto (persistence on) and the edge and station as processes: broker-kill, edge-kill, "
                             "station-kill, station-away, actuator-down (a Modbus PLC the edge hands each part's result "
                             "to is stopped and restarted: the actuator alarm must rise and clear, and the PLC must see "
                             "the results in trigger order), order (an edge with a model slower than the line freezes "
                             "for a second: late, queue-full and missed-trigger parts, and the PLC must get every result "
                             "in trigger order under its own part's number). Prints sent, stored, lost, duplicates and "
                             "recovery_s per scenario; lost, duplicates and PLC results out of order must be 0.")
    faults.add_argument("--json", action="store_true", help="print one JSON object")
    faults.add_argument("--reviews", type=int, default=2000, help="reviews (= parts) per scenario (default 2000)")
    # The names of qc.faults.scenarios.SCENARIOS (a test keeps them equal), without importing the rig for --help.
    faults.add_argument("--scenario", action="append", choices=("broker-kill", "edge-kill", "station-kill",
                        "station-away", "actuator-down", "order"), help="run only this scenario (repeatable; default: all)")
    faults.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR and keep it (configs, logs, databases) for inspection")
    faults.add_argument("--quiet", action="store_true", help="no progress on stderr")
    faults.set_defaults(func=lambda args: importlib.import_module("qc.faults.bench").main(args))

    station = cmds.add_parser("station", help="station ingest rate, queue page and verdict latency",
                              description="Ingest ~100 KB reviews through a private mosquitto into the store, then "
                                          "time the review page and verdicts with many stored items.")
    station.add_argument("--json", action="store_true", help="print one JSON object")
    station.add_argument("--items", type=int, default=100_000, help="stored items for the page and verdict timings")
    station.add_argument("--ingest", type=int, default=2000, help="reviews to send through the broker")
    station.add_argument("--image-kb", type=int, default=100)
    station.add_argument("--pages", type=int, default=200, help="review page loads timed")
    station.add_argument("--verdicts", type=int, default=300, help="verdicts timed")
    station.add_argument("--known-answer-rate", type=float, default=0.03,
                         help="share of the items shown that are known answers (station [review]; default 0.03)")
    station.set_defaults(func=lambda args: importlib.import_module("qc.bench_station").main(args))

    plant = cmds.add_parser(
        "plant", help="lines bridged to a plant broker, one line's plant link cut: delivery and recovery",
        description="A plant on loopback: a plant mosquitto (TLS, users, the plant ACL) and per line its own "
                    "mosquitto (persistence) bridged to it through a TCP link the bench can cut, --cameras edges at "
                    "--rate parts/s, a station serving that line only with an oracle reviewer ruling on its queue, "
                    "and at the plant the retraining server and an observer recording every verdict and review id "
                    "that arrives. After --cut-after s the first line's plant link is cut for --cut s (connections "
                    "closed, new ones refused) and restored. Prints per line and in total parts, reviews_sent, "
                    "reviews_stored, lost, duplicates, edge_to_station_ms_p99, verdicts, verdicts_at_trainer, "
                    "reviews_at_plant, messages/s per broker, and for the cut line stored_during_cut and recovery_s; "
                    "exits 1 when a target (in the JSON's targets and met) is missed.")
    plant.add_argument("--json", action="store_true", help="print one JSON object")
    plant.add_argument("--duration", type=float, default=60.0, help="seconds each edge inspects (default 60)")
    plant.add_argument("--cut-after", type=float, default=20.0, metavar="S",
                       help="cut the first line's plant link S seconds after the edges are up (default 20)")
    plant.add_argument("--cut", type=float, default=20.0, metavar="S",
                       help="how long the link stays cut (default 20; 0: no cut)")
    plant.add_argument("--lines", type=int, default=3, help="production lines (default 3)")
    plant.add_argument("--cameras", type=int, default=4, help="cameras (edge processes) per line (default 4)")
    plant.add_argument("--rate", type=float, default=20.0, help="parts/s per camera (default 20)")
    plant.add_argument("--keep", type=Path, default=None, metavar="DIR",
                       help="work in DIR (new or empty) and keep it (configs, logs, databases) for inspection")
    plant.add_argument("--quiet", action="store_true", help="no progress on stderr")
    plant.set_defaults(func=lambda args: importlib.import_module("qc.bench_plant").main(args))

    from training.cli import register_bench as register_training_benches

    register_training_benches(cmds)
