"""Pixel scaling shared by the trainer, the export check and warm start: the manifest's input scaling.

``to_tensor`` is the same arithmetic as ``edge.detector.Detector.preprocess`` (float32
multiply-add), so scores computed on the training side are the scores the edge computes.
NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalisation:
    """The manifest's input scaling: x = (pixel * scale - mean) / std."""

    scale: float = 1 / 255
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, images: np.ndarray) -> Normalisation:
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
