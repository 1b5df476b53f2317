"""``qc train keygen | gate | publish | serve | golden add``: the release side of the retraining server.

``register(cmds)`` adds these commands to the ``qc train`` subparsers. Nothing heavy
is imported at import time (torch and onnxruntime load inside the handlers).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(cmds: argparse._SubParsersAction) -> None:
    """Add keygen, gate, publish, serve and golden to the ``qc train`` subparsers ``cmds``."""
    kg = cmds.add_parser("keygen", help="make the trainer's Ed25519 signing key pair",
                         description="Write a new Ed25519 key pair: the private key (mode 0600) signs model "
                                     "manifests; copy the public key to every edge ([model].public_key).")
    kg.add_argument("--private", type=Path, default=Path("var/keys/trainer.key"), help="private key file to write")
    kg.add_argument("--public", type=Path, default=Path("var/keys/trainer.pub"), help="public key file to write")
    kg.add_argument("--force", action="store_true", help="replace an existing private key (edges must get the new "
                                                         "public key)")
    kg.set_defaults(func=_keygen)

    gt = cmds.add_parser("gate", help="score a candidate and the current model on the golden set and decide",
                         description="Score CANDIDATE (a model version directory) and the registry's current "
                                     "model on the golden set in DATA/golden with the edge's own preprocessing, "
                                     "print the figures and the rule, and append the decision to "
                                     "DATA/gate-log.jsonl. Exit code 0 when promoted, 1 when not.")
    gt.add_argument("candidate", type=Path, help="folder with manifest.json and the model file")
    gt.add_argument("--data", type=Path, default=Path("var/trainer"), help="trainer data folder (golden set, log)")
    gt.add_argument("--current", type=Path, default=None,
                    help="current model folder (default: CURRENT of DATA/registry; none = first model)")
    _rule_args(gt)
    gt.set_defaults(func=_gate)

    pb = cmds.add_parser("publish", help="gate, sign, register and announce a candidate model",
                         description="Gate CANDIDATE against the current model; if promoted (or with --force), "
                                     "sign it with the golden-set figures in its metrics, add it to DATA/registry, "
                                     "make it current, and announce it retained on each line's model topic. "
                                     "Edges download it from --url (a running `qc train serve`).")
    pb.add_argument("candidate", type=Path, help="folder with manifest.json and the model file")
    pb.add_argument("--data", type=Path, default=Path("var/trainer"), help="trainer data folder")
    pb.add_argument("--key", type=Path, default=Path("var/keys/trainer.key"), help="private signing key")
    pb.add_argument("--url", required=True, help="base URL edges fetch models from, e.g. http://trainer:8765")
    pb.add_argument("--line", action="append", default=[], required=True, help="line to announce on (repeatable)")
    pb.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT (default 127.0.0.1:1883)")
    pb.add_argument("--force", action="store_true", help="publish even when the gate says no (recorded)")
    pb.add_argument("--shadow", action="store_true",
                    help="run the candidate beside the live model on the edges (no effect on actuation; "
                         "disagreements counted and sampled for review) instead of making it live")
    _rule_args(pb)
    pb.set_defaults(func=_publish)

    sv = cmds.add_parser("serve", help="run the retraining server (triggers, gate, sign, serve, announce)",
                         description="Retrain on new verdicts, on a schedule, or on a station's request; gate "
                                     "each candidate on the golden set; sign, serve and announce the ones that "
                                     "pass. See training/serve.example.toml.")
    sv.add_argument("--config", type=Path, required=True, help="TOML config (see training/serve.example.toml)")
    sv.set_defaults(func=_serve)

    gd = cmds.add_parser("golden", help="show or grow the frozen golden set",
                         description="The golden set is frozen at the first training run and never trained on; "
                                     "it grows only with `qc train golden add`.")
    gsub = gd.add_subparsers(dest="golden_command", metavar="ACTION")
    add = gsub.add_parser("add", help="add labelled images to the golden set",
                          description="Add images from FOLDER/{ok,def}/* to DATA/golden (resized to the golden "
                                      "set's input size). They are excluded, with their near-duplicates, from "
                                      "every later training run.")
    add.add_argument("folder", type=Path, help="folder with ok/ and def/ images")
    add.add_argument("--data", type=Path, default=Path("var/trainer"), help="trainer data folder")
    add.set_defaults(func=_golden_add)
    show = gsub.add_parser("show", help="print the golden set's counts and hash")
    show.add_argument("--data", type=Path, default=Path("var/trainer"), help="trainer data folder")
    show.set_defaults(func=_golden_show)
    gd.set_defaults(func=_golden_show, data=Path("var/trainer"))


def _rule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--escape-tolerance", type=float, default=0.0,
                   help="how much higher the candidate's escape rate may be than the current's (0)")
    p.add_argument("--review-weight", type=float, default=0.25,
                   help="cost of a review as a share of a false reject (0.25)")
    p.add_argument("--escape-budget", type=float, default=0.005,
                   help="escape rate a first model (no current one) must stay within (0.005)")
    p.add_argument("--escape-weight", type=float, default=10.0,
                   help="cost of a passed defect as a multiple of a false reject (10)")


def _rule(args: argparse.Namespace):
    from training.gate import GateRule

    return GateRule(args.escape_tolerance, args.review_weight, args.escape_budget, args.escape_weight)


def _keygen(args: argparse.Namespace) -> int:
    from training.release import keygen

    keygen(args.private, args.public, force=args.force)
    print(f"wrote {args.private} (keep it secret) and {args.public} (give it to the edges)")
    return 0


def _current_dir(args: argparse.Namespace):
    from models.registry import Registry

    if args.current is not None:
        return args.current
    reg = Registry(args.data / "registry")
    v = reg.current_version()
    return reg.version_dir(v) if v else None


def _gate(args: argparse.Namespace) -> int:
    from training.gate import gate
    from training.golden import GoldenSet

    decision = gate(args.candidate, _current_dir(args), GoldenSet.load(args.data / "golden"), _rule(args),
                    log_dir=args.data)
    print(decision.report())
    return 0 if decision.promoted else 1


def _publish(args: argparse.Namespace) -> int:
    import dataclasses

    from models.manifest import MANIFEST_NAME, load_manifest
    from models.registry import Registry
    from qcloop.mqttconn import BrokerSettings
    from training.gate import gate
    from training.golden import GoldenSet
    from training.release import Announcer, ReleaseError, release

    golden = GoldenSet.load(args.data / "golden")
    decision = gate(args.candidate, _current_dir(args), golden, _rule(args), log_dir=args.data)
    print(decision.report())
    if not decision.promoted and not args.force and not args.shadow:
        return 1  # a shadow trial needs no promotion: it cannot change an action
    manifest = load_manifest(args.candidate / MANIFEST_NAME)
    model = (args.candidate / manifest.file).read_bytes()
    reg = Registry(args.data / "registry")
    figures = {**dataclasses.asdict(decision.candidate), "golden_set": golden.summary()}
    release(reg, manifest, model, args.key, golden_metrics=figures, make_current=not args.shadow,
            reason="published" + (" with --force past the gate" if not decision.promoted else ""))
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise ReleaseError(f"--broker must be HOST:PORT, got {args.broker!r}")
    announcer = Announcer(BrokerSettings(host=host, port=int(port))).start()
    try:
        ann = announcer.announce(reg, manifest.version, args.url, args.line, mode="shadow" if args.shadow else "live")
    finally:
        announcer.stop()
    print(f"published {manifest.version} ({ann.mode}): {ann.manifest_url} on {', '.join(args.line)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from training.server import serve

    return serve(args.config)


def _golden_add(args: argparse.Namespace) -> int:
    from training.data import ImageSet
    from training.golden import GoldenSet

    golden = GoldenSet.load(args.data / "golden")
    added = golden.add(ImageSet.from_folders(args.folder, golden.hw))
    print(f"added {added} image(s); golden set now {golden.summary()}")
    return 0


def _golden_show(args: argparse.Namespace) -> int:
    import json

    from training.golden import GoldenSet

    print(json.dumps(GoldenSet.load(args.data / "golden").summary(), indent=2))
    return 0
