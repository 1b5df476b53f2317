"""Training data: labelled grey images from seed folders and the synthetic line, deduplicated and split.

An ``ImageSet`` holds ``Sample``s whose image is already what the edge feeds its
model before scaling: the frame's ROI cropped exactly as ``edge.detector`` crops it
and resized by area on uint8 to the model's input size (``fit_input``), both by the
rules in ``models.preprocess`` that the edge follows. Keeping that step identical is what
makes validation scores here equal edge scores.

Sources:
- seed folders: ``DIR/ok/*`` and ``DIR/def/*``, or ``DIR/{train,val,test}/{ok,def}/*``
  (``test`` is held out as the golden split); images are read, never copied;
- the synthetic part generator (``hardware.synthetic``), with its ground truth
  (defect kind, artefact kinds) kept in each sample's ``meta``.

``dedup`` drops exact duplicates (content hash) and groups near-duplicates
(training.dedup); ``split`` then assigns whole groups to train / val / golden. Both
hashes of a file are taken from the image as read, before it is resized, so the same
files fall into the same groups and splits whatever input size a model reads.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.preprocess import resize_to, roi_pixels
from training.dedup import NEAR_BITS, content_hash, dihedral_hashes, group_near_duplicates
from training.errors import DatasetError

LABELS = ("ok", "def")
SPLITS = ("train", "val", "golden")
#: Folder names of a pre-split layout and the split they feed (the test folder is the golden set).
FOLDER_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "golden",
                 "golden": "golden"}
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Sources whose every image is a different physical part: a synthetic render, or a line capture
#: the station stored (one review per inspected part). They are never hash-grouped: parts of one
#: design, centred under one camera, all look alike at hash size, so hashing them chains a whole
#: line into one group (and would drop most verdicts as "near-duplicates" of the golden set).
#: Photo folders are hashed: their copies are re-shot, rotated or re-augmented photographs.
DISTINCT_PART_SOURCES = frozenset({"synthetic", "station"})
_HELD_OUT = {"golden": 2, "val": 1, "train": 0}


@dataclass(frozen=True)
class FileJob:
    """One labelled image file to read: its label, the split it was filed under, extra meta."""

    path: Path
    label: int
    split: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One labelled image at model input size (uint8 HxW grey); ``label`` 1 = defect.

    ``meta["weight"]`` (optional, default 1) is how many line parts the image stands for
    where images were not drawn uniformly: 1 for a reviewed part of the uncertain band,
    1 / audit rate for an audited confident one. Calibration and the gate count by it.
    """

    image: np.ndarray = field(compare=False, repr=False)
    label: int
    meta: dict = field(default_factory=dict, compare=False)


def line_weights(metas) -> np.ndarray | None:  # noqa: ANN001 (any iterable of meta dicts)
    """The ``weight`` of each meta (default 1) as an array; None when every image counts once."""
    w = np.array([float(m.get("weight", 1.0)) for m in metas])
    return None if np.all(w == 1.0) else w


#: A good part a reviewer ruled "not a defect" and named what fooled the model (glare, dust ...): the
#: lighting the line actually has. Each is shown this many times per epoch, so a few dozen verdicts
#: outweigh the generic artefacts that augmentation paints on.
HARD_NEGATIVE_REPEATS = 3


def is_hard_negative(sample: Sample) -> bool:
    """A good part with a named artefact from a verdict (``meta["hard_negative"]``)."""
    return sample.label == 0 and bool(sample.meta.get("hard_negative"))


def is_distinct_part(sample: Sample) -> bool:
    """True when the sample's source guarantees it shows a part no other image shows (DISTINCT_PART_SOURCES)."""
    return sample.meta.get("source") in DISTINCT_PART_SOURCES


