"""`qc bench line`: what a model does on the synthetic line's own mix of parts, as a plant would count it.

Fresh parts from the line's generator (the mix the edge's synthetic camera draws: 10 % defects,
20 % with lighting artefacts, defects skewed to faint ones), each rendered at 1280x1024 and
scored exactly as the edge scores a frame (the edge's Detector: ROI crop, resize, every view the
model scores), then decided at the model's own thresholds (edge.decision.decide). Prints the share
of parts held for review, the share of good parts rejected (false rejects) and the share of
defects passed (escapes), each with its 95 % Clopper-Pearson interval, and the same split by
lighting artefact so glare rejected as a defect shows. The seed (4242) is none the built-in model
was trained or calibrated on.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from edge.decision import HOLD, PASS, REJECT, decide
from edge.detector import Detector
from hardware.synthetic import PartGenerator
from models import builtin
from training.metrics import binomial_upper

SEED = 4242
#: The targets a built-in model has on its own line: review share, false-reject rate, escape rate.
TARGETS = {"review_share": 0.08, "false_reject_rate": 0.02, "escape_rate": 0.01}


def run(model_dir: Path | None = None, parts: int = 6000, seed: int = SEED, defect_rate: float = 0.1,
        artefact_rate: float = 0.2, progress: bool = True) -> dict[str, Any]:
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    folder = Path(model_dir) if model_dir is not None else builtin.DEFAULT_DIR
    det = Detector.load(folder, threads=1)
    t = det.thresholds
    gen = PartGenerator(seed=seed, width=1280, height=1024, defect_rate=defect_rate, artefact_rate=artefact_rate)
    counts = {k: 0 for k in ("parts", "held", "good", "false_rejects", "defects", "escapes",
                             "artefact_good", "artefact_false_rejects")}
    t0 = time.monotonic()
    for i in range(parts):
        frame, truth = gen.render(i)
        action = decide(det.score(frame), t.pass_below, t.reject_above).action
        counts["parts"] += 1
        counts["held"] += action == HOLD
        if truth.is_defect:
            counts["defects"] += 1
            counts["escapes"] += action == PASS
        else:
            counts["good"] += 1
            counts["false_rejects"] += action == REJECT
            if truth.artefacts:
                counts["artefact_good"] += 1
                counts["artefact_false_rejects"] += action == REJECT
        if progress and (i + 1) % 1000 == 0:
            print(f"bench line: {i + 1}/{parts} parts ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    rates = {"review_share": _rate(counts["held"], counts["parts"]),
             "false_reject_rate": _rate(counts["false_rejects"], counts["good"]),
             "escape_rate": _rate(counts["escapes"], counts["defects"]),
             "artefact_false_reject_rate": _rate(counts["artefact_false_rejects"], counts["artefact_good"])}
    return {"model": det.version, "seed": seed, "defect_rate": defect_rate, "artefact_rate": artefact_rate,
            "thresholds": {"pass_below": t.pass_below, "reject_above": t.reject_above}, **counts,
            **{k: v["rate"] for k, v in rates.items()}, "intervals95": {k: v["interval"] for k, v in rates.items()},
            "targets": TARGETS, "met": {k: rates[k]["rate"] is not None and rates[k]["rate"] <= v
                                        for k, v in TARGETS.items()},
            "seconds": round(time.monotonic() - t0, 1)}


def _rate(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"rate": None, "interval": None}
    low = 0.0 if k == 0 else 1.0 - binomial_upper(n - k, n, 0.975)
    return {"rate": round(k / n, 5), "interval": [round(low, 5), round(binomial_upper(k, n, 0.975), 5)]}


def main(args: Any) -> int:
    result = run(model_dir=args.model, parts=args.parts, seed=args.seed, progress=not args.quiet)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
    return 0
