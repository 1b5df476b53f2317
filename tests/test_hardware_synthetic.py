"""The synthetic part generator: determinism, honest ground truth, rates, reusable injectors."""
from __future__ import annotations

import numpy as np
import pytest

from hardware.synthetic import ARTEFACT_KINDS, DEFECT_KINDS, PartGenerator, add_artefact, add_defect


def _photo_like(size: int = 300, seed: int = 0) -> np.ndarray:
    """A light-grey 300x300 frame with a bright disc, like a real top-view photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size), 170.0)
    img[(xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.4 * size) ** 2] = 140.0
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_render_is_deterministic_per_seed_and_index():
    a, ta = PartGenerator(seed=5).render(11)
    b, tb = PartGenerator(seed=5).render(11)
    assert a.shape == (1024, 1280) and a.dtype == np.uint8
    assert np.array_equal(a, b) and ta == tb
    assert not np.array_equal(a, PartGenerator(seed=6).render(11)[0])
    assert not np.array_equal(a, PartGenerator(seed=5).render(12)[0])


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_box_is_exactly_where_pixels_changed(kind):
    gen = PartGenerator(seed=2, width=640, height=512, defect_rate=1.0, artefact_rate=0.0)
    index = next(i for i in range(200) if gen.render(i)[1].defect == kind)
    img, truth = gen.render(index)
    clean = gen.render_clean(index)
    assert truth.is_defect
    assert truth.artefacts == ()
    assert len(truth.boxes) == 1
    ys, xs = np.nonzero(img != clean)
    assert xs.size > 0, "the defect changed no pixel"
    x, y, w, h = truth.boxes[0]
    assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)


def test_good_parts_without_artefacts_are_the_clean_render():
    gen = PartGenerator(seed=4, width=320, height=256, defect_rate=0.0, artefact_rate=0.0)
    for i in range(5):
        img, truth = gen.render(i)
        assert truth == type(truth)()  # good, no artefacts, no boxes
        assert np.array_equal(img, gen.render_clean(i))


def test_artefacts_change_the_image_but_are_not_defects():
    gen = PartGenerator(seed=8, width=320, height=256, defect_rate=0.0, artefact_rate=1.0)
    for i in range(10):
        img, truth = gen.render(i)
        assert not truth.is_defect and truth.boxes == ()
        assert 1 <= len(truth.artefacts) <= 2 and set(truth.artefacts) <= set(ARTEFACT_KINDS)
        assert not np.array_equal(img, gen.render_clean(i))


def test_rates_are_roughly_respected():
    gen = PartGenerator(seed=1, width=128, height=128, defect_rate=0.1, artefact_rate=0.2)
    truths = [gen.render(i)[1] for i in range(400)]
    n_def = sum(t.is_defect for t in truths)
    n_art = sum(bool(t.artefacts) for t in truths)
    both = sum(t.is_defect and bool(t.artefacts) for t in truths)
    # Binomial: mean 40 and 80, four standard deviations either side.
    assert 16 <= n_def <= 64
    assert 48 <= n_art <= 112
    assert both >= 1  # independent: a defective part may also carry artefacts
    kinds = {t.defect for t in truths if t.is_defect}
    assert kinds == set(DEFECT_KINDS)


def test_defect_boxes_lie_inside_the_roi():
    gen = PartGenerator(seed=9, width=640, height=512, defect_rate=1.0, artefact_rate=0.0)
    rx, ry, rw, rh = gen.roi()
    assert rw == rh
    assert 0 <= rx
    assert 0 <= ry
    assert rx + rw <= 640
    assert ry + rh <= 512
    for i in range(30):
        x, y, w, h = gen.render(i)[1].boxes[0]
        assert rx <= x
        assert ry <= y
        assert x + w <= rx + rw
        assert y + h <= ry + rh


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_add_defect_on_a_300px_photo(kind):
    img = _photo_like()
    before = img.copy()
    out, (x, y, w, h) = add_defect(img, kind, np.random.default_rng(3), severity=0.2)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before), "the input must not be modified"
    diff = out != img
    assert diff.any() and diff[y:y + h, x:x + w].sum() == diff.sum()
    assert 0 <= x
    assert 0 <= y
    assert x + w <= 300
    assert y + h <= 300


@pytest.mark.parametrize("kind", ARTEFACT_KINDS)
def test_add_artefact_on_a_300px_photo(kind):
    img = _photo_like()
    out = add_artefact(img, kind, np.random.default_rng(4))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out != img).any()


def test_glare_saturates_and_dust_is_fainter_than_a_pit():
    img = _photo_like()
    assert (img == 255).sum() == 0
    for seed in range(5):
        assert (add_artefact(img, "glare", np.random.default_rng(seed)) == 255).sum() > 0
    dust = np.abs(add_artefact(img, "dust", np.random.default_rng(1)).astype(int) - img).max()
    pit = np.abs(add_defect(img, "pit", np.random.default_rng(1), severity=0.0)[0].astype(int) - img).max()
    assert dust < pit


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="scratch"):
        add_defect(_photo_like(), "scratch", np.random.default_rng(0))
    with pytest.raises(ValueError, match="rain"):
        add_artefact(_photo_like(), "rain", np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        add_artefact(np.zeros((50, 50), np.float32), "dust", np.random.default_rng(0))
    with pytest.raises(ValueError, match="defect_rate"):
        PartGenerator(defect_rate=1.5)


def test_rim_defect_on_a_part_out_of_view_is_refused():
    with pytest.raises(ValueError, match="not on the 300x300 image"):
        add_defect(_photo_like(), "chip", np.random.default_rng(0), part=(1000.0, 1000.0, 50.0))
