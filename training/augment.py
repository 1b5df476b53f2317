"""Training-time augmentation on model-size uint8 images, so the model learns parts, not lighting.

Geometry: the 8 rotations/flips (a part has no preferred orientation on the belt)
and small shifts (where it lands). Photometry: brightness, contrast, gamma and
sensor noise. Lighting artefacts from ``hardware.synthetic.add_artefact`` (glare,
streaks, shadows, dust) are painted on good parts *with the good label*, and on
some defective ones, so a highlight is never evidence of a defect. The result is
rounded back to uint8, as a camera would deliver it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    shift: float = 0.04  # of the side, each way
    brightness: float = 18.0  # grey levels, each way
    contrast: float = 0.15  # relative, each way
    gamma: float = 0.2  # log-uniform in [1/(1+g), 1+g]
    noise: float = 4.0  # max sensor noise sigma, grey levels
    artefact_good: float = 0.35  # chance of one lighting artefact on a good part
    artefact_defect: float = 0.15  # and on a defective one


def augment(image: np.ndarray, label: int, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One randomly augmented copy of a uint8 HxW image (the label never changes)."""
    from hardware.synthetic import ARTEFACT_KINDS, add_artefact

    out = np.rot90(image, int(rng.integers(4)))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.ascontiguousarray(out)
    h, w = out.shape
    if cfg.shift > 0:
        dx, dy = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < (cfg.artefact_defect if label else cfg.artefact_good):
        out = add_artefact(out, ARTEFACT_KINDS[int(rng.integers(len(ARTEFACT_KINDS)))], rng)
    f = out.astype(np.float32)
    gamma = float(np.exp(rng.uniform(-1, 1) * np.log1p(cfg.gamma)))
    f = 255.0 * (f / 255.0) ** gamma
    mean = float(f.mean())
    f = (f - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    f += rng.uniform(-cfg.brightness, cfg.brightness)
    if cfg.noise > 0:
        f += rng.normal(0.0, rng.uniform(0, cfg.noise), f.shape).astype(np.float32)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def augment_batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    return np.stack([augment(im, int(lb), rng, cfg) for im, lb in zip(images, labels)])
