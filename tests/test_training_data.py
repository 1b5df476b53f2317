"""Dataset building: folder layout, exact duplicates, near-duplicate groups kept on one side of a split."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardware.synthetic import PartGenerator
from training.data import ImageSet, fit_input
from training.errors import DatasetError

HW = (64, 64)


def _photos(n: int, seed: int = 3) -> list[np.ndarray]:
    """Distinct part photographs: synthetic renders, downsized like seed images (300x300)."""
    gen = PartGenerator(seed=seed, width=320, height=320, defect_rate=0.5)
    return [cv2.resize(gen.render(i)[0], (300, 300), interpolation=cv2.INTER_AREA) for i in range(n)]


def _name(sample) -> str:
    return "/".join(sample.meta["path"].split("/")[-2:])


def _write(folder, images, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        cv2.imwrite(str(folder / f"img_{start + i:03d}.png"), im)


def test_folders_dedup_and_rotated_copy_stays_with_original(tmp_path):
    photos = _photos(24)
    _write(tmp_path / "ok", photos[:12])
    _write(tmp_path / "def", photos[12:])
    # An exact copy and a rotated + flipped copy of ok/img_000 (a near-duplicate).
    _write(tmp_path / "ok", [photos[0]], start=100)
    _write(tmp_path / "ok", [cv2.flip(cv2.rotate(photos[0], cv2.ROTATE_90_CLOCKWISE), 1)], start=200)
    ds = ImageSet.from_folders(tmp_path, HW)
    assert len(ds) == 26 and ds.counts() == {"ok": 14, "def": 12}
    clean = ds.dedup()
    assert clean.stats["exact_duplicates"] == 1 and len(clean) == 25
    group = {_name(s): s.meta["group"] for s in clean.samples}
    assert group["ok/img_000.png"] == group["ok/img_200.png"]
    assert len({group["ok/img_000.png"], group["ok/img_001.png"], group["def/img_000.png"]}) == 3
    for seed in range(6):
        parts = clean.split(val=0.3, golden=0.3, seed=seed)
        where = {_name(s): name for name, p in parts.items() for s in p.samples}
        assert where["ok/img_000.png"] == where["ok/img_200.png"]
        assert sum(len(p) for p in parts.values()) == 25
        assert all(len(p) > 0 for p in parts.values())


def test_presplit_layout_test_folder_is_golden(tmp_path):
    photos = _photos(8)
    _write(tmp_path / "train" / "ok", photos[:3])
    _write(tmp_path / "train" / "def", photos[3:6])
    _write(tmp_path / "test" / "ok", photos[6:7])
    _write(tmp_path / "test" / "def", photos[7:8])
    parts = ImageSet.from_folders(tmp_path, HW).split(val=0.34, golden=0.2, seed=0)
    assert sorted(s.meta["path"].split("/")[-3] for s in parts["golden"].samples) == ["test", "test"]
    assert len(parts["val"]) >= 1 and len(parts["train"]) + len(parts["val"]) == 6


def test_digest_is_order_independent_and_content_sensitive():
    ds = ImageSet.from_synthetic(6, HW, seed=1)
    same = ImageSet(list(reversed(ds.samples)), HW)
    assert ds.digest() == same.digest()
    assert ImageSet.from_synthetic(6, HW, seed=2).digest() != ds.digest()


def test_synthetic_keeps_ground_truth_and_edge_crop():
    ds = ImageSet.from_synthetic(30, HW, seed=4, defect_rate=0.5, artefact_rate=0.5)
    assert ds.counts()["def"] > 0 and ds.counts()["ok"] > 0
    assert all((s.meta["defect"] is not None) == bool(s.label) for s in ds.samples)
    assert any(s.meta["artefacts"] for s in ds.samples)
    assert ds.samples[0].image.shape == HW and ds.samples[0].image.dtype == np.uint8


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageSet.from_folders(tmp_path / "nope", HW)
    (tmp_path / "ok").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        ImageSet.from_folders(tmp_path, HW)
    (tmp_path / "ok" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        ImageSet.from_folders(tmp_path, HW)


def test_fit_input_matches_edge_crop_rule():
    frame = np.arange(100 * 200, dtype=np.uint32).reshape(100, 200).astype(np.uint8)
    out = fit_input(frame, (10, 10), roi=(0.5, 0.0, 0.05, 0.1))
    np.testing.assert_array_equal(out, frame[0:10, 100:110])
