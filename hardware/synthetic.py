"""Synthetic production line: top views of cast pump impellers on a conveyor.

``PartGenerator.render(i)`` draws part ``i`` of a line (grey, uint8) with its ground
truth: most parts are good, some carry a casting defect (pit, crack, burr, chip) and
some carry lighting artefacts that are *not* defects (glare, streak, shadow, dust).
The same seed and index always give the same image.

``add_defect`` and ``add_artefact`` are pure functions on any grey image (a 1280x1024
render or a 300x300 photograph of a real part); sizes are relative to the part, which
is given as ``part=(cx, cy, r)`` or assumed centred and filling 80 % of the shorter
side, as in top-view inspection photos. They only change pixels near what they draw,
so a render with and without the defect differs only inside the defect's box.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from hardware.base import PartTruth

DEFECT_KINDS = ("pit", "crack", "burr", "chip")
ARTEFACT_KINDS = ("glare", "streak", "shadow", "dust")

Part = tuple[float, float, float]  # centre x, centre y, outer radius (pixels)
Box = tuple[int, int, int, int]  # x, y, w, h


def _lerp(lo: float, hi: float, t: float) -> float:
    return lo + (hi - lo) * t


def _default_part(image: np.ndarray) -> Part:
    h, w = image.shape[:2]
    return (w / 2.0, h / 2.0, 0.4 * min(w, h))


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grey image, got {getattr(image, 'dtype', type(image))} "
                         f"with shape {getattr(image, 'shape', None)}")
    if min(image.shape) < 16:
        raise ValueError(f"image {image.shape} is too small to draw on")


def _patch(image: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    h, w = image.shape
    return (max(0, int(math.floor(x0))), max(0, int(math.floor(y0))),
            min(w, int(math.ceil(x1)) + 1), min(h, int(math.ceil(y1)) + 1))


def _local_median(image: np.ndarray, x: float, y: float, half: float) -> float:
    x0, y0, x1, y1 = _patch(image, x - half, y - half, x + half, y + half)
    if x1 <= x0 or y1 <= y0:
        return float(np.median(image))
    return float(np.median(image[y0:y1, x0:x1]))


def _on_image(image: np.ndarray, x: float, y: float, margin: float) -> bool:
    h, w = image.shape
    return margin <= x < w - margin and margin <= y < h - margin


# ------------------------------------------------------------------------- defects
def add_defect(image: np.ndarray, kind: str, rng: np.random.Generator, severity: float | None = None,
               *, part: Part | None = None) -> tuple[np.ndarray, Box]:
    """Return a copy of ``image`` with one defect of ``kind`` and its box (x, y, w, h).

    ``severity`` in [0, 1] sets size and contrast; when None it is drawn so that a
    share of defects is faint and small (hard, as on a real line).
    """
    _check_image(image)
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    if severity is None:
        # Skewed towards subtle, with a floor: a defect below what the camera resolves at all is
        # an escape for any vision system, and would only teach calibration to reject everything.
        severity = 0.2 + 0.8 * float(rng.uniform(0.0, 1.0) ** 1.3)
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    cx, cy, r = part if part is not None else _default_part(image)
    out = image.copy()
    draw = {"pit": _pit, "crack": _crack, "burr": _burr, "chip": _chip}[kind]
    x0, y0, x1, y1 = draw(out, rng, severity, cx, cy, r)
    changed = np.nonzero(out[y0:y1, x0:x1] != image[y0:y1, x0:x1])
    if changed[0].size:
        ys, xs = changed
        box = (x0 + int(xs.min()), y0 + int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)
    else:  # contrast too low to change a single grey level: still report where it was drawn
        box = (x0, y0, x1 - x0, y1 - y0)
    return out, box


def _material_point(image: np.ndarray, rng: np.random.Generator, cx: float, cy: float, r: float,
                    lo: float, hi: float, margin: float) -> tuple[float, float]:
    """A point on the part's outer flange (where the cast surface is visible)."""
    for _ in range(50):
        a = rng.uniform(0, 2 * math.pi)
        rho = r * rng.uniform(lo, hi)
        x, y = cx + rho * math.cos(a), cy + rho * math.sin(a)
        if _on_image(image, x, y, margin):
            return x, y
    h, w = image.shape
    return float(np.clip(cx, margin, w - margin - 1)), float(np.clip(cy, margin, h - margin - 1))


