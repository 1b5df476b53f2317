"""Training the defect classifier: seeded, class-balanced, augmented, with per-epoch validation.

Images arrive as model-size uint8 (training.data); ``to_tensor`` scales them exactly
as the edge does (``p * (scale/std) + (-mean/std)`` in float32), so validation
scores here are the scores the edge will compute. Class imbalance is handled with
a positive-class weight in the loss; AdamW with a one-cycle schedule; a progress
bar and one metrics line per epoch (loss, validation accuracy and AUROC) on stderr.
Runs on CUDA when present, else on CPU with ``threads`` intra-op threads.
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.augment import AugmentConfig, augment_batch
from training.errors import TrainError
from training.metrics import accuracy, auroc
from training.net import DEFAULT_WIDTHS


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 14
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    seed: int = 0
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    stem: int = 0  # channels of a stride-2 stem conv (0: none)
    threads: int = 2
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    progress: bool = True
    device: str | None = None  # None: cuda when available, else cpu
    init_model: Path | None = None  # a released model's version dir to fine-tune from (training.warmstart)
    dihedral_mean: bool = False  # release the mean score over the 8 rotations/flips (training.net.DihedralMean)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise TrainError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Normalisation:
    """The manifest's input scaling: x = (pixel * scale - mean) / std."""

    scale: float = 1 / 255
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, images: np.ndarray) -> "Normalisation":
        x = images.astype(np.float64) / 255.0
        # Rounded so the manifest shows plain numbers; training and edge use the same rounded values.
        return cls(1 / 255, round(float(x.mean()), 4), round(max(float(x.std()), 1e-3), 4))


def to_tensor(images: np.ndarray, norm: Normalisation) -> np.ndarray:
    """(N, H, W) uint8 -> (N, 1, H, W) float32, the same arithmetic as edge.detector.preprocess."""
    a = np.float32(norm.scale / norm.std)
    b = np.float32(-norm.mean / norm.std)
    out = np.empty((images.shape[0], 1, *images.shape[1:]), dtype=np.float32)
    np.multiply(images, a, out=out[:, 0], casting="unsafe")
    out[:, 0] += b
    return out


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    loss: float
    val_accuracy: float
    val_auroc: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    model: object  # training.net.DefectNet (or its DihedralMean), in eval mode, on the CPU
    norm: Normalisation
    history: tuple[EpochMetrics, ...]
    seconds: float
    device: str
    train_counts: dict


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
          cfg: TrainConfig = TrainConfig(), log=sys.stderr) -> TrainResult:
    """Train a DefectNet on (N, H, W) uint8 images with labels 1 = defect."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from training.net import DefectNet

    n, n_pos = len(train_labels), int(np.sum(train_labels))
    if n == 0 or n_pos == 0 or n_pos == n:
        raise TrainError(f"training needs both classes; got {n - n_pos} good and {n_pos} defective images")
    if cfg.dihedral_mean and train_images.shape[1] != train_images.shape[2]:
        raise TrainError(f"dihedral_mean needs a square input, got {train_images.shape[1]}x{train_images.shape[2]}")
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.init_model is not None:
        from training.warmstart import freeze_batchnorm, load_parent

        model, norm = load_parent(cfg.init_model, cfg.widths, cfg.stem)
        model = model.to(device)
    else:
        norm = Normalisation.fit(train_images)
        model = DefectNet(cfg.widths, stem=cfg.stem).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    total_steps = cfg.epochs * steps
    # One-cycle's warm-up is 20 % of the steps less one (0 at 5 steps: a division by zero); a tiny run
    # (a few batches) keeps a constant rate.
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.2)
             if total_steps >= 10 else None)
    pos_weight = torch.tensor([(n - n_pos) / n_pos], device=device)
    rng = np.random.default_rng(cfg.seed)
    history = []
    bar = tqdm(total=cfg.epochs * steps, desc="train", unit="batch", file=log, disable=not cfg.progress,
               dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            if cfg.init_model is not None:
                freeze_batchnorm(model)
            order = rng.permutation(n)
            total = 0.0
            for i in range(steps):
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                images, labels = train_images[idx], train_labels[idx]
                if cfg.augment is not None:
                    images = augment_batch(images, labels, rng, cfg.augment)
                x = torch.from_numpy(to_tensor(images, norm)).to(device)
                y = torch.from_numpy(labels.astype(np.float32)).reshape(-1, 1).to(device)
                loss = F.binary_cross_entropy_with_logits(model.logits(x), y, pos_weight=pos_weight)
                if not torch.isfinite(loss):
                    raise TrainError(f"training diverged at epoch {epoch} (loss {loss.item()}); try a lower lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.item()) * len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            scores = predict(model, val_images, norm, device=device) if len(val_labels) else np.zeros(0)
            m = EpochMetrics(epoch, total / n, accuracy(scores, val_labels), auroc(scores, val_labels),
                             time.perf_counter() - t0)
            history.append(m)
            line = (f"epoch {epoch}/{cfg.epochs}: loss {m.loss:.4f}, val accuracy {m.val_accuracy:.4f}, "
                    f"val AUROC {m.val_auroc:.4f} ({m.seconds:.1f} s)")
            if cfg.progress:
                bar.write(line, file=log)
            elif log is not None:
                print(line, file=log, flush=True)
    finally:
        bar.close()
    model = model.to("cpu").eval()
    if cfg.dihedral_mean:
        from training.net import DihedralMean

        model = DihedralMean(model).eval()
    return TrainResult(model, norm, tuple(history), time.perf_counter() - started, device,
                       {"ok": n - n_pos, "def": n_pos})


def predict(model, images: np.ndarray, norm: Normalisation, batch: int = 256, device: str = "cpu") -> np.ndarray:
    """Scores in [0, 1] for (N, H, W) uint8 images (model put in eval mode)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(to_tensor(images[i:i + batch], norm)).to(device)
            out.append(model(x).reshape(-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
