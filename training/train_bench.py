"""``qc bench train``: how fast the trainer trains each detector family, against the machine's limit.

For each family at its default input size, in one process:

- ``trainer_img_per_s`` -- one epoch of the trainer's own loop (``training.train.train``:
  augmentation, tensors, forward, backward, optimiser step) over ``images`` images;
- ``raw_img_per_s`` -- the same network, batch size, precision and memory format doing
  nothing but forward + backward + AdamW step on one prepared batch: the limit;
- ``ratio`` = trainer / raw (what the data path costs; 1.0 is free);
- ``epoch_s`` -- that epoch's wall time including its validation pass, and
  ``epoch_s_per_5000`` scaled to 5,000 training images;
- ``infer_ms_fp32`` / ``infer_ms_int8`` -- the exported model on one onnxruntime thread,
  as the edge runs it (int8 when its scores stay within tolerance, else the reason).

The images are synthetic parts (hardware.synthetic) rendered once and cycled: the
throughput does not depend on what the parts show. With ``--full DIR`` it also runs a
whole default training of the default family on DIR (``qc train run``'s path) and
reports its wall time.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np

from training.errors import TrainError

DISTINCT_RENDERS = 256


def synthetic_images(n: int, size: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``n`` model-size part images (``DISTINCT_RENDERS`` renders, cycled) and their labels."""
    from training.data import ImageSet

    base = ImageSet.from_synthetic(min(n, DISTINCT_RENDERS), (size, size), seed=seed, defect_rate=0.4)
    images, labels = base.arrays()
    reps = -(-n // len(images))
    return np.tile(images, (reps, 1, 1))[:n], np.tile(labels, reps)[:n]


def raw_throughput(cfg, images: np.ndarray, labels: np.ndarray, steps: int = 8, warmup: int = 2) -> float:  # noqa: ANN001
    """Images per second of bare forward + backward + step on one prepared batch (the trainer's Stepper)."""
    from training.train import Stepper, pick_device, prepare_model, resolve_precision, set_train_mode

    device = pick_device(cfg.device)
    model, norm = prepare_model(cfg, images, device)
    stepper = Stepper(model, cfg, device, resolve_precision(cfg.precision, device), 1.0, 0)
    bs = min(cfg.batch_size, len(images))
    x, y = stepper.tensors(images[:bs], labels[:bs], norm)
    set_train_mode(model, cfg)
    for _ in range(warmup):
        stepper.step(x, y)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        stepper.step(x, y)
    _sync(device)
    return bs * steps / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_family(family: str, n_images: int, batch_size: int = 64, threads: int = 2, device: str | None = None,
                 size: int | None = None, spec=None, log=sys.stderr) -> dict:  # noqa: ANN001
    """The figures of one family at its default size (see the module docstring); ``size``/``spec`` override."""
    import torch

    from training.export import export_onnx, latency_ms
    from training.family import NetSpec
    from training.quantize import QuantizationError, quantize_int8
    from training.train import TrainConfig, to_tensor, train

    spec = spec or NetSpec(family)
    size = size or spec.default_size
    n_val = max(64, n_images * 15 // 100)
    print(f"{family}: rendering parts at {size}x{size}", file=log, flush=True)
    images, labels = synthetic_images(n_images + n_val, size)
    X, y, Xv, yv = images[:n_images], labels[:n_images], images[n_images:], labels[n_images:]
    cfg = TrainConfig(epochs=1, batch_size=batch_size, net=spec, threads=threads, progress=False, device=device)
    torch.set_num_threads(threads)
    print(f"{family}: one epoch of the trainer on {n_images} images", file=log, flush=True)
    result = train(X, y, Xv, yv, cfg, log=log)
    epoch = result.history[0]
    print(f"{family}: the same network's bare steps", file=log, flush=True)
    raw = raw_throughput(replace(cfg, seed=cfg.seed + 1), X, y)
    exported = export_onnx(result.model, (size, size), result.norm, Xv[:32])
    fp32_ms = latency_ms(exported.model_bytes, (1, 1, size, size))
    out = {"family": family, "size": size, "batch_size": batch_size, "threads": threads, "device": result.device,
           "precision": result.precision, "images": n_images, "trainer_img_per_s": round(epoch.images_per_s, 1),
           "raw_img_per_s": round(raw, 1), "ratio": round(epoch.images_per_s / raw, 3),
           "epoch_s": round(epoch.seconds, 1), "epoch_s_per_5000": round(epoch.seconds * 5000 / n_images, 1),
           "infer_ms_fp32": round(fp32_ms, 3), "model_mb_fp32": round(len(exported.model_bytes) / 1e6, 2)}
    try:
        q = quantize_int8(exported.model_bytes, to_tensor(X[:128], result.norm), to_tensor(Xv[:64], result.norm))
        out.update(infer_ms_int8=round(q.int8_ms, 3), int8_max_diff=round(q.max_diff, 4),
                   model_mb_int8=round(len(q.model_bytes) / 1e6, 2))
    except QuantizationError as exc:
        out.update(infer_ms_int8=None, int8_refused=str(exc))
    return out


def full_training(data, log=sys.stderr) -> dict:  # noqa: ANN001 (a folder path)
    """A whole default training of the default family on ``data``, as ``qc train run`` does it, timed."""
    from training.data import ImageSet, folder_jobs
    from training.defaults import choose
    from training.pipeline import build_model

    t0 = time.perf_counter()
    jobs = folder_jobs(data)
    plan = choose(None, None, n_images=len(jobs))
    print(f"full training: {plan.describe()}", file=log, flush=True)
    data_set = ImageSet.from_files(jobs, (plan.size, plan.size)).dedup()
    loaded = time.perf_counter() - t0
    built = build_model(data_set, "bench", plan.train_config(), log=log)
    v = built.manifest.metrics["validation"]
    return {"data": str(data), "images": len(data_set), "family": plan.net.family, "size": plan.size,
            "epochs": plan.epochs, "load_s": round(loaded, 1), "train_s": round(built.training.seconds, 1),
            "seconds": round(time.perf_counter() - t0, 1), "val_auroc": v["auroc"], "val_accuracy": v["accuracy"]}


def main(args) -> int:  # noqa: ANN001
    from training.family import FAMILIES

    if args.images < 64:
        raise TrainError(f"--images must be >= 64, got {args.images}")
    families = args.family or FAMILIES
    doc = {"families": [bench_family(f, args.images, args.batch_size, args.threads) for f in families]}
    if args.full is not None:
        doc["full_training"] = full_training(args.full)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for row in doc["families"]:
            print(f"{row['family']:>10} {row['size']:>4} px {row['precision']}: trainer {row['trainer_img_per_s']} img/s, "
                  f"raw {row['raw_img_per_s']} img/s, ratio {row['ratio']}; {row['epoch_s_per_5000']} s per epoch of "
                  f"5,000; edge {row['infer_ms_fp32']} ms fp32, {row.get('infer_ms_int8')} ms int8")
        if "full_training" in doc:
            f = doc["full_training"]
            print(f"full training of {f['family']} on {f['data']} ({f['images']} images, {f['epochs']} epochs): "
                  f"{f['seconds']} s")
    return 0