def _composite_dark(out: np.ndarray, layer: np.ndarray, box: tuple[int, int, int, int], contrast: float) -> None:
    x0, y0, x1, y1 = box
    patch = out[y0:y1, x0:x1].astype(np.float32)
    # Darken proportionally so a pit on a dark area stays visible but never goes negative.
    patch -= layer * np.minimum(contrast, patch * 0.85)
    out[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


def _pit(out, rng, sev, cx, cy, r):
    # Sizes are fractions of the part radius: a blow-hole is 3 to 9 % of the part's diameter.
    n = int(rng.integers(1, 4))
    rad = max(1.0, r * _lerp(0.014, 0.045, sev))
    x, y = _material_point(out, rng, cx, cy, r, 0.68, 0.94, rad * 3)
    offsets = [(0.0, 0.0)] + [tuple(rng.normal(0, rad * 2.5, 2)) for _ in range(n - 1)]
    spread = rad * 8
    box = _patch(out, x - spread, y - spread, x + spread, y + spread)
    x0, y0, x1, y1 = box
    layer: np.ndarray = np.zeros((y1 - y0, x1 - x0), np.float32)
    for dx, dy in offsets:
        rr = max(1, int(round(rad * rng.uniform(0.5, 1.0) if (dx, dy) != (0.0, 0.0) else rad)))
        cv2.circle(layer, (int(round(x + dx - x0)), int(round(y + dy - y0))), rr, 1.0, -1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, rad * 0.3))
    _composite_dark(out, layer, box, _lerp(30, 120, sev))
    return box


def _crack(out, rng, sev, cx, cy, r):
    length = r * _lerp(0.15, 0.4, sev)
    thick = max(1, int(round(r * _lerp(0.004, 0.012, sev))))
    x, y = _material_point(out, rng, cx, cy, r, 0.7, 0.92, length * 0.6)
    # Cracks in castings run roughly radially from stress points; jag around that direction.
    heading = math.atan2(y - cy, x - cx) + rng.normal(0, 0.5)
    steps = int(rng.integers(6, 12))
    pts = [(x, y)]
    for _ in range(steps):
        heading += rng.normal(0, 0.45)
        x += math.cos(heading) * length / steps
        y += math.sin(heading) * length / steps
        pts.append((x, y))
    arr = np.array(pts, np.float32)
    pad = thick * 3 + 2
    box = _patch(out, arr[:, 0].min() - pad, arr[:, 1].min() - pad, arr[:, 0].max() + pad, arr[:, 1].max() + pad)
    x0, y0, x1, y1 = box
    layer = np.zeros((y1 - y0, x1 - x0), np.float32)
    poly = np.round(arr - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [poly], False, 1.0, thick, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.6)
    _composite_dark(out, layer, box, _lerp(35, 120, sev))
    return box


def _rim_blob(out, rng, sev, cx, cy, r, inward: bool, extent: tuple[float, float], depth: tuple[float, float]):
    """Polygon of an irregular lobe on the rim: outward (burr) or inward (chip)."""
    for _ in range(100):  # a part cropped by the frame: pick a stretch of rim that is in view
        a0 = rng.uniform(0, 2 * math.pi)
        if _on_image(out, cx + r * math.cos(a0), cy + r * math.sin(a0), 2):
            break
    else:
        raise ValueError(f"the rim of the part (cx={cx:.0f}, cy={cy:.0f}, r={r:.0f}) is not on the "
                         f"{out.shape[1]}x{out.shape[0]} image")
    half = _lerp(*extent, sev) / 2
    d = r * _lerp(*depth, sev)
    n = 14
    angles = np.linspace(a0 - half, a0 + half, n)
    bulge = np.sin(np.linspace(0, math.pi, n)) ** 0.7 * d * rng.uniform(0.6, 1.3, n)
    bulge[[0, -1]] = 0
    rad = r - bulge if inward else r + bulge
    base = r + d * 0.3 if inward else r - d * 0.3  # overlap the rim so no seam shows
    outer = np.stack([cx + rad * np.cos(angles), cy + rad * np.sin(angles)], 1)
    inner = np.stack([cx + base * np.cos(angles[::-1]), cy + base * np.sin(angles[::-1])], 1)
    return np.concatenate([outer, inner]), a0, d


