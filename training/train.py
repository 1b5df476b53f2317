"""Training a defect detector: seeded, class-balanced, augmented, with per-epoch validation.

Images arrive as model-size uint8 (training.data), decoded and resized once per run;
``to_tensor`` scales them exactly as the edge does (``p * (scale/std) + (-mean/std)``
in float32), so validation scores here are the scores the edge will compute. The
network is any family of training.family (``TrainConfig.net``). The loss weighs both
classes equally (a positive-class weight of good/defective); the released network's
output bias is then moved back by the log of that weight, so its score is the defect
probability at the data's own class mix (what the manifest says it is, and 0.5 the
more-likely-than-not point). AdamW with a one-cycle schedule; a
progress bar and one metrics line per epoch (loss, validation accuracy and AUROC, the
loop's images per second) on stderr.

Speed: tensors and weights are channels-last, and the forward and backward passes run
under bfloat16 autocast where the hardware has it (CUDA, or a CPU with AVX-512 BF16 or
AMX; ``precision = "auto"``); the weights stay float32, so the exported ONNX graph is
float32 and matches PyTorch's float32 scores (training.export checks it). Runs on CUDA
when present, else on the CPU with ``threads`` intra-op threads.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.augment import AugmentConfig, augment_batch
from training.errors import TrainError
from training.family import NetSpec
from training.metrics import accuracy, auroc
from training.scaling import Normalisation, to_tensor

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 14
    batch_size: int = 64
    lr: float | None = None  # None: the family's default (training.family.DEFAULT_LR)
    weight_decay: float = 1e-4
    seed: int = 0
    net: NetSpec = field(default_factory=NetSpec)
    freeze: int = 0  # lite*: keep the stem and the first N blocks at their pretrained weights (faster)
    precision: str = "auto"  # auto: bf16 autocast where the hardware has it, else fp32
    ema: float | None = None  # release the exponential moving average of the weights (decay per step), e.g. 0.99
    focal: float = 0.0  # hard-example weighting: each image's loss times (1 - p_correct) ** focal (0: plain)
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
        if self.lr is not None and not self.lr > 0:
            raise TrainError(f"lr must be > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.freeze and not self.net.pretrained_family:
            raise TrainError(f"freeze keeps pretrained stages; the {self.net.family} family has none")
        if not 0 <= self.focal <= 5:
            raise TrainError(f"focal must be in [0, 5], got {self.focal}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise TrainError(f"ema decay must be in (0, 1), got {self.ema}")
        if self.freeze and not 0 < self.freeze < self.net.blocks:
            raise TrainError(f"freeze must be in 0..{self.net.blocks - 1} (below the blocks kept), got {self.freeze}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.net.default_lr


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    loss: float
    val_accuracy: float
    val_auroc: float
    seconds: float
    images_per_s: float = 0.0  # the training loop's throughput (augmentation, tensors, steps)


@dataclass(frozen=True)
class TrainResult:
    model: object  # a training.family network (or its DihedralMean), in eval mode, on the CPU, float32
    norm: Normalisation
    history: tuple[EpochMetrics, ...]
    seconds: float
    device: str
    train_counts: dict
    precision: str = "fp32"
    net: NetSpec = field(default_factory=NetSpec)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bf16_supported(device: str) -> bool:
    """True where bfloat16 matrix maths is native: CUDA with bf16, or a CPU with AVX-512 BF16 / AMX."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, name, lambda: False)()) for name in ("_is_avx512_bf16_supported",
                                                                          "_is_amx_tile_supported"))


def resolve_precision(requested: str, device: str) -> str:
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return requested


def pick_device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


