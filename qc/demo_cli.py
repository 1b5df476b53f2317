"""`qc demo`: the whole loop on one machine, with one command.

Starts a broker (Mosquitto when installed, else the embedded Python broker), the
review station with a demo login (printed), the retraining server, and an edge on a
simulated line whose parts include defects (pits, cracks, burrs, chips) and
lighting artefacts (glare, streaks, shadows, dust). Review the uncertain parts in
the browser; after --retrain-after verdicts the trainer retrains on them, gates the
candidate on its golden set, signs it, and the edge swaps to it between two parts.
The dashboard's "Models" table shows each model's review and reject rates.
With --auto-review an oracle (the generator's ground truth) answers instead of you.
Everything goes under --data-dir; running it again reuses the keys, logins and models.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole loop on this machine (broker, station, trainer, edge)",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                      help="where everything the demo writes goes (default: var/demo)")
    demo.add_argument("--rate", type=float, default=None,
                      help="parts per second on the simulated line (default 2; 10 with --auto-review)")
    demo.add_argument("--images", type=Path, default=None, metavar="DIR",
                      help="play a folder of real photos as the line instead of the synthetic parts: labelled "
                           "ok/ and def/ folders anywhere below DIR, all one size, in a new random order each "
                           "pass, with the synthetic line's lighting artefacts on 20 %% of them; the trainer "
                           "then learns from the station's verdicts alone")
    demo.add_argument("--auto-review", action="store_true",
                      help="let an oracle (ground truth from the generator) answer the review queue")
    demo.add_argument("--retrain-after", type=int, default=150, metavar="N",
                      help="retrain after N new verdicts (default 150: about 10 minutes of one reviewer; "
                           "0 = no retraining server)")
    demo.add_argument("--until", choices=("retrained", "promoted", "compared"), default=None,
                      help="stop after the first retrain has finished (gated, promoted or not), once a "
                           "retrained model has gone live on the edge, or once it has decided as many parts "
                           "as the model before it (at most 2000), so both stand side by side")
    demo.add_argument("--parts", type=int, default=None, help="stop after this many parts (default: until Ctrl-C)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--train-parts", type=int, default=2500,
                      help="synthetic parts the trainer adds to the verdicts (default 2500)")
    demo.add_argument("--train-epochs", type=int, default=None,
                      help="epochs per retrain, fine-tuning the running model (default 4 with the synthetic "
                           "parts, 30 with --images, where the verdicts are all the trainer has)")
    demo.add_argument("--audit-rate", type=float, default=0.05,
                      help="share of confident decisions also sent for review (default 0.05), "
                           "so escapes and false rejects can be estimated")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                      help="auto: Mosquitto when installed, else the embedded Python broker")
    demo.add_argument("--mqtt-port", type=int, default=0, help="broker port (default: a free port)")
    demo.add_argument("--web-port", type=int, default=8080, help="review station port (default 8080; 0 = a free port)")
    demo.add_argument("--metrics-port", type=int, default=9108, help="edge /metrics and /healthz port (0 = off)")
    demo.add_argument("--modes", default=None, metavar="MODE[,MODE...]",
                      help="switch the line's operating mode live from the station, as an engineer would on its "
                           "Settings page, through these in turn (in-the-loop, on-the-loop, out-of-the-loop), "
                           "one every --mode-every seconds; in the loop, held parts wait --hold-time seconds")
    demo.add_argument("--mode-every", type=float, default=30.0, metavar="S", help="seconds per mode (default 30)")
    demo.add_argument("--hold-time", type=float, default=20.0, metavar="S",
                      help="in the loop: how long a held part waits for a verdict before the fallback (default 20)")
    demo.add_argument("--quiet", action="store_true", help="no live status line")
    demo.set_defaults(func=lambda args: __import__("qc.demo", fromlist=["run"]).run(args))