def fit_input(image: np.ndarray, hw: tuple[int, int], roi: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Frame -> uint8 HxW model-size grey image, cropping and resizing exactly as the edge does."""
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        else:
            image = image[:, :, :3]
    height, width = image.shape[:2]
    if roi is not None:
        x, y, w, h = roi_pixels(roi, width, height)
        if w < 1 or h < 1:
            raise DatasetError(f"frame {width}x{height} is too small for roi {list(roi)}")
        image = image[y:y + h, x:x + w]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(resize_to(image, hw))


def roi_fractions(roi_px: tuple[int, int, int, int], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel ROI -> fractions of the frame that round back to the same pixels on the edge."""
    x, y, w, h = roi_px
    return (x / width, y / height, w / width, h / height)


def read_grey(path: Path) -> np.ndarray:
    """Decode an image file as the folder camera does (IMREAD_GRAYSCALE), or raise DatasetError."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return image


class ImageSet:
    """An ordered collection of samples at one input size, with dataset bookkeeping."""

    def __init__(self, samples: list[Sample], hw: tuple[int, int], stats: dict | None = None):
        self.samples = list(samples)
        self.hw = (int(hw[0]), int(hw[1]))
        self.stats = dict(stats or {})

    def __len__(self) -> int:
        return len(self.samples)

    def __add__(self, other: ImageSet) -> ImageSet:
        if other.hw != self.hw:
            raise DatasetError(f"cannot merge image sets of input sizes {self.hw} and {other.hw}")
        stats = {k: self.stats.get(k, 0) + other.stats.get(k, 0) for k in set(self.stats) | set(other.stats)
                 if isinstance(self.stats.get(k, 0), int) and isinstance(other.stats.get(k, 0), int)}
        return ImageSet(self.samples + other.samples, self.hw, stats)

    # ------------------------------------------------------------------ sources
    @classmethod
    def from_folders(cls, root: str | Path, hw: tuple[int, int], roi=None, workers: int = 2) -> ImageSet:
        """Load ``root/{ok,def}/*`` or ``root/{train,val,test}/{ok,def}/*``."""
        return cls.from_files(folder_jobs(root), hw, roi, workers)

    @classmethod
    def from_files(cls, jobs: list[FileJob], hw: tuple[int, int], roi=None, workers: int = 2) -> ImageSet:
        """Read labelled image files (each decoded once, in ``workers`` threads) into one set."""

        def load(job: FileJob) -> Sample:
            image = read_grey(job.path)
            # Hashed as read: the groups must not depend on the input size of the model.
            meta = {"source": "folder", "path": str(job.path), "sha": content_hash(image),
                    "dhash": dihedral_hashes(image), **job.meta}
            if job.split:
                meta["split"] = job.split
            return Sample(fit_input(image, hw, roi), job.label, meta)

        with ThreadPoolExecutor(max(1, workers)) as pool:  # imdecode and resize release the GIL
            samples = list(pool.map(load, sorted(jobs, key=lambda j: str(j.path))))
        return cls(samples, hw, {"folder_images": len(samples)})

    @classmethod
    def from_synthetic(cls, n: int, hw: tuple[int, int], seed: int = 0, defect_rate: float = 0.4,
                       artefact_rate: float = 0.3, width: int = 1280, height: int = 1024,
                       start: int = 0, severity: tuple[float, float] | None = None) -> ImageSet:
        """Render parts ``start .. start+n-1`` of a synthetic line, cropped to the generator's part ROI.

        With ``severity=(lo, hi)`` each defective part is redrawn on its clean render with a
        defect of the same kind and a severity drawn uniformly from [lo, hi]: the line's own
        mix is skewed to faint defects, which a model learns faster after seeing clear ones.
        """
        from hardware.synthetic import PartGenerator  # the generator builds its texture on creation

        if n < 0:
            raise DatasetError(f"number of synthetic parts must be >= 0, got {n}")
        gen = PartGenerator(seed=seed, width=width, height=height, defect_rate=defect_rate,
                            artefact_rate=artefact_rate)
        roi = roi_fractions(gen.roi(), width, height)
        samples = []
        for i in range(start, start + n):
            frame, truth = gen.render(i)
            if severity is not None and truth.is_defect:
                frame, truth = _redraw_defect(gen, i, truth, severity)
            image = fit_input(frame, hw, roi)
            meta = {"source": "synthetic", "seed": seed, "index": i, "defect": truth.defect,
                    "artefacts": list(truth.artefacts), "sha": content_hash(image)}
            samples.append(Sample(image, int(truth.is_defect), meta))
        return cls(samples, hw, {"synthetic_parts": n})

    # ------------------------------------------------------------------ cleaning
    def dedup(self, max_bits: int = NEAR_BITS) -> ImageSet:
        """Drop exact duplicates (and images seen with both labels); tag near-duplicate groups."""
        by_sha: dict[str, list[Sample]] = {}
        for s in self.samples:
            by_sha.setdefault(s.meta.get("sha") or content_hash(s.image), []).append(s)
        kept, dropped, conflicts = [], 0, 0
        for copies in by_sha.values():
            if len({s.label for s in copies}) > 1:
                conflicts += len(copies)  # the label is unreliable: neither copy may teach the model
                continue
            # The most held-out copy wins, so a golden image is never demoted to training.
            kept.append(max(copies, key=lambda s: _HELD_OUT.get(s.meta.get("split", "train"), 0)))
            dropped += len(copies) - 1
        photos = [s for s in kept if not is_distinct_part(s)]
        hashes = [s.meta["dhash"] if "dhash" in s.meta else dihedral_hashes(s.image) for s in photos]
        groups = iter(group_near_duplicates(hashes, max_bits))
        next_id = len(photos)
        out = []
        for s in kept:
            if is_distinct_part(s):
                g, next_id = next_id, next_id + 1
            else:
                g = next(groups)
            out.append(Sample(s.image, s.label, {**s.meta, "group": g}))
        groups = [s.meta["group"] for s in out]
        stats = {**self.stats, "exact_duplicates": dropped, "label_conflicts": conflicts,
                 "near_duplicate_groups": len(set(groups)), "images": len(out)}
        return ImageSet(out, self.hw, stats)

    def split(self, val: float = 0.15, golden: float = 0.15, seed: int = 0) -> dict[str, ImageSet]:
        """Assign whole near-duplicate groups to train / val / golden, stratified by label.

        A group goes to the most held-out split any member was filed under; groups with
        no such hint (or filed under train) are drawn at random for the splits the
        source did not provide.
        """
        if not 0 <= val < 1 or not 0 <= golden < 1 or val + golden >= 1:
            raise DatasetError(f"split fractions val={val}, golden={golden} must be in [0, 1) and sum below 1")
        ds = self if all("group" in s.meta for s in self.samples) else self.dedup()
        members: dict[int, list[Sample]] = {}
        for s in ds.samples:
            members.setdefault(s.meta["group"], []).append(s)
        hinted = {s.meta.get("split") for s in ds.samples}
        assign: dict[int, str] = {}
        free: list[int] = []
        for g, ms in members.items():
            hint = max((m.meta.get("split", "train") for m in ms), key=_HELD_OUT.get)
            if hint == "train":
                free.append(g)
            else:
                assign[g] = hint
        rng = np.random.default_rng(seed)
        for label in (0, 1):
            pool = [g for g in free if max(m.label for m in members[g]) == label]
            pool = [pool[i] for i in rng.permutation(len(pool))]
            total = sum(len(members[g]) for g in pool)
            for name, frac in (("golden", golden), ("val", val)):
                if name in hinted or frac == 0:
                    continue
                want, got = frac * total, 0
                while pool and got < want:
                    g = pool.pop()
                    assign[g] = name
                    got += len(members[g])
            for g in pool:
                assign[g] = "train"
        parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
        for s in ds.samples:
            parts[assign[s.meta["group"]]].append(Sample(s.image, s.label, {**s.meta, "split": assign[s.meta["group"]]}))
        return {name: ImageSet(p, self.hw, {"images": len(p)}) for name, p in parts.items()}

    # ------------------------------------------------------------------ views
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) uint8 images and (N,) int64 labels."""
        if not self.samples:
            return np.zeros((0, *self.hw), np.uint8), np.zeros((0,), np.int64)
        return np.stack([s.image for s in self.samples]), np.array([s.label for s in self.samples], np.int64)

    def weights(self) -> np.ndarray | None:
        """(N,) line parts each image stands for; None when every one counts once (``line_weights``)."""
        return line_weights(s.meta for s in self.samples)

    def repeats(self) -> np.ndarray:
        """(N,) times each image is shown per training epoch: ``HARD_NEGATIVE_REPEATS`` for a hard negative."""
        return np.array([HARD_NEGATIVE_REPEATS if is_hard_negative(s) else 1 for s in self.samples], np.int64)

    def counts(self) -> dict[str, int]:
        c = Counter(s.label for s in self.samples)
        return {LABELS[0]: c.get(0, 0), LABELS[1]: c.get(1, 0)}

    def digest(self) -> str:
        """sha256 over the sorted (content hash, label) pairs: the same data gives the same digest."""
        h = hashlib.sha256()
        for sha, label in sorted((s.meta.get("sha") or content_hash(s.image), s.label) for s in self.samples):
            h.update(f"{sha}:{label}\n".encode())
        return h.hexdigest()


def folder_jobs(root: str | Path) -> list[FileJob]:
    """The labelled files of ``root/{ok,def}/*`` or ``root/{train,val,test}/{ok,def}/*``, not yet read."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist")
    jobs: list[FileJob] = []
    for label, name in enumerate(LABELS):
        jobs += [FileJob(p, label) for p in _images(root / name)]
    for folder, split in FOLDER_SPLITS.items():
        for label, name in enumerate(LABELS):
            jobs += [FileJob(p, label, split) for p in _images(root / folder / name)]
    if not jobs:
        raise DatasetError(f"{root}: no images found; expected {root}/ok/* and {root}/def/* "
                           f"(or {root}/train/ok/*, {root}/train/def/*, ...)")
    return jobs


def _redraw_defect(gen, index: int, truth, severity: tuple[float, float]):
    from hardware.base import PartTruth
    from hardware.synthetic import add_artefact, add_defect

    clean = gen.render_clean(index)
    rng = np.random.default_rng([gen.seed, index, 0xDEF])
    part = _find_part(clean)
    image, box = add_defect(clean, truth.defect, rng, float(rng.uniform(*severity)), part=part)
    # The part keeps its lighting artefacts: dropping them from defective parts only would
    # teach "a highlight means good".
    for kind in truth.artefacts:
        image = add_artefact(image, kind, rng, part=part)
    return image, PartTruth(defect=truth.defect, artefacts=truth.artefacts, boxes=(box,))


def _find_part(image: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, r) of the bright part on the dark belt: the enclosing circle of the largest blob."""
    _, mask = cv2.threshold(image, 110, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        h, w = image.shape
        return (w / 2.0, h / 2.0, 0.4 * min(w, h))
    (cx, cy), r = cv2.minEnclosingCircle(max(contours, key=cv2.contourArea))
    return (float(cx), float(cy), float(r))


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
