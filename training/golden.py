"""The golden set: labelled images frozen at the first dataset build and never trained on.

Every candidate model is judged on the same images (training.gate), so the set
must not move under it: it is frozen once, from the first build's candidates, and
grows only by an explicit ``qc train golden add``. It lives in the trainer's data
directory::

    <data>/golden/manifest.json     counts, digest, created_at, and one entry per image
    <data>/golden/<sha>.png         the image at model input size (grey, lossless)

Entries are keyed by the content hash of the stored image (training.dedup). Before
each training run ``exclude_from`` drops every item that is a golden image or sits
in a near-duplicate group (rotated, flipped or re-shot copies) with one, so a
group never straddles golden and training.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from models.preprocess import resize_to
from qcloop.files import write_atomically
from training.data import LABELS, ImageSet, Sample, is_distinct_part, line_weights
from training.dedup import NEAR_BITS, content_hash, dihedral_hashes, group_near_duplicates
from training.errors import DatasetError

MANIFEST = "manifest.json"
SCHEMA = "qcloop.golden/1"
#: Metadata kept with each golden image (where it came from, what kind of fault or artefact).
_KEEP_META = ("source", "path", "kind", "verdict", "review_id", "defect", "artefacts", "index", "seed", "weight")


@dataclass(frozen=True)
class GoldenEntry:
    sha: str
    label: int  # 1 = defect
    file: str
    meta: dict


class GoldenSet:
    """The frozen golden set of one trainer data directory."""

    def __init__(self, root: Path, entries: list[GoldenEntry], hw: tuple[int, int], created_at: str):
        self.root = Path(root)
        self.entries = list(entries)
        self.hw = (int(hw[0]), int(hw[1]))
        self.created_at = created_at
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ loading
    @classmethod
    def exists(cls, root: str | Path) -> bool:
        return (Path(root) / MANIFEST).is_file()

    @classmethod
    def load(cls, root: str | Path) -> GoldenSet:
        root = Path(root)
        path = root / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DatasetError(f"{path}: no golden set here yet (it is frozen at the first training run)") from exc
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read the golden-set manifest: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA or not isinstance(raw.get("items"), list):
            raise DatasetError(f"{path}: not a golden-set manifest (schema {SCHEMA})")
        entries = [GoldenEntry(i["sha"], int(i["label"]), i["file"], dict(i.get("meta", {}))) for i in raw["items"]]
        return cls(root, entries, tuple(raw["input_hw"]), raw["created_at"])

    @classmethod
    def load_or_freeze(cls, root: str | Path, candidates: ImageSet, size: int, seed: int = 0) -> GoldenSet:
        """The golden set in ``root``; on the first call, freeze ``size`` images drawn from ``candidates``.

        Whole near-duplicate groups are drawn, stratified by label; images a seed folder
        filed under ``test``/``golden`` are taken first.
        """
        root = Path(root)
        if cls.exists(root):
            return cls.load(root)
        if size < 2:
            raise DatasetError(f"golden set size must be >= 2, got {size}")
        data = candidates if all("group" in s.meta for s in candidates.samples) else candidates.dedup()
        chosen = _draw(data, size, seed)
        if len({s.label for s in chosen}) < 2:
            raise DatasetError(f"cannot freeze a golden set with both classes from {data.counts()}; add data")
        golden = cls(root, [], data.hw, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        golden._write_samples(chosen)
        return golden

    @classmethod
    def freeze(cls, root: str | Path, samples: ImageSet) -> GoldenSet:
        """A labelled set of exactly ``samples`` in a new folder ``root`` (e.g. the line's gate set of one
        retrain; one class is enough there). A folder left by an earlier attempt is replaced."""
        root = Path(root)
        if root.exists():
            shutil.rmtree(root)
        frozen = cls(root, [], samples.hw, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        frozen._write_samples(list(samples.samples))
        return frozen

    # ------------------------------------------------------------------ growing
    def add(self, more: ImageSet) -> int:
        """Add images explicitly (``qc train golden add``); return how many were new."""
        if more.hw != self.hw:
            more = ImageSet([Sample(resize_to(s.image, self.hw),
                                    s.label, s.meta) for s in more.samples], self.hw, more.stats)
        known = {e.sha for e in self.entries}
        fresh = [s for s in more.samples if content_hash(s.image) not in known]
        self._write_samples(fresh)
        return len(fresh)

    def _write_samples(self, samples: list[Sample]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        known = {e.sha for e in self.entries}
        for s in samples:
            sha = content_hash(s.image)
            if sha in known:
                continue
            known.add(sha)
            ok, buf = cv2.imencode(".png", s.image)
            if not ok:
                raise DatasetError(f"cannot encode golden image {sha[:12]} as PNG")
            name = f"{sha}.png"
            write_atomically(self.root / name, buf.tobytes())
            meta = {k: s.meta[k] for k in _KEEP_META if k in s.meta}
            if "dhash" in s.meta:  # the near-duplicate hash of the file as read (training.data)
                meta["dhash"] = np.asarray(s.meta["dhash"], np.uint8).tobytes().hex()
            if s.meta.get("sha") and s.meta["sha"] != sha:
                meta["source_sha"] = s.meta["sha"]  # the hash of the file it came from (before resizing)
            self.entries.append(GoldenEntry(sha, int(s.label), name, meta))
        self._images = None
        self._write_manifest()

    def _write_manifest(self) -> None:
        labels = [e.label for e in self.entries]
        doc = {"schema": SCHEMA, "created_at": self.created_at,
               "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "input_hw": list(self.hw), "hash": self.digest(),
               "counts": {LABELS[0]: labels.count(0), LABELS[1]: labels.count(1)},
               "items": [{"sha": e.sha, "label": e.label, "file": e.file, "meta": e.meta} for e in self.entries]}
        write_atomically(self.root / MANIFEST, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    # ------------------------------------------------------------------ views
    @property
    def images(self) -> np.ndarray:
        """(N, H, W) uint8, read from the stored PNGs (and checked against their hashes)."""
        if self._images is None:
            out = []
            for e in self.entries:
                path = self.root / e.file
                image = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise DatasetError(f"{path}: golden image missing or unreadable")
                if content_hash(image) != e.sha:
                    raise DatasetError(f"{path}: golden image changed on disk (hash differs from the manifest)")
                out.append(image)
            self._images = np.stack(out) if out else np.zeros((0, *self.hw), np.uint8)
        return self._images

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.entries], np.int64)

    @property
    def weights(self) -> np.ndarray | None:
        """Line parts each golden image stands for (training.data.Sample); None when every one counts once."""
        return line_weights(e.meta for e in self.entries)

    def counts(self) -> dict[str, int]:
        labels = [e.label for e in self.entries]
        return {LABELS[0]: labels.count(0), LABELS[1]: labels.count(1)}

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for sha, label in sorted((e.sha, e.label) for e in self.entries):
            h.update(f"{sha}:{label}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict:
        return {"images": len(self), "counts": self.counts(), "hash": self.digest(), "created_at": self.created_at}

    def exclude_from(self, data: ImageSet, max_bits: int = NEAR_BITS) -> ImageSet:
        """``data`` without golden images and without any near-duplicate of one (transitively)."""
        golden_shas = {e.sha for e in self.entries} | {e.meta["source_sha"] for e in self.entries
                                                       if "source_sha" in e.meta}
        kept = [s for s in data.samples if (s.meta.get("sha") or content_hash(s.image)) not in golden_shas
                and _golden_size_sha(s.image, self.hw) not in golden_shas]
        # Synthetic renders and line captures are distinct parts (training.data.DISTINCT_PART_SOURCES):
        # only photographs are grouped.
        photos = [i for i, s in enumerate(kept) if not is_distinct_part(s)]
        gimages = self.images
        # Hashes of the files as read where known (so the grouping matches ImageSet.dedup's at any input
        # size), else of the stored images (golden sets frozen before files were hashed as read).
        hashes = ([_stored_hash(e.meta, g) for e, g in zip(self.entries, gimages)]
                  + [_sample_hash(kept[i]) for i in photos])
        groups = group_near_duplicates(hashes, max_bits)
        tainted = set(groups[:len(gimages)])
        drop = {photos[k] for k, g in enumerate(groups[len(gimages):]) if g in tainted}
        out = [s for i, s in enumerate(kept) if i not in drop]
        stats = {**data.stats, "golden_excluded": len(data) - len(out), "images": len(out)}
        return ImageSet(out, data.hw, stats)


def _stored_hash(meta: dict, image: np.ndarray) -> np.ndarray:
    if isinstance(meta.get("dhash"), str):
        return np.frombuffer(bytes.fromhex(meta["dhash"]), np.uint8).reshape(8, -1)
    return dihedral_hashes(image)


def _sample_hash(sample: Sample) -> np.ndarray:
    return sample.meta["dhash"] if "dhash" in sample.meta else dihedral_hashes(sample.image)


def _golden_size_sha(image: np.ndarray, hw: tuple[int, int]) -> str:
    """The hash an image would have once stored in the golden set (sizes may differ between builds)."""
    if image.shape[:2] == hw:
        return content_hash(image)
    return content_hash(resize_to(image, hw))


def _draw(data: ImageSet, size: int, seed: int) -> list[Sample]:
    members: dict[int, list[Sample]] = {}
    for s in data.samples:
        members.setdefault(s.meta["group"], []).append(s)
    hinted = [g for g, ms in members.items() if any(m.meta.get("split") == "golden" for m in ms)]
    chosen: list[Sample] = [m for g in hinted for m in members[g]]
    if len(chosen) >= size:
        return chosen
    rest = [g for g in members if g not in set(hinted)]
    total = sum(len(members[g]) for g in rest) or 1
    rng = np.random.default_rng(seed)
    want_left = size - len(chosen)
    for label in (0, 1):
        pool = [g for g in rest if max(m.label for m in members[g]) == label]
        pool = [pool[i] for i in rng.permutation(len(pool))]
        share = sum(len(members[g]) for g in pool) / total
        want, got = max(1, round(want_left * share)), 0
        while pool and got < want:
            g = pool.pop()
            chosen += members[g]
            got += len(members[g])
    return chosen
