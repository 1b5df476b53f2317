"""Where the model looked: an occlusion map of one frame, computed on the retraining server, never on the edge.

Each cell of a grid over the region the model inspects is covered in turn with the frame's median grey
and the frame scored again by the edge's own loader and preprocessing (edge.detector.Detector): how
much the score drops is how much that cell made the model call it a defect. The map is drawn as a PNG
the size of the frame, transparent where the model did not look and warm where it did, for the review
screen to lay over the frame.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Cells per side of the occlusion grid: 11 x 11 = 121 scorings of a frame (a fraction of a second).
GRID = 12


def occlusion_map(detector, image: np.ndarray, grid: int = GRID) -> np.ndarray:  # noqa: ANN001 - edge Detector
    """(grid, grid) drops of the score, 0..1 (1: where it mattered most), over the model's region.

    A patch of 2 x 2 cells is slid one cell at a time, so a defect on a cell corner is covered whole by
    some patch; each cell gets the mean drop of the patches over it. Drops are taken in logit, so a model
    sure of its call (a score of 0.999) still shows which part of the frame made it sure."""
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"a frame must be a 2-D or 3-D image, got shape {image.shape}")
    base = _logit(detector.score(image))
    rows, cols = detector.region(image.shape[0], image.shape[1])
    y0, y1 = rows.start or 0, rows.stop or image.shape[0]
    x0, x1 = cols.start or 0, cols.stop or image.shape[1]
    fill = np.median(image[y0:y1, x0:x1], axis=(0, 1)).astype(image.dtype)
    ys, xs = np.linspace(y0, y1, grid + 1).astype(int), np.linspace(x0, x1, grid + 1).astype(int)
    total = np.zeros((grid, grid), dtype=np.float64)
    count = np.zeros((grid, grid), dtype=np.float64)
    covered = image.copy()
    for i in range(grid - 1):
        for j in range(grid - 1):
            patch = (slice(ys[i], ys[i + 2]), slice(xs[j], xs[j + 2]))
            saved = covered[patch].copy()
            covered[patch] = fill
            drop = max(0.0, base - _logit(detector.score(covered)))
            covered[patch] = saved
            total[i:i + 2, j:j + 2] += drop
            count[i:i + 2, j:j + 2] += 1
    heat = total / np.maximum(count, 1)
    top = heat.max()
    return heat / top if top > 0 else heat


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def overlay_png(heat: np.ndarray, height: int, width: int, region: tuple[slice, slice] | None = None) -> bytes:
    """The map as an RGBA PNG of the frame's size: a warm colour scale, opaque where the model looked."""
    rows, cols = region or (slice(0, height), slice(0, width))
    y0, y1 = rows.start or 0, rows.stop or height
    x0, x1 = cols.start or 0, cols.stop or width
    big = cv2.resize(heat.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    colour = cv2.applyColorMap((big * 255).astype(np.uint8), cv2.COLORMAP_JET)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[y0:y1, x0:x1, :3] = colour
    rgba[y0:y1, x0:x1, 3] = (big * 170).astype(np.uint8)  # at most two thirds opaque: the frame shows through
    ok, buf = cv2.imencode(".png", rgba)
    if not ok:
        raise ValueError("the heat map could not be encoded as PNG")
    return buf.tobytes()


def explain_jpeg(detector, jpeg: bytes, grid: int = GRID) -> bytes:  # noqa: ANN001 - edge Detector
    """A review's JPEG in, the PNG overlay of where the model looked out; ValueError for a bad image."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("the body is not a JPEG image")
    heat = occlusion_map(detector, image, grid)
    return overlay_png(heat, image.shape[0], image.shape[1], detector.region(image.shape[0], image.shape[1]))