class Stepper:
    """One optimiser step on a batch, the same code for the trainer and for ``qc bench train``'s raw limit."""

    def __init__(self, model, cfg: TrainConfig, device: str, precision: str, pos_weight: float, total_steps: int):
        import torch

        self.model, self.device = model, device
        self.bf16 = precision == "bf16"
        self.device_type = "cuda" if device.startswith("cuda") else "cpu"
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        # One-cycle's warm-up is 20 % of the steps less one (0 at 5 steps: a division by zero); a tiny run
        # (a few batches) keeps a constant rate.
        self.sched = (torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=cfg.learning_rate, total_steps=total_steps,
                                                          pct_start=0.2) if total_steps >= 10 else None)
        self.pos_weight = torch.tensor([pos_weight], device=device)
        self.focal = cfg.focal

    def tensors(self, images: np.ndarray, labels: np.ndarray, norm: Normalisation):
        import torch

        x = torch.from_numpy(to_tensor(images, norm)).to(self.device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels.astype(np.float32)).reshape(-1, 1).to(self.device)
        return x, y

    def step(self, x, y):  # noqa: ANN001, ANN201 (tensors in, the loss tensor out)
        import torch
        from torch.nn import functional as F

        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model.logits(x)
        logits = logits.float()
        if self.focal:
            # Hard examples weigh more: an image the net already gets right with p = 0.99 counts 1e-4 as much.
            each = F.binary_cross_entropy_with_logits(logits, y, pos_weight=self.pos_weight, reduction="none")
            p = torch.sigmoid(logits)
            loss = (each * (1 - (y * p + (1 - y) * (1 - p))).pow(self.focal)).mean()
        else:
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=self.pos_weight)
        if not torch.isfinite(loss):
            raise TrainError(f"training diverged (loss {loss.item()}); try a lower lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return loss


def prepare_model(cfg: TrainConfig, train_images: np.ndarray, device: str):  # noqa: ANN201
    """(network on ``device``, channels-last, frozen stages set; its Normalisation)."""
    import torch

    if device == "cpu":
        from training.heap import keep_freed_memory

        keep_freed_memory()  # each step's activations reuse the last step's memory (training.heap)

    if cfg.init_model is not None:
        from training.warmstart import load_parent

        model, norm = load_parent(cfg.init_model, cfg.net)
    else:
        from training.net import build

        model, norm = build(cfg.net), cfg.net.normalisation(train_images)
    for module in frozen_modules(model, cfg.freeze):
        for p in module.parameters():
            p.requires_grad_(False)
    return model.to(device).to(memory_format=torch.channels_last), norm


def frozen_modules(model, freeze: int) -> list:  # noqa: ANN001
    """The stem and the first ``freeze`` blocks of a lite net (none when freeze is 0)."""
    if not freeze:
        return []
    return [model.stem, *list(model.blocks)[:freeze]]


def set_train_mode(model, cfg: TrainConfig) -> None:  # noqa: ANN001
    """Train mode, except BatchNorm that must keep its statistics: a warm start's folded ones, frozen stages'."""
    model.train()
    if cfg.init_model is not None:
        from training.warmstart import freeze_batchnorm

        freeze_batchnorm(model)
    for module in frozen_modules(model, cfg.freeze):
        module.eval()


def _ema(model, decay: float | None):  # noqa: ANN001, ANN202
    """A running exponential average of the weights and BatchNorm statistics (None when off).

    On a few hundred labels the weights of the last steps wander; their average scores
    more steadily than any one of them, at the cost of one copy of the weights. The decay
    ramps up as (1 + n) / (10 + n) towards ``decay`` over the first steps, so a short run
    is not averaged with the random head of its first step.
    """
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel

    def average(avg, current, n):  # noqa: ANN001, ANN202
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return avg * d + current * (1.0 - d)

    return AveragedModel(model, avg_fn=average, use_buffers=True)


def train(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
          cfg: TrainConfig = TrainConfig(), log=sys.stderr, repeats: np.ndarray | None = None) -> TrainResult:
    """Train a network of ``cfg.net`` on (N, H, W) uint8 images with labels 1 = defect.

    ``repeats`` (optional, (N,) ints >= 1): how many times each image is shown per epoch (hard
    negatives more often, training.data.HARD_NEGATIVE_REPEATS); the class balance counts the showings.
    """
    import torch
    from tqdm import tqdm

    if repeats is not None:
        repeats = np.asarray(repeats, dtype=np.int64).reshape(-1)
        if repeats.shape != (len(train_labels),) or repeats.min(initial=1) < 1:
            raise TrainError(f"repeats must be {len(train_labels)} integers >= 1, one per training image")
    shown = np.arange(len(train_labels)) if repeats is None else np.repeat(np.arange(len(train_labels)), repeats)
    n, n_pos = len(shown), int(np.sum(train_labels[shown]))  # showings per epoch, of defects
    n_def = int(np.sum(train_labels))
    if n == 0 or n_pos == 0 or n_pos == n:
        raise TrainError(f"training needs both classes; got {n - n_pos} good and {n_pos} defective images")
    if cfg.dihedral_mean and train_images.shape[1] != train_images.shape[2]:
        raise TrainError(f"dihedral_mean needs a square input, got {train_images.shape[1]}x{train_images.shape[2]}")
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model, norm = prepare_model(cfg, train_images, device)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    stepper = Stepper(model, cfg, device, precision, (n - n_pos) / n_pos, cfg.epochs * steps)
    averaged = _ema(model, cfg.ema)
    rng = np.random.default_rng(cfg.seed)
    history = []
    if log is not None:
        more = f" and {n - len(train_labels)} more showings of hard negatives" if n > len(train_labels) else ""
        print(f"training {cfg.net.describe()} at {train_images.shape[1]}x{train_images.shape[2]} on "
              f"{len(train_labels)} images{more} ({device}, {precision}"
              f"{f', first {cfg.freeze} blocks frozen' if cfg.freeze else ''})", file=log, flush=True)
    bar = tqdm(total=cfg.epochs * steps, desc="train", unit="batch", file=log, disable=not cfg.progress,
               dynamic_ncols=True, leave=False)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            set_train_mode(model, cfg)
            order = shown[rng.permutation(n)]
            total = 0.0
            for i in range(steps):
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                images, labels = train_images[idx], train_labels[idx]
                if cfg.augment is not None:
                    images = augment_batch(images, labels, rng, cfg.augment)
                try:
                    loss = stepper.step(*stepper.tensors(images, labels, norm))
                except TrainError as exc:
                    raise TrainError(f"epoch {epoch}: {exc}") from None
                if averaged is not None:
                    averaged.update_parameters(model)
                total += float(loss.item()) * len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            loop_s = time.perf_counter() - t0
            released = model if averaged is None else averaged.module
            scores = (predict(released, val_images, norm, device=device, precision=precision)
                      if len(val_labels) else np.zeros(0))
            m = EpochMetrics(epoch, total / n, accuracy(scores, val_labels), auroc(scores, val_labels),
                             time.perf_counter() - t0, n / loop_s if loop_s > 0 else 0.0)
            history.append(m)
            line = (f"epoch {epoch}/{cfg.epochs}: loss {m.loss:.4f}, val accuracy {m.val_accuracy:.4f}, "
                    f"val AUROC {m.val_auroc:.4f} ({m.seconds:.1f} s, {m.images_per_s:.0f} img/s)")
            if cfg.progress:
                bar.write(line, file=log)
            elif log is not None:
                print(line, file=log, flush=True)
    finally:
        bar.close()
    if averaged is not None:
        model = averaged.module
    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        # From balanced classes back to the data's mix: its images, however often each was shown.
        model.head.bias -= math.log((len(train_labels) - n_def) / n_def)
    if cfg.dihedral_mean:
        from training.net import DihedralMean

        model = DihedralMean(model).eval()
    return TrainResult(model, norm, tuple(history), time.perf_counter() - started, device,
                       {"ok": len(train_labels) - n_def, "def": n_def}, precision, cfg.net)


#: Pixels per forward pass when scoring: 256 images at 128 px. A fixed image count would hold
#: gigabytes of activations for a large net at 300 px, eight times more for the 8-view mean.
PREDICT_PIXELS = 256 * 128 * 128


def predict(model, images: np.ndarray, norm: Normalisation, batch: int | None = None, device: str = "cpu",
            precision: str = "fp32") -> np.ndarray:
    """Scores in [0, 1] for (N, H, W) uint8 images (model put in eval mode).

    float32 by default: these are the scores calibration and the gate use, and the ONNX
    graph the edge runs is float32. ``precision="bf16"`` is for progress figures only.
    """
    import torch

    from training.net import DihedralMean

    if batch is None:
        views = 8 if isinstance(model, DihedralMean) else 1
        batch = max(1, PREDICT_PIXELS // (views * max(1, images[0].size if len(images) else 1)))
    model.eval()
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    out = []
    with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for i in range(0, len(images), batch):
            x = torch.from_numpy(to_tensor(images[i:i + batch], norm)).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            out.append(model(x).reshape(-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
