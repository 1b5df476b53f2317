"""``qc train ...``: train a model version from seed folders and/or synthetic parts, build the default model.

Nothing heavy is imported here at import time (torch loads only inside a handler),
so ``qc --help`` and the edge's commands stay fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from qcloop.commands import add_group

    cmds = add_group(sub, "train", "train, export and calibrate defect models")
    run = cmds.add_parser("run", help="train a new model version from image folders and/or synthetic parts",
                          description="Train on DIR/{ok,def}/* (or DIR/{train,val,test}/{ok,def}/*) and/or "
                                      "synthetic parts; write OUT/VERSION/{model.onnx,manifest.json}.")
    run.add_argument("--data", type=Path, action="append", default=[], metavar="DIR",
                     help="seed image folder (repeatable); images are read in place, never copied")
    run.add_argument("--synthetic", type=int, default=0, metavar="N", help="also train on N synthetic parts")
    run.add_argument("--family", default="auto", choices=("auto", "defectnet", "lite0", "lite2"),
                     help="detector family (default auto: lite2, pretrained, below 3,000 images; defectnet from 3,000)")
    run.add_argument("--epochs", type=int, default=None,
                     help="training epochs (default: by family and data size, training.defaults)")
    run.add_argument("--out", type=Path, default=Path("var/models"), help="model registry folder (default var/models)")
    run.add_argument("--version", default=None, help="version name (default: a UTC timestamp)")
    run.add_argument("--parent", default=None, help="version this one replaces")
    run.add_argument("--size", type=int, default=None,
                     help="model input side in pixels (default: the family's, defectnet 128, lite0 224, lite2 300)")
    run.add_argument("--freeze", type=int, default=0,
                     help="lite0/lite2: keep the stem and the first N blocks at their ImageNet weights (faster)")
    run.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                     help="training arithmetic (default auto: bf16 autocast where the CPU or GPU has it)")
    run.add_argument("--views", type=int, choices=(1, 8), default=None,
                     help="score 1 view of a part or the mean of its 8 rotations/flips, 8 x the inference "
                          "(default: defectnet 8, lite0 1, lite2 8)")
    run.add_argument("--int8", action="store_true",
                     help="release an int8-quantised graph when its scores stay within 0.02 of float32 "
                          "(both timings are printed)")
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


LOOP_HELP = """Simulate the learning loop on a labelled folder with an oracle reviewer.

The folder (DIR/ok, DIR/def or DIR/{train,test}/{ok,def}) is grouped into near-duplicates and
split by whole groups into a seed set, a stream (the production line) and a test set; the
folder's own train/test filing is ignored. A share of the good stream and test parts gets an
injected lighting artefact. Round 0 trains on the seed set; each round then runs one slice of
the stream through the edge's decision, sends uncertain and audit parts to the oracle, retrains
on all labels, calibrates thresholds on labelled calib images and gates the candidate on
labelled gate images. A random baseline labels as many parts at random.

Figures on the test set (current model, production thresholds):
  labels                      labelled images so far (seed + verdicts)
  ai_accuracy                 the model alone, defect when score >= 0.5
  review_rate                 share of test parts sent to HOLD (review)
  hitl_accuracy               accuracy when held parts take the reviewer's (true) label
  escape_rate                 defects PASSed / all defects
  false_reject_rate           good parts REJECTed / all good parts
  artefact_false_reject_rate  the same on good parts with an injected artefact
  auroc                       the model's ranking of the test parts, whatever its thresholds
Each round's candidate (the gate's decision and reason) also carries these figures for itself
(candidate.test; "refused candidate" in the table), so a refusal can be checked on the test parts.
"""


TRAIN_HELP = """How fast the trainer trains each detector family, against this machine's limit.

