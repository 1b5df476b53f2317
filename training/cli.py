"""``qc train ...``: train a model version from seed folders and/or synthetic parts, build the default model.

Nothing heavy is imported here at import time (torch loads only inside a handler),
so ``qc --help`` and the edge's commands stay fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from qcloop.cli import add_group

    cmds = add_group(sub, "train", "train, export and calibrate defect models")
    run = cmds.add_parser("run", help="train a new model version from image folders and/or synthetic parts",
                          description="Train on DIR/{ok,def}/* (or DIR/{train,val,test}/{ok,def}/*) and/or "
                                      "synthetic parts; write OUT/VERSION/{model.onnx,manifest.json}.")
    run.add_argument("--data", type=Path, action="append", default=[], metavar="DIR",
                     help="seed image folder (repeatable); images are read in place, never copied")
    run.add_argument("--synthetic", type=int, default=0, metavar="N", help="also train on N synthetic parts")
    run.add_argument("--epochs", type=int, default=14)
    run.add_argument("--out", type=Path, default=Path("var/models"), help="model registry folder (default var/models)")
    run.add_argument("--version", default=None, help="version name (default: a UTC timestamp)")
    run.add_argument("--parent", default=None, help="version this one replaces")
    run.add_argument("--size", type=int, default=128, help="model input side in pixels (default 128)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--escape-budget", type=float, default=0.005, help="share of defects that may pass (0.005)")
    run.add_argument("--review-budget", type=float, default=0.05, help="share of parts sent to review (0.05)")
    run.add_argument("--false-reject-budget", type=float, default=0.01, help="share of good parts rejected (0.01)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    run.set_defaults(func=_run)

    dm = cmds.add_parser("default-model", help="rebuild the built-in default model (models/default) reproducibly",
                         description="Train the built-in model on the synthetic line with fixed seeds.")
    dm.add_argument("--out", type=Path, default=None, help="output folder (default: models/default)")
    dm.set_defaults(func=_default_model)

    from training.release_cli import register as register_release

    register_release(cmds)  # keygen, gate, publish, serve, golden


def _run(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from models.registry import Registry
    from training.data import ImageSet
    from training.errors import TrainError
    from training.pipeline import Budgets, build_model
    from training.train import TrainConfig

    if not args.data and args.synthetic <= 0:
        raise TrainError("nothing to train on: give --data DIR and/or --synthetic N")
    if args.size < 32:
        raise TrainError(f"--size must be >= 32, got {args.size}")
    hw = (args.size, args.size)
    version = args.version or datetime.now(timezone.utc).strftime("%Y%m%d.%H%M%S")
    sets, sources = [], []
    for folder in args.data:
        sets.append(ImageSet.from_folders(folder, hw))
        sources.append({"folder": str(folder)})
    if args.synthetic > 0:
        sets.append(ImageSet.from_synthetic(args.synthetic, hw, seed=args.seed))
        sources.append({"synthetic": {"seed": args.seed, "parts": args.synthetic}})
    data = sets[0]
    for more in sets[1:]:
        data = data + more
    data = data.dedup()
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    result = build_model(data, version, cfg, Budgets(args.escape_budget, args.review_budget,
                                                     args.false_reject_budget),
                         parent=args.parent, sources=sources)
    where = Registry(args.out).add(result.manifest, result.model_bytes)
    print(f"wrote {where}")
    return 0


def _default_model(args: argparse.Namespace) -> int:
    from training.default_model import DEFAULT_OUT, build_default

    out = args.out or DEFAULT_OUT
    build_default(out)
    print(f"wrote {out}")
    return 0