def _fill_blob(out, rng, poly, value: float, texture: float, soft: float):
    pad = soft * 3 + 2
    box = _patch(out, poly[:, 0].min() - pad, poly[:, 1].min() - pad, poly[:, 0].max() + pad, poly[:, 1].max() + pad)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return box
    layer: np.ndarray = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(layer, [np.round(poly - (x0, y0)).astype(np.int32)], 1.0, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), soft)
    patch = out[y0:y1, x0:x1].astype(np.float32)
    fill = value + rng.normal(0, texture, layer.shape).astype(np.float32)
    patch = patch * (1 - layer) + fill * layer
    out[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
    return box


def _burr(out, rng, sev, cx, cy, r):
    poly, a0, d = _rim_blob(out, rng, sev, cx, cy, r, inward=False, extent=(0.08, 0.2), depth=(0.03, 0.09))
    # Extra material: as bright as the flange near it, a little brighter where it catches the light.
    mat = _local_median(out, cx + 0.9 * r * math.cos(a0), cy + 0.9 * r * math.sin(a0), max(2.0, 0.03 * r))
    value = min(250.0, mat + _lerp(5, 45, sev))
    return _fill_blob(out, rng, poly, value, 6.0, max(0.5, 0.003 * r))


def _chip(out, rng, sev, cx, cy, r):
    poly, a0, d = _rim_blob(out, rng, sev, cx, cy, r, inward=True, extent=(0.08, 0.22), depth=(0.035, 0.1))
    # The missing piece shows whatever lies behind the part: sample just outside the rim.
    bx, by = cx + 1.12 * r * math.cos(a0), cy + 1.12 * r * math.sin(a0)
    h, w = out.shape
    bx, by = float(np.clip(bx, 0, w - 1)), float(np.clip(by, 0, h - 1))
    value = _local_median(out, bx, by, max(2.0, 0.03 * r))
    mat = _local_median(out, cx + 0.9 * r * math.cos(a0), cy + 0.9 * r * math.sin(a0), max(2.0, 0.03 * r))
    if abs(value - mat) < 40:  # light background (real photos): a broken edge still reads as darker
        value = mat - _lerp(45, 90, sev)
    return _fill_blob(out, rng, poly, max(0.0, value), 3.0, max(0.5, 0.002 * r))


# ----------------------------------------------------------------------- artefacts
def add_artefact(image: np.ndarray, kind: str, rng: np.random.Generator, *, part: Part | None = None) -> np.ndarray:
    """Return a copy of ``image`` with one lighting artefact of ``kind`` (not a defect)."""
    _check_image(image)
    if kind not in ARTEFACT_KINDS:
        raise ValueError(f"unknown artefact kind {kind!r}; expected one of {ARTEFACT_KINDS}")
    cx, cy, r = part if part is not None else _default_part(image)
    out = image.copy()
    {"glare": _glare, "streak": _streak, "shadow": _shadow, "dust": _dust}[kind](out, rng, cx, cy, r)
    return out


def _glare(out, rng, cx, cy, r):
    a, rho = rng.uniform(0, 2 * math.pi), r * rng.uniform(0.2, 0.9)
    x, y = cx + rho * math.cos(a), cy + rho * math.sin(a)
    sx, sy = r * rng.uniform(0.04, 0.14), r * rng.uniform(0.04, 0.14)
    x0, y0, x1, y1 = _patch(out, x - 3 * sx, y - 3 * sy, x + 3 * sx, y + 3 * sy)
    if x1 <= x0 or y1 <= y0:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - x) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - y) / sy) ** 2)
    # Amplitude above 255 so the core clips to white, as a specular highlight does.
    amp = rng.uniform(260, 360)
    patch = out[y0:y1, x0:x1].astype(np.float32) + amp * (gy[:, None] * gx[None, :])
    out[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)


def _streak(out, rng, cx, cy, r):
    rad = r * rng.uniform(0.45, 0.97)
    start = rng.uniform(0, 360)
    span = rng.uniform(15, 80)
    thick = max(1, int(round(r * rng.uniform(0.006, 0.02))))
    pad = thick * 4 + 2
    x0, y0, x1, y1 = _patch(out, cx - rad - pad, cy - rad - pad, cx + rad + pad, cy + rad + pad)
    if x1 <= x0 or y1 <= y0:
        return
    layer = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(layer, (int(round(cx - x0)), int(round(cy - y0))), (int(rad), int(rad)), 0,
                start, start + span, 1.0, thick, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), max(0.7, thick * 0.8))
    patch = out[y0:y1, x0:x1].astype(np.float32) + rng.uniform(70, 150) * layer
    out[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)