Per family at its default input size, in one process: one epoch of the trainer's own loop
(augmentation, tensors, forward, backward, step) over --images synthetic parts; the same
network's bare forward + backward + step on one prepared batch (the limit); their ratio;
seconds per epoch scaled to 5,000 images; and the exported model's single-thread
onnxruntime time, float32 and int8. --full DIR also times a whole default training on DIR.
"""


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    t = bench_sub.add_parser("train", help="trainer throughput per detector family vs the raw step limit",
                             description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--family", type=_families, default=None, metavar="F[,F...]",
                   help="families to measure (default: all)")
    t.add_argument("--images", type=int, default=5000, help="training images in the measured epoch (default 5000)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, the trainer's)")
    t.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    t.add_argument("--full", type=Path, default=None, metavar="DIR",
                   help="also time a whole default training (qc train run) on this labelled folder")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=lambda args: __import__("training.train_bench", fromlist=["main"]).main(args))

    ln = bench_sub.add_parser("line", help="a model on the synthetic line's own mix: review share, false rejects, "
                              "escapes", description=__import__("training.line_bench", fromlist=["run"]).__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    ln.add_argument("--model", type=Path, default=None, metavar="DIR",
                    help="model version folder (default: the built-in model, models/default)")
    ln.add_argument("--parts", type=_positive, default=6000, help="fresh line parts to render and decide (default 6000)")
    ln.add_argument("--seed", type=int, default=4242, help="the line generator's seed (default 4242)")
    ln.add_argument("--json", action="store_true", help="print one JSON object")
    ln.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ln.set_defaults(func=lambda args: __import__("training.line_bench", fromlist=["main"]).main(args))

    b = bench_sub.add_parser("loop", help="the learning loop on a labelled folder, uncertainty vs random labels",
                             description=LOOP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--data", type=Path, default=Path("../shared/datasets/casting"), metavar="DIR|elpv",
                   help="labelled folder (default ../shared/datasets/casting, from the current folder), or elpv: "
                        "the solar-cell photographs of the installed elpv-dataset package (defect probability "
                        ">= 0.5 is defective)")
    b.add_argument("--seed-size", type=int, default=200, help="labelled seed images (default 200)")
    b.add_argument("--rounds", type=int, default=3, help="retraining rounds (default 3; 0 with --ceiling: the "
                                                             "ceiling only)")
    b.add_argument("--family", type=_families, default=("defectnet",), metavar="F[,F...]",
                   help="detector families (defectnet, lite0, lite2); the rounds train the first, --ceiling one model "
                        "per family on the same test parts (default defectnet)")
    b.add_argument("--test-share", type=float, default=0.2, help="share of images held out as the test set (0.2)")
    b.add_argument("--artefact-share", type=float, default=0.3,
                   help="share of good stream and test parts given a lighting artefact (0.3)")
    b.add_argument("--label-share", type=_shares, default=(0.45, 0.15), metavar="S[,S...]",
                   help="review band while the loop learns, as a share of each stream slice; one per round, "
                        "the last repeating (default 0.45,0.15: most while the model is new)")
    b.add_argument("--audit-rate", type=_shares, default=(0.03,), metavar="S[,S...]",
                   help="share of confident decisions also reviewed, one per round, the last repeating "
                        "(default 0.03); they tell calibration what the confident parts look like")
    b.add_argument("--escape-budget", type=float, default=None,
                   help="production calibration: share of defects passed (default casting 0.0025, elpv 0.02)")
    b.add_argument("--review-budget", type=float, default=None,
                   help="production calibration: share of parts reviewed (default casting 0.03, elpv 0.20)")
    b.add_argument("--false-reject-budget", type=float, default=None,
                   help="production calibration: share of good parts rejected (default casting 0.01, elpv 0.05)")
    b.add_argument("--epochs", type=int, default=None,
                   help="training epochs per model (default: defectnet 40, lite0/lite2 20)")
    b.add_argument("--size", type=int, default=None,
                   help="model input side in pixels (default: defectnet 128, lite0 224, lite2 300)")
    b.add_argument("--widths", type=_widths, default=(16, 32, 48, 64, 96), metavar="W,W,...",
                   help="defectnet conv widths, one per 2x2 pooling stage (default 16,32,48,64,96)")
    b.add_argument("--blocks", type=int, default=0,
                   help="lite0/lite2: backbone blocks kept, of 16/21 (default 0: the whole backbone)")
    b.add_argument("--freeze", type=int, default=0,
                   help="lite0/lite2: stem and first N blocks kept at their ImageNet weights (default 0: all train)")
    b.add_argument("--views", choices=("1", "8"), default=None,
                   help="score 1 view of each part or the mean over its 8 rotations/flips, in the model "
                        "(default: defectnet 8, lite0 1, lite2 8)")
    b.add_argument("--augment-artefacts", action="store_true",
                   help="also paint synthetic artefacts during training (off: the line's artefacts are new to the seed model)")
    b.add_argument("--seed", type=int, default=0, help="random seed for split, artefacts, audits and training")
    b.add_argument("--scores", type=Path, default=None, metavar="DIR",
                   help="also write each reported model's calibration and test scores to DIR (one .npz per "
                        "chain and round), to compare calibration rules on the same models")
    b.add_argument("--ceiling", type=float, default=None, nargs="?", const=-1.0, metavar="SHARE",
                   help="also train a model on every seed and stream part, labelled, and report it at its "
                        "calibrated thresholds and at the best band of at most SHARE (default: the review "
                        "budget) of the test "
                        "parts, chosen with hindsight: the bound on what more labels could buy (one more long "
                        "training)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="draw the rates against labels")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")
    b.set_defaults(func=_bench_loop)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel counts like 16,32,48, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be >= 1, got {text!r}")
    return widths


def _families(text: str) -> tuple[str, ...]:
    from training.family import FAMILIES

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in FAMILIES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"families are {', '.join(FAMILIES)}; got {text!r}")
    return names


def _shares(text: str) -> tuple[float, ...]:
    try:
        shares = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated shares like 0.4,0.15, got {text!r}") from None
    if not all(0 < v < 1 for v in shares):
        raise argparse.ArgumentTypeError(f"each share must be in (0, 1), got {text!r}")
    return shares


def _bench_loop(args: argparse.Namespace) -> int:
    from training.loop_bench import main

    return main(args)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    from models.registry import Registry
    from training.data import ImageSet, folder_jobs
    from training.defaults import choose
    from training.errors import TrainError
    from training.pipeline import Budgets, build_model

    if not args.data and args.synthetic <= 0:
        raise TrainError("nothing to train on: give --data DIR and/or --synthetic N")
    if args.size is not None and args.size < 32:
        raise TrainError(f"--size must be >= 32, got {args.size}")
    jobs = {folder: folder_jobs(folder) for folder in args.data}
    plan = choose(None if args.family == "auto" else args.family, args.size,
                  n_images=sum(map(len, jobs.values())) + max(args.synthetic, 0), epochs=args.epochs,
                  views=args.views)
    print(f"plan: {plan.describe()}")
    hw = (plan.size, plan.size)
    version = args.version or datetime.now(timezone.utc).strftime("%Y%m%d.%H%M%S")
    sets, sources = [], []
    for folder, files in jobs.items():
        sets.append(ImageSet.from_files(files, hw))
        sources.append({"folder": str(folder)})
    if args.synthetic > 0:
        sets.append(ImageSet.from_synthetic(args.synthetic, hw, seed=args.seed))
        sources.append({"synthetic": {"seed": args.seed, "parts": args.synthetic}})
    data = sets[0]
    for more in sets[1:]:
        data = data + more
    data = data.dedup()
    cfg = replace(plan.train_config(), seed=args.seed, progress=not args.no_progress, freeze=args.freeze,
                  precision=args.precision)
    result = build_model(data, version, cfg, Budgets(args.escape_budget, args.review_budget,
                                                     args.false_reject_budget),
                         parent=args.parent, sources=sources, int8=args.int8)
    where = Registry(args.out).add(result.manifest, result.model_bytes)
    print(f"wrote {where}")
    return 0


def _default_model(args: argparse.Namespace) -> int:
    from training.default_model import DEFAULT_OUT, build_default

    out = args.out or DEFAULT_OUT
    build_default(out)
    print(f"wrote {out}")
    return 0
