"""Where the model looked: occlusion maps drawn by the retraining server's model server (real HTTP, the
edge's own Detector), fetched and kept by the real station app, laid over the frame on the review screen."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from station_support import OPERATOR, login, make_header, make_station

from edge.detector import Detector
from models.onnx_build import threshold_model_bytes
from models.registry import Registry
from station_ui.store import Store
from tests.models_support import build_version
from training.explain import occlusion_map
from training.release import ModelHTTPServer

HW = (64, 64)


def _frame_with_a_spot(at=(96, 32), size=(128, 128)) -> np.ndarray:
    img = np.full(size, 150, np.uint8)
    cv2.circle(img, (at[1], at[0]), 6, 40, -1)  # a pit: a dark spot (row 96, column 32)
    return img


@pytest.fixture
def spot_model(tmp_path):
    root = tmp_path / "registry"
    build_version(root, "1.0.0", input_hw=HW, thresholds=(0.3, 0.7), set_current=True,
                  model_bytes=threshold_model_bytes(HW, contrast=0.2, blur=9))
    return root


def test_the_cell_that_holds_the_defect_is_where_the_model_looked(spot_model):
    det = Detector.load(Registry(spot_model).version_dir("1.0.0"), warmup=1)
    image = _frame_with_a_spot()
    assert det.score(image) > 0.5  # the model calls it a defect ...
    heat = occlusion_map(det, image, grid=8)
    i, j = np.unravel_index(np.argmax(heat), heat.shape)
    assert i in (5, 6) and j in (1, 2)  # ... because of the spot (rows 90-102, columns 26-38: cells 5-6, 1-2)
    far = np.ones_like(heat, bool)
    far[4:8, 0:4] = False
    assert heat.max() == 1.0 and heat[far].max() < 0.2  # and nothing far from it
    with pytest.raises(ValueError, match="2-D or 3-D"):
        occlusion_map(det, np.zeros((0,), np.uint8))


def test_the_review_screen_gets_the_heat_map_from_the_retraining_server_and_keeps_it(tmp_path, spot_model):
    token_file = tmp_path / "explain-token"
    token_file.write_text("s3cret-explain-token\n")
    server = ModelHTTPServer(Registry(spot_model), port=0, explain_token="s3cret-explain-token").start()
    app, cfg = make_station(tmp_path, explain={"url": server.url, "token_file": str(token_file)})
    store = Store(cfg.db_path)
    ok, jpeg = cv2.imencode(".jpg", _frame_with_a_spot(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    h = make_header(model="1.0.0")
    path = cfg.image_dir / f"{h.id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg.tobytes())
    store.insert_review(h, str(path), len(jpeg))
    c = app.test_client()
    login(c, *OPERATOR[::2])
    page = c.get("/review").get_data(as_text=True)
    assert 'id="heat-toggle"' in page and f"/images/{h.id}/heatmap.png" in page
    try:
        r = c.get(f"/images/{h.id}/heatmap.png")
        assert r.status_code == 200 and r.mimetype == "image/png"
        rgba = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (128, 128, 4)  # the frame's size, to lie over it
        alpha = rgba[:, :, 3].astype(int)
        y, x = np.unravel_index(np.argmax(alpha), alpha.shape)
        assert abs(y - 96) <= 16 and abs(x - 32) <= 16  # opaque where the pit is
        assert alpha[:40, 80:].max() < alpha.max() / 2  # and see-through far from it
    finally:
        server.stop()
    again = c.get(f"/images/{h.id}/heatmap.png")  # kept: the retraining server is not asked again
    assert again.status_code == 200 and again.data == r.data


def test_heat_maps_refuse_a_wrong_token_and_say_so_when_off(tmp_path, spot_model):
    import urllib.error
    import urllib.request

    server = ModelHTTPServer(Registry(spot_model), port=0, explain_token="right").start()
    try:
        req = urllib.request.Request(f"{server.url}/explain/1.0.0", data=b"\xff\xd8x", method="POST",
                                     headers={"Authorization": "Bearer wrong"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 401
        token_file = tmp_path / "t"
        token_file.write_text("wrong")
        app, cfg = make_station(tmp_path / "a", explain={"url": server.url, "token_file": str(token_file)})
        store = Store(cfg.db_path)
        h = make_header(model="1.0.0")
        (cfg.image_dir).mkdir(parents=True, exist_ok=True)
        (cfg.image_dir / "f.jpg").write_bytes(cv2.imencode(".jpg", _frame_with_a_spot())[1].tobytes())
        store.insert_review(h, str(cfg.image_dir / "f.jpg"), 10)
        c = app.test_client()
        login(c, *OPERATOR[::2])
        r = c.get(f"/images/{h.id}/heatmap.png")
        assert r.status_code == 503 and "answered 401" in r.get_data(as_text=True)
    finally:
        server.stop()
    off, _ = make_station(tmp_path / "b")
    c = off.test_client()
    login(c, *OPERATOR[::2])
    r = c.get(f"/images/{h.id}/heatmap.png")
    assert r.status_code == 404 and "[explain].url" in r.get_data(as_text=True)