def _shadow(out, rng, cx, cy, r):
    h, w = out.shape
    a = rng.uniform(0, 2 * math.pi)
    d0 = rng.uniform(-0.4, 0.5) * r
    width = rng.uniform(0.3, 0.9) * r
    depth = rng.uniform(0.25, 0.5)
    xs = (np.arange(w, dtype=np.float32) - cx) * math.cos(a)
    ys = (np.arange(h, dtype=np.float32) - cy) * math.sin(a)
    t = np.clip((xs[None, :] + ys[:, None] - d0) / width, 0, 1)
    t = t * t * (3 - 2 * t)  # smoothstep: no visible edge
    np.multiply(out, 1 - depth * t, out=t)
    out[:] = np.clip(t + 0.5, 0, 255).astype(np.uint8)


def _dust(out, rng, cx, cy, r):
    for _ in range(int(rng.integers(3, 10))):
        a, rho = rng.uniform(0, 2 * math.pi), r * rng.uniform(0, 1.1)
        x, y = cx + rho * math.cos(a), cy + rho * math.sin(a)
        rad = max(0.6, r * rng.uniform(0.0015, 0.004))
        x0, y0, x1, y1 = _patch(out, x - 4 * rad - 2, y - 4 * rad - 2, x + 4 * rad + 2, y + 4 * rad + 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        layer = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.circle(layer, (int(round(x - x0)), int(round(y - y0))), max(1, int(round(rad))), 1.0, -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.7)
        # Fainter than a pit: dust is a soft speck, bright or dark depending on the light.
        sign = 1.0 if rng.random() < 0.5 else -1.0
        patch = out[y0:y1, x0:x1].astype(np.float32) + sign * rng.uniform(10, 28) * layer
        out[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- generator
class PartGenerator:
    """Renders the parts of a synthetic line, deterministically per (seed, index).

    A part is defective with probability ``defect_rate`` (one defect, kind uniform) and,
    independently, carries one or two lighting artefacts with probability
    ``artefact_rate``.
    """

    _PAD = 96  # texture margin, so each part sees a different crop of the cast surface

    def __init__(self, seed: int = 0, width: int = 1280, height: int = 1024,
                 defect_rate: float = 0.1, artefact_rate: float = 0.2):
        if width < 64 or height < 64:
            raise ValueError(f"image size {width}x{height} is too small (>= 64x64)")
        for name, rate in (("defect_rate", defect_rate), ("artefact_rate", artefact_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        self.seed, self.width, self.height = int(seed), int(width), int(height)
        self.defect_rate, self.artefact_rate = float(defect_rate), float(artefact_rate)
        short = min(width, height)
        self.radius = 0.38 * short
        self.jitter = 0.02 * short
        self._cx, self._cy = width / 2.0, height / 2.0
        trng = np.random.default_rng([self.seed, 0x5EED, 7])  # never collides with [seed, index]
        h2, w2 = height + self._PAD, width + self._PAD
        fine = cv2.GaussianBlur(trng.normal(0, 7, (h2, w2)).astype(np.float32), (0, 0), 0.8)
        # Cast-surface mottling (a few tens of pixels) over slow shading (a few hundred).
        mottle = cv2.resize(trng.normal(0, 4, (h2 // 24 + 2, w2 // 24 + 2)).astype(np.float32),
                            (w2, h2), interpolation=cv2.INTER_CUBIC)
        slow = cv2.resize(trng.normal(0, 8, (h2 // 160 + 2, w2 // 160 + 2)).astype(np.float32),
                          (w2, h2), interpolation=cv2.INTER_CUBIC)
        self._texture = fine + mottle + slow
        # Conveyor belt: dark, with faint lengthwise wear marks.
        belt = 48 + cv2.resize(trng.normal(0, 6, (1, width)).astype(np.float32), (width, height),
                               interpolation=cv2.INTER_LINEAR)
        self._belt = np.clip(belt, 0, 255).astype(np.uint8)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        rho = np.hypot(xs - self._cx, ys - self._cy) + 1e-3
        self._ux = (xs - self._cx) / rho
        self._uy = (ys - self._cy) / rho

    def roi(self) -> tuple[int, int, int, int]:
        """Square (x, y, w, h) that holds the part wherever it lands on the belt."""
        half = int(math.ceil(self.radius * 1.08 + self.jitter))
        side = min(2 * half, self.width, self.height)
        x = int(round(self._cx - side / 2))
        y = int(round(self._cy - side / 2))
        return (max(0, min(x, self.width - side)), max(0, min(y, self.height - side)), side, side)

    def render(self, index: int) -> tuple[np.ndarray, PartTruth]:
        """Part ``index``: HxW uint8 grey image and its ground truth."""
        return self._render(index, defects=True, artefacts=True)

    def render_clean(self, index: int) -> np.ndarray:
        """Part ``index`` exactly as ``render`` draws it, minus its defect and artefacts."""
        return self._render(index, defects=False, artefacts=False)[0]

    def _render(self, index: int, defects: bool, artefacts: bool) -> tuple[np.ndarray, PartTruth]:
        rng = np.random.default_rng([self.seed, int(index)])
        cx = self._cx + rng.uniform(-1, 1) * self.jitter
        cy = self._cy + rng.uniform(-1, 1) * self.jitter
        r = self.radius * rng.uniform(0.98, 1.02)
        rot = rng.uniform(0, 2 * math.pi)
        gain = rng.uniform(0.9, 1.1)
        light = rng.uniform(0, 2 * math.pi)
        ox, oy = rng.integers(0, self._PAD, 2)
        is_defect = rng.random() < self.defect_rate
        kind = DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
        has_art = rng.random() < self.artefact_rate
        n_art = int(rng.integers(1, 3))
        art_kinds = tuple(ARTEFACT_KINDS[i] for i in rng.choice(len(ARTEFACT_KINDS), n_art, replace=False))
        # Defects and artefacts draw from their own streams, so the clean part is identical.
        defect_rng, art_rng = rng.spawn(2)

        img = self._draw_part(cx, cy, r, rot)
        f: np.ndarray = img.astype(np.float32)
        shade = self._ux * math.cos(light)
        shade += self._uy * math.sin(light)
        f *= gain * (1.0 + 0.12 * shade)
        f = cv2.GaussianBlur(f, (3, 3), 0)
        np.add(f, self._texture[oy:oy + self.height, ox:ox + self.width], out=f)
        out = np.clip(f, 0, 255).astype(np.uint8)

        part = (cx, cy, r)
        truth_defect: str | None = None
        boxes: tuple[tuple[int, int, int, int], ...] = ()
        if defects and is_defect:
            out, box = add_defect(out, kind, defect_rng, part=part)
            truth_defect, boxes = kind, (box,)
        arts: tuple[str, ...] = ()
        if artefacts and has_art:
            for k in art_kinds:
                out = add_artefact(out, k, art_rng, part=part)
            arts = art_kinds
        return out, PartTruth(defect=truth_defect, artefacts=arts, boxes=boxes)

    def _draw_part(self, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
        img = self._belt.copy()
        s = 16  # fixed-point shift: sub-pixel positions keep the edges smooth
        c = (int(cx * s), int(cy * s))

        def circle(rad: float, value: int, thick: int = -1) -> None:
            cv2.circle(img, c, int(rad * s), value, thick, cv2.LINE_AA, 4)

        circle(r, 178)  # machined outer flange
        circle(r * 0.985, 196, max(1, int(r * 0.012)))  # bright chamfer on the rim
        circle(r * 0.64, 150, max(1, int(r * 0.02)))  # step down into the recess
        circle(r * 0.62, 62)  # dark recess between flange and hub
        # Curved vanes in the recess.
        n_vanes = 7
        t = np.linspace(0, 1, 12)
        for k in range(n_vanes):
            a0 = rot + 2 * math.pi * k / n_vanes
            rad = r * (0.3 + 0.3 * t)
            ang = a0 + 0.9 * t
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.polylines(img, [np.round(pts * s).astype(np.int32)], False, 108,
                          max(1, int(r * 0.035)), cv2.LINE_AA, 4)
        circle(r * 0.3, 128)  # raised hub, darker than the flange
        circle(r * 0.3, 165, max(1, int(r * 0.015)))  # its machined edge
        circle(r * 0.14, 40)  # central bore: the belt shows through
        return img
