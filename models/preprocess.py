"""How a frame becomes a model's input image: the ROI crop rule and the resize.

One home for both, because the edge (``edge.detector``) and training
(``training.data.fit_input``) must turn a frame into exactly the same pixels: a model's
validation scores equal its scores on the line only when they do.

- **Crop**: a manifest ROI is fractions of the frame (x, y, w, h); ``roi_pixels`` rounds
  them to pixels and clips the size to the frame.
- **Resize**: ``resize_to`` shrinks by area, as OpenCV's ``INTER_AREA`` does: each output
  pixel is the mean of the input area it covers, fractions of pixels included, so fine
  defects and glare are not aliased away. A whole-number factor runs OpenCV's block-mean
  path. A fractional one (882 to 128 pixels is 6.89) is slow there, 2.2 ms a part, so it
  is computed from the image's integral instead (``cv2.integral``; the box sums at the
  fractional corners are exact, since the integral of a pixel grid is bilinear inside each
  pixel): the same pixels in 0.9-1.0 ms.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


def roi_pixels(roi: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Manifest ROI fractions -> (x, y, w, h) pixels of a width x height frame; w or h < 1 when it does not fit."""
    fx, fy, fw, fh = roi
    x, y = int(round(fx * width)), int(round(fy * height))
    w, h = max(1, int(round(fw * width))), max(1, int(round(fh * height)))
    return x, y, min(w, width - x), min(h, height - y)


def resize_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``image`` (H x W or H x W x C, uint8) at ``hw`` = (height, width), by area."""
    height, width = image.shape[:2]
    out_h, out_w = hw
    if (height, width) == (out_h, out_w):
        return image
    whole = height % out_h == 0 and width % out_w == 0
    if whole or height < out_h or width < out_w or image.dtype != np.uint8:
        return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return _area_from_integral(image, out_h, out_w)


def _area_from_integral(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    height, width = image.shape[:2]
    # (H+1, W+1[, C]) sums; int32 holds them while 255 * H * W stays below 2**31 (H * W < 8.4 M).
    integral = cv2.integral(image) if height * width < (1 << 31) // 255 else cv2.integral(image, sdepth=cv2.CV_64F)
    (r0, r1, rt), (c0, c1, ct) = _corners(height, out_h), _corners(width, out_w)
    channels = (1,) * (integral.ndim - 2)
    top, bottom = integral[r0].astype(np.float64), integral[r1].astype(np.float64)
    rows = top + (bottom - top) * rt.reshape(-1, 1, *channels)  # the integral at each box edge's row
    left, right = rows[:, c0], rows[:, c1]
    corners = left + (right - left) * ct.reshape(1, -1, *channels)  # ... and at each box corner
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    return np.clip(np.rint(sums * (out_h * out_w / (height * width))), 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _corners(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integral rows (or columns) below and above each of the ``out + 1`` box edges, and the fraction between."""
    edges = np.arange(out + 1) * (size / out)
    below = np.minimum(np.floor(edges).astype(np.intp), size - 1)
    return below, below + 1, edges - below
