"""Image-quality hints sent with each review, so the reviewer sees why a frame looks odd.

A large share of saturated pixels points at glare, a large dark share at a shadow or
an under-exposed frame, a low Laplacian variance at a blurred (moving) part.
Computed on every fourth pixel of every fourth row: shares and variance barely move, and
this runs on the review thread beside inspection.
"""

from __future__ import annotations

import cv2
import numpy as np


def quality_hints(image: np.ndarray) -> dict[str, float]:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = grey[::4, ::4]
    n = float(small.size)
    return {
        "saturated": round(float(np.count_nonzero(small >= 250)) / n, 4),
        "dark": round(float(np.count_nonzero(small <= 5)) / n, 4),
        "mean": round(float(small.mean()), 1),
        "sharpness": round(float(cv2.Laplacian(small, cv2.CV_32F).var()), 1),
    }
