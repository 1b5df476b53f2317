"""models.preprocess: the crop rule and the area resize that the edge and training share."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardware.synthetic import PartGenerator
from models.preprocess import resize_to, roi_pixels


def _part(width: int = 1280, height: int = 1024) -> np.ndarray:
    frame, _ = PartGenerator(seed=3, width=width, height=height, defect_rate=1.0).render(0)
    return frame


def _area(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("shape,hw", [((882, 882), (128, 128)),  # the synthetic line's part: a factor of 6.89
                                      ((300, 300), (128, 128)),  # a casting photo
                                      ((1024, 1280), (100, 77)),  # different factors across and down
                                      ((896, 896), (128, 128))])  # a whole factor: OpenCV's own path
def test_the_same_pixels_as_opencv_area_resize(shape, hw):
    frame = _part()
    image = np.ascontiguousarray(cv2.resize(frame, shape[::-1], interpolation=cv2.INTER_AREA)
                                 if shape != frame.shape else frame)
    diff = np.abs(resize_to(image, hw).astype(int) - _area(image, hw).astype(int))
    # OpenCV sums in float32, the integral in float64: a mean that lands on .5 may round the other way.
    assert resize_to(image, hw).shape == hw
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.002


def test_a_crop_view_and_colour_frames_resize_like_opencv():
    frame = _part()
    view = frame[71:953, 199:1081]  # not contiguous: the edge resizes the ROI of the frame in place
    assert np.abs(resize_to(view, (128, 128)).astype(int) - _area(np.ascontiguousarray(view), (128, 128))).max() <= 1
    colour = np.random.default_rng(0).integers(0, 256, (301, 457, 3), dtype=np.uint8)
    out = resize_to(colour, (64, 100))
    assert out.shape == (64, 100, 3) and np.abs(out.astype(int) - _area(colour, (64, 100)).astype(int)).max() <= 1


def test_constant_images_stay_constant_and_same_size_is_returned_as_is():
    assert np.all(resize_to(np.full((883, 881), 77, np.uint8), (128, 128)) == 77)
    assert np.all(resize_to(np.full((883, 881), 255, np.uint8), (128, 128)) == 255)
    same = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    assert resize_to(same, (64, 64)) is same
    assert resize_to(np.full((20, 30), 9, np.uint8), (40, 60)).shape == (40, 60)  # enlarging is OpenCV's


def test_roi_pixels_round_and_clip_to_the_frame():
    assert roi_pixels((0.5, 0.0, 0.05, 0.1), 200, 100) == (100, 0, 10, 10)
    assert roi_pixels((0.9, 0.9, 0.5, 0.5), 100, 100) == (90, 90, 10, 10)
