"""One training run end to end: split -> train -> export (parity) -> calibrate -> manifest.

``build_model`` returns the model bytes and an unsigned manifest carrying the
dataset digest and counts, the validation and golden-set figures, the calibrated
thresholds with their expected rates, the export parity and the single-thread
latency. Signing, gating and publishing (later stages) take it from there.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from models.manifest import InputSpec, Manifest, OutputSpec, Thresholds, make_manifest
from training.calibrate import Calibration, calibrate
from training.data import ImageSet
from training.errors import DatasetError
from training.export import ExportResult, export_onnx, latency_ms
from training.metrics import accuracy, auroc, decision_rates
from training.train import TrainConfig, TrainResult, predict, train


@dataclass(frozen=True)
class Budgets:
    escape: float = 0.005
    review: float = 0.05
    false_reject: float = 0.01
    review_cost: float | None = 0.25  # what spare review is weighed against: the gate's review_weight


@dataclass(frozen=True)
class BuildResult:
    manifest: Manifest
    model_bytes: bytes
    training: TrainResult
    export: ExportResult
    calibration: Calibration
    infer_ms: float


def build_model(data: ImageSet, version: str, cfg: TrainConfig = TrainConfig(), budgets: Budgets = Budgets(),
                roi=None, val: float = 0.15, golden: float = 0.15, parent: str | None = None,
                sources: list | None = None, log=sys.stderr) -> BuildResult:
    parts = data.split(val=val, golden=golden, seed=cfg.seed)
    for name in ("train", "val"):
        if set(parts[name].counts().values()) & {0}:
            raise DatasetError(f"the {name} split needs both classes, got {parts[name].counts()}; add data")
    X, y = parts["train"].arrays()
    Xv, yv = parts["val"].arrays()
    print(f"data: {data.stats}; train {parts['train'].counts()}, val {parts['val'].counts()}, "
          f"golden {parts['golden'].counts()}", file=log)
    result = train(X, y, Xv, yv, cfg, log=log)
    hw = data.hw
    exported = export_onnx(result.model, hw, result.norm, Xv)
    ms = latency_ms(exported.model_bytes, (1, 1, *hw))
    val_scores = predict(result.model, Xv, result.norm)
    wv = parts["val"].weights()
    cal = calibrate(val_scores, yv, budgets.escape, budgets.review, budgets.false_reject, weights=wv,
                    review_cost=budgets.review_cost)
    metrics = {
        "validation": _figures(val_scores, yv, cal, wv),
        "calibration": cal.to_dict(),
        "train_seconds": round(result.seconds, 2),
        "train_images": len(y),
        "epochs": cfg.epochs,
        "device": result.device,
        "parity_max_abs_diff": exported.parity_max_diff,
        "parity_images": exported.parity_images,
        "infer_ms_1thread": round(ms, 4),
        "history": [{"epoch": h.epoch, "loss": round(h.loss, 5), "val_accuracy": round(h.val_accuracy, 5),
                     "val_auroc": _finite(h.val_auroc)} for h in result.history],
    }
    if len(parts["golden"]):
        Xg, yg = parts["golden"].arrays()
        metrics["golden"] = _figures(predict(result.model, Xg, result.norm), yg, cal)
    dataset = {"hash": data.digest(), "counts": {k: p.counts() for k, p in parts.items()},
               "stats": data.stats, "sources": list(sources or []), "input_hw": list(hw)}
    spec = InputSpec("image", (1, 1, *hw), colour="gray", scale=result.norm.scale, mean=(result.norm.mean,),
                     std=(result.norm.std,), roi=roi)
    manifest = make_manifest(version, exported.model_bytes, spec, Thresholds(cal.pass_below, cal.reject_above),
                             output=OutputSpec("score"), parent=parent, dataset=dataset, metrics=metrics)
    print(f"model {version}: val accuracy {metrics['validation']['accuracy']:.4f}, val AUROC "
          f"{metrics['validation']['auroc']}, thresholds pass_below {cal.pass_below:.4f} reject_above "
          f"{cal.reject_above:.4f} (escape {cal.escape_rate:.4f}, review {cal.review_rate:.4f}, false reject "
          f"{cal.false_reject_rate:.4f}){'; ' + cal.note if cal.note else ''}; parity {exported.parity_max_diff:.2e}; "
          f"{ms:.3f} ms/inference on 1 thread; trained in {result.seconds:.1f} s", file=log)
    return BuildResult(manifest, exported.model_bytes, result, exported, cal, ms)


def _finite(v: float):
    return None if not np.isfinite(v) else round(float(v), 5)


def _figures(scores: np.ndarray, labels: np.ndarray, cal: Calibration, weights: np.ndarray | None = None) -> dict:
    rates = decision_rates(scores, labels, cal.pass_below, cal.reject_above, weights=weights)
    return {"images": int(len(labels)), "accuracy": round(accuracy(scores, labels), 5),
            "auroc": _finite(auroc(scores, labels)),
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in rates.items()}}
