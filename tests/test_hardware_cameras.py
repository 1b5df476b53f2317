"""Camera backends against real files: images and a video the tests write themselves."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from hardware.base import Camera, Frame, PartTruth
from hardware.cameras import ArtefactCamera, FolderCamera, OpenCVCamera, StaleGuard, SyntheticCamera, VideoFileCamera
from hardware.errors import CameraError
from hardware.synthetic import PartGenerator


def _image(value: int, size=(48, 64)) -> np.ndarray:
    img = np.full(size, value, np.uint8)
    cv2.putText(img, str(value), (2, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255 - value, 2)
    return img


def _write_video(path, n: int = 12, fps: float = 50.0) -> list[int]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    levels = [20 * i + 10 for i in range(n)]
    for v in levels:
        writer.write(cv2.cvtColor(_image(v), cv2.COLOR_GRAY2BGR))
    writer.release()
    return levels


def test_synthetic_camera_renders_part_i_on_capture_i():
    gen = PartGenerator(seed=3, width=160, height=128, defect_rate=0.5)
    cam = SyntheticCamera(gen)
    assert isinstance(cam, Camera)
    frames = [cam.capture(f"p{i}") for i in range(3)]
    for i, f in enumerate(frames):
        image, truth = gen.render(i)
        assert isinstance(f, Frame) and f.part_id == f"p{i}"
        assert np.array_equal(f.image, image) and f.truth == truth
        assert f.captured_at > 1e9 and f.captured_mono > 0


def test_synthetic_prerender_cycles():
    gen = PartGenerator(seed=3, width=160, height=128)
    cam = SyntheticCamera(gen, prerender=2)
    imgs = [cam.capture(str(i)).image for i in range(5)]
    assert np.array_equal(imgs[0], imgs[2]) and np.array_equal(imgs[1], imgs[3])
    assert not np.array_equal(imgs[0], imgs[1])
    cam.close()
    with pytest.raises(CameraError):
        cam.capture("x")


def test_folder_replay_in_order_with_labels(tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "def").mkdir()
    cv2.imwrite(str(tmp_path / "def" / "a.png"), _image(200))
    cv2.imwrite(str(tmp_path / "ok" / "b.png"), _image(50))
    cv2.imwrite(str(tmp_path / "ok" / "c.png"), _image(100))
    (tmp_path / "notes.txt").write_text("not an image")
    cam = FolderCamera(tmp_path)
    frames = [cam.capture(str(i)) for i in range(4)]
    assert [f.source.split("/")[-1] for f in frames] == ["a.png", "b.png", "c.png", "a.png"]
    assert frames[0].truth == PartTruth(defect="unknown")
    assert frames[1].truth == PartTruth()
    assert frames[1].image.ndim == 2 and frames[1].image[0, 0] == 50


def _labelled_folder(tmp_path, n_ok: int = 6, n_def: int = 6):
    for name, n, base in (("ok", n_ok, 20), ("def", n_def, 140)):
        (tmp_path / name).mkdir()
        for i in range(n):
            cv2.imwrite(str(tmp_path / name / f"{name}{i}.png"), _image(base + 10 * i, size=(96, 96)))


def test_a_shuffled_folder_plays_every_file_once_per_pass_in_a_new_mixed_order(tmp_path):
    _labelled_folder(tmp_path)
    cam = FolderCamera(tmp_path, shuffle=3)
    first = [cam.capture(str(i)).source for i in range(12)]
    second = [cam.capture(str(i)).source for i in range(12)]
    assert sorted(first) == sorted(second) == sorted(str(p) for p in cam.files)  # each file once a pass
    assert first != sorted(first) and first != second  # mixed, and mixed anew
    again = FolderCamera(tmp_path, shuffle=3)
    assert [again.capture(str(i)).source for i in range(12)] == first  # the same seed plays the same order
    labels = [("/def/" in s) for s in first]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)  # ok and def interleave


def test_artefact_camera_adds_lighting_artefacts_to_a_share_of_frames_and_names_them_in_the_truth(tmp_path):
    _labelled_folder(tmp_path, n_ok=10, n_def=10)
    plain, marked = FolderCamera(tmp_path), ArtefactCamera(FolderCamera(tmp_path), rate=0.5, seed=1)
    changed = 0
    for i in range(20):
        a, b = plain.capture(str(i)), marked.capture(str(i))
        assert b.truth.is_defect == a.truth.is_defect  # an artefact never makes a defect, nor hides one
        if b.truth.artefacts:
            changed += 1
            assert not np.array_equal(a.image, b.image)
        else:
            assert np.array_equal(a.image, b.image)
    assert 4 <= changed <= 16
    with pytest.raises(ValueError, match="artefact rate"):
        ArtefactCamera(plain, rate=1.5)


def test_folder_without_loop_ends(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), _image(80))
    cam = FolderCamera(tmp_path, loop=False, grey=False)
    assert cam.capture("1").image.shape == (48, 64, 3)
    with pytest.raises(CameraError, match="replayed"):
        cam.capture("2")


def test_corrupt_file_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _image(80))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    cam = FolderCamera(tmp_path)
    cam.capture("1")
    with pytest.raises(CameraError, match="b.jpg"):
        cam.capture("2")
    assert cam.capture("3").image[0, 0] == 80  # the camera moves on past the bad file


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(CameraError, match="no image files"):
        FolderCamera(tmp_path)
    with pytest.raises(CameraError, match="does not exist"):
        FolderCamera(tmp_path / "nope")


def test_video_file_replays_and_loops(tmp_path):
    path = tmp_path / "line.avi"
    levels = _write_video(path, n=4)
    cam = VideoFileCamera(path)
    got = [int(cam.capture(str(i)).image[0, 0]) for i in range(6)]
    # MJPG is lossy: compare grey levels with a tolerance.
    assert all(abs(g - e) <= 6 for g, e in zip(got, levels + levels[:2])), got
    cam.close()
    once = VideoFileCamera(path, loop=False)
    for i in range(4):
        once.capture(str(i))
    with pytest.raises(CameraError, match="end of video"):
        once.capture("x")
    once.close()


def test_opencv_camera_on_a_file_then_stale(tmp_path):
    path = tmp_path / "live.avi"
    levels = _write_video(path, n=10)
    cam = OpenCVCamera(str(path), stale_after_s=0.5)
    try:
        first = cam.capture("a")
        assert first.image.shape == (48, 64)
        assert any(abs(int(first.image[0, 0]) - v) <= 6 for v in levels)
        seqs = [first.meta["seq"]]
        with pytest.raises(CameraError, match="stale"):
            for i in range(len(levels) + 1):  # at most one new frame per capture, then none
                seqs.append(cam.capture(str(i)).meta["seq"])
        assert seqs == sorted(set(seqs)), "a frame was returned twice"
    finally:
        cam.close()
    assert not cam._thread.is_alive()


def test_opencv_camera_bad_source():
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVCamera("/nonexistent/video.avi")


class _Frozen:
    """A camera stuck on one image after the first two."""

    def __init__(self):
        self.n = 0
        self.closed = False

    def capture(self, part_id, not_before=None):
        self.n += 1
        return Frame(part_id, 0.0, 0.0, _image(min(self.n, 3) * 10))

    def close(self):
        self.closed = True


def test_stale_guard_detects_a_frozen_camera():
    guard = StaleGuard(_Frozen(), repeat_limit=3)
    guard.capture("1")
    guard.capture("2")
    guard.capture("3")  # first time image "30"
    guard.capture("4")  # second time
    with pytest.raises(CameraError, match="stale"):
        guard.capture("5")
    guard.close()
    assert guard.camera.closed


def test_stale_guard_lets_a_moving_line_through():
    guard = StaleGuard(SyntheticCamera(PartGenerator(width=96, height=96), prerender=2), repeat_limit=2)
    for i in range(6):
        guard.capture(str(i))


def test_a_grabbing_camera_returns_no_frame_from_before_the_trigger(tmp_path):
    path = tmp_path / "live.avi"
    _write_video(path, n=10)
    cam = OpenCVCamera(str(path), stale_after_s=0.5)
    try:
        cam.capture("warm-up")  # the grabber runs; its latest frame is now behind us
        trigger = time.monotonic()
        frame = cam.capture("part", not_before=trigger)
        assert frame.captured_mono >= trigger  # grabbed after the part arrived, not the frame before it
    finally:
        cam.close()
