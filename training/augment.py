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


def _dihedral_shift(k: int, flip: bool, dx: float, dy: float, w: int, h: int) -> np.ndarray:
    """The 2x3 affine map of a rotation by k * 90 degrees, an optional mirror, then a shift, for a WxH image."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    m = np.array([[c, -s], [s, c]], dtype=np.float64)
    if flip:
        m = m @ np.array([[-1, 0], [0, 1]], dtype=np.float64)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    t = centre - m @ centre + (dx, dy)
    return np.hstack([m, t[:, None]]).astype(np.float32)


def augment(image: np.ndarray, label: int, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig(),
            noise_field: np.ndarray | None = None) -> np.ndarray:
    """One randomly augmented copy of a uint8 HxW image (the label never changes).

    Rotation, mirror and shift are one affine warp. Gamma, contrast and brightness are
    one monotone map of the grey level, applied as a 256-entry lookup table (contrast
    pivots on the image's mean grey after gamma). Sensor noise is a random window of
    ``noise_field`` (a standard normal field at least twice the image's size, one per
    batch) scaled to this image's sigma: a slice, not a fresh normal draw per pixel.
    """
    from hardware.synthetic import ARTEFACT_KINDS, add_artefact

    h, w = image.shape
    k, flip = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2)), bool(rng.random() < 0.5)
    dx, dy = rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h) if cfg.shift > 0 else (0.0, 0.0)
    out = cv2.warpAffine(image, _dihedral_shift(k, flip, dx, dy, w, h), (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < (cfg.artefact_defect if label else cfg.artefact_good):
        out = add_artefact(out, ARTEFACT_KINDS[int(rng.integers(len(ARTEFACT_KINDS)))], rng)
    gamma = float(np.exp(rng.uniform(-1, 1) * np.log1p(cfg.gamma)))
    levels = 255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** gamma
    mean = float(levels[int(cv2.mean(out)[0])])
    lut = (levels - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    lut += rng.uniform(-cfg.brightness, cfg.brightness)
    f = cv2.LUT(out, lut.astype(np.float32))
    if cfg.noise > 0:
        sigma = float(rng.uniform(0, cfg.noise))
        if noise_field is None or noise_field.shape[0] < 2 * h or noise_field.shape[1] < 2 * w:
            noise_field = rng.standard_normal((2 * h, 2 * w), dtype=np.float32)
        y0, x0 = int(rng.integers(noise_field.shape[0] - h + 1)), int(rng.integers(noise_field.shape[1] - w + 1))
        f = cv2.scaleAdd(noise_field[y0:y0 + h, x0:x0 + w], sigma, f)
    # Negative levels to 0, then round and saturate at 255, as a camera delivers grey levels.
    return cv2.convertScaleAbs(np.maximum(f, 0.0, out=f))


def augment_batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    h, w = images.shape[1:3]
    field = rng.standard_normal((2 * h, 2 * w), dtype=np.float32) if cfg.noise > 0 else None
    out = np.empty_like(images)
    for i, (im, lb) in enumerate(zip(images, labels)):
        out[i] = augment(im, int(lb), rng, cfg, field)
    return out
