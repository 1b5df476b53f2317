"""One training run end to end: split -> train -> export (parity) -> calibrate -> manifest.

``build_model`` returns the model bytes and an unsigned manifest carrying the
detector (family, input size, views, precision), the dataset digest and counts, the
validation and golden-set figures, the calibrated thresholds with their expected
rates, the export parity and the single-thread latency. With ``int8=True`` the
float32 graph is quantised (training.quantize) and released instead when its scores
stay within tolerance; the thresholds are then calibrated on the int8 scores.
Signing, gating and publishing (later stages) take it from there.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from models.manifest import InputSpec, Manifest, OutputSpec, Thresholds, make_manifest
from training.calibrate import Calibration, calibrate
from training.data import ImageSet, is_hard_negative
from training.errors import DatasetError
from training.export import ExportResult, export_onnx, latency_ms, session_for
from training.family import describe_dict
from training.metrics import accuracy, auroc, decision_rates
from training.train import TrainConfig, TrainResult, predict, to_tensor, train


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
    quantized: object | None = None  # training.quantize.QuantizeResult when the int8 graph was released


def build_model(data: ImageSet, version: str, cfg: TrainConfig = TrainConfig(), budgets: Budgets = Budgets(),
                roi=None, val: float = 0.15, golden: float = 0.15, parent: str | None = None,
                sources: list | None = None, int8: bool = False, log=sys.stderr) -> BuildResult:
    parts = data.split(val=val, golden=golden, seed=cfg.seed)
    for name in ("train", "val"):
        if set(parts[name].counts().values()) & {0}:
            raise DatasetError(f"the {name} split needs both classes, got {parts[name].counts()}; add data")
    X, y = parts["train"].arrays()
    Xv, yv = parts["val"].arrays()
    print(f"data: {data.stats}; train {parts['train'].counts()}, val {parts['val'].counts()}, "
          f"golden {parts['golden'].counts()}", file=log)
    result = train(X, y, Xv, yv, cfg, log=log, repeats=parts["train"].repeats())
    hw = data.hw
    exported = export_onnx(result.model, hw, result.norm, Xv)
    model_bytes, precision, quantized = exported.model_bytes, "fp32", None
    val_scores = predict(result.model, Xv, result.norm)
    if int8:
        quantized = _quantize(exported.model_bytes, X, Xv, result.norm, log)
        if quantized is not None:
            model_bytes, precision = quantized.model_bytes, "int8"
            val_scores = onnx_scores(model_bytes, Xv, result.norm)
    ms = latency_ms(model_bytes, (1, 1, *hw))
    wv = parts["val"].weights()
    cal = calibrate(val_scores, yv, budgets.escape, budgets.review, budgets.false_reject, weights=wv,
                    review_cost=budgets.review_cost)
    metrics = {
        "validation": _figures(val_scores, yv, cal, wv),
        "calibration": cal.to_dict(),
        "train_seconds": round(result.seconds, 2),
        "train_images": len(y),
        "hard_negatives": int(sum(1 for s in parts["train"].samples if is_hard_negative(s))),
        "epochs": cfg.epochs,
        "device": result.device,
        "precision": result.precision,
        "parity_max_abs_diff": exported.parity_max_diff,
        "parity_images": exported.parity_images,
        "infer_ms_1thread": round(ms, 4),
        "history": [{"epoch": h.epoch, "loss": round(h.loss, 5), "val_accuracy": round(h.val_accuracy, 5),
                     "val_auroc": _finite(h.val_auroc)} for h in result.history],
    }
    if quantized is not None:
        metrics["int8"] = {"max_abs_diff_vs_fp32": quantized.max_diff, "check_images": quantized.check_images,
                           "fp32_ms_1thread": round(quantized.fp32_ms, 4), "int8_ms_1thread": round(quantized.int8_ms, 4)}
    if len(parts["golden"]):
        Xg, yg = parts["golden"].arrays()
        golden_scores = (onnx_scores(model_bytes, Xg, result.norm) if quantized is not None
                         else predict(result.model, Xg, result.norm))
        metrics["golden"] = _figures(golden_scores, yg, cal)
    dataset = {"hash": data.digest(), "counts": {k: p.counts() for k, p in parts.items()},
               "stats": data.stats, "sources": list(sources or []), "input_hw": list(hw)}
    spec = InputSpec("image", (1, 1, *hw), colour="gray", scale=result.norm.scale, mean=(result.norm.mean,),
                     std=(result.norm.std,), roi=roi)
    views = 8 if cfg.dihedral_mean else 1
    manifest = make_manifest(version, model_bytes, spec, Thresholds(cal.pass_below, cal.reject_above),
                             output=OutputSpec("score"), parent=parent, dataset=dataset, metrics=metrics,
                             detector=describe_dict(result.net, hw, views, precision))
    print(f"model {version}: val accuracy {metrics['validation']['accuracy']:.4f}, val AUROC "
          f"{metrics['validation']['auroc']}, thresholds pass_below {cal.pass_below:.4f} reject_above "
          f"{cal.reject_above:.4f} (escape {cal.escape_rate:.4f}, review {cal.review_rate:.4f}, false reject "
          f"{cal.false_reject_rate:.4f}){'; ' + cal.note if cal.note else ''}; parity {exported.parity_max_diff:.2e}; "
          f"{ms:.3f} ms/inference on 1 thread ({precision}); trained in {result.seconds:.1f} s", file=log)
    return BuildResult(manifest, model_bytes, result, exported, cal, ms, quantized)


def onnx_scores(model_bytes: bytes, images: np.ndarray, norm, input_name: str = "image") -> np.ndarray:  # noqa: ANN001
    """Scores of an ONNX graph (one image per run, as the edge runs it) for (N, H, W) uint8 images."""
    session = session_for(model_bytes, threads=1)
    x = to_tensor(images, norm)
    return np.array([session.run(None, {input_name: x[i:i + 1]})[0].reshape(-1)[0] for i in range(len(x))],
                    dtype=np.float64)


def _quantize(fp32_bytes: bytes, train_images: np.ndarray, check_images: np.ndarray, norm, log):  # noqa: ANN001
    """The int8 graph calibrated on up to 256 training images, or None (and why) when it is refused."""
    from training.quantize import QuantizationError, quantize_int8

    rng = np.random.default_rng(0)
    calib = train_images[rng.permutation(len(train_images))[:256]]
    try:
        q = quantize_int8(fp32_bytes, to_tensor(calib, norm), to_tensor(check_images[:256], norm))
    except QuantizationError as exc:
        print(f"int8 refused, releasing float32: {exc}", file=log)
        return None
    print(q.summary(), file=log)
    return q


def _finite(v: float):
    return None if not np.isfinite(v) else round(float(v), 5)


def _figures(scores: np.ndarray, labels: np.ndarray, cal: Calibration, weights: np.ndarray | None = None) -> dict:
    rates = decision_rates(scores, labels, cal.pass_below, cal.reject_above, weights=weights)
    return {"images": int(len(labels)), "accuracy": round(accuracy(scores, labels), 5),
            "auroc": _finite(auroc(scores, labels)),
            **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in rates.items()}}
