"""End to end in headless Chromium: reviews arrive over MQTT, a reviewer rules by tap and by key."""
from __future__ import annotations

import os
import threading

import paho.mqtt.client as mqtt
import pytest
from station_support import CHROMIUM, ENGINEER, OPERATOR, make_header, make_jpeg, open_review_screen

from qcloop import wire
from station_ui import accounts
from station_ui.config import config_for
from station_ui.store import Store
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed")]


def test_review_by_tap_and_key_and_live_queue(tmp_path, broker):
    from playwright.sync_api import expect, sync_playwright

    from station_ui.server import StationServer

    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-e2e"},
                     web={"port": 0, "threads": 8})
    store = Store(cfg.db_path)
    accounts.add_user(store, OPERATOR[0], OPERATOR[1], OPERATOR[2])
    server = StationServer(cfg).start()
    verdicts: list[wire.Verdict] = []
    got = threading.Condition()
    ready = threading.Event()
    edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-edge")
    edge.on_connect = lambda c, u, f, rc, p: c.subscribe(wire.Topics().all_verdicts(), qos=1)
    edge.on_subscribe = lambda *a: ready.set()

    def on_message(c, u, msg):
        with got:
            verdicts.append(wire.Verdict.decode(msg.payload))
            got.notify_all()

    edge.on_message = on_message
    edge.connect(broker.host, broker.port)
    edge.loop_start()
    try:
        assert ready.wait(10) and server.ingest.connected.is_set()
        jpeg = make_jpeg(7, size=(480, 640))
        headers = [make_header(captured_at=1000.0 + i) for i in range(3)]
        for h in headers:
            edge.publish(wire.Topics().review(h.line, h.camera), wire.encode_review(h, jpeg), qos=1)
        assert wait_until(lambda: store.queue_stats().count == 3)

        with sync_playwright() as p:
            browser, page = open_review_screen(p, server.url)
            count = page.locator("#queue-count")
            expect(count).to_have_text("3")
            expect(page.locator(f'article[data-id="{headers[0].id}"]')).to_be_visible()

            fault = page.locator("button.verdict.fault")
            box = fault.bounding_box()
            assert box and box["height"] >= 64  # a gloved finger's target
            assert page.locator("button.verdict.notdefect:not(.quick)").bounding_box()["height"] >= 64
            fault.click()
            page.locator('#kinds-real_fault button[data-kind="crack"]').click()
            expect(count).to_have_text("2")
            expect(page.locator(f'article[data-id="{headers[1].id}"]')).to_be_visible()

            page.keyboard.press("n")
            page.keyboard.press("1")  # glare
            expect(count).to_have_text("1")

            # A new review appears without a reload (server-sent events).
            late = make_header(captured_at=2000.0)
            edge.publish(wire.Topics().review(late.line, late.camera), wire.encode_review(late, jpeg), qos=1)
            expect(count).to_have_text("2")
            browser.close()

        with got:
            assert got.wait_for(lambda: len(verdicts) >= 2, 10)
        assert [(v.review_id, v.verdict, v.kind, v.user) for v in verdicts] == [
            (headers[0].id, "real_fault", "crack", OPERATOR[0]), (headers[1].id, "not_defect", "glare", OPERATOR[0])]
    finally:
        edge.disconnect()
        edge.loop_stop()
        server.stop()


@pytest.mark.parametrize("viewport", [(1280, 800), (1920, 1080)])
def test_saved_undo_and_key_help_stay_in_view_and_not_a_defect_takes_one_tap(tmp_path, viewport):
    from playwright.sync_api import expect, sync_playwright
    from station_support import add_reviews

    from station_ui.server import StationServer

    cfg = config_for(tmp_path / "st", mqtt={"enabled": False}, web={"port": 0, "threads": 8})
    store = Store(cfg.db_path)
    accounts.add_user(store, OPERATOR[0], OPERATOR[1], OPERATOR[2])
    # A busy item, as the line sends them: glare and darkness hints, a line in the loop with a lot.
    store.set_line_mode("line1", "in-the-loop", 60, "REJECT", "erik", lot="L-2026-1204")
    headers = add_reviews(store, 3, tmp_path / "img", line="line1",
                          quality={"saturated": 0.14, "dark": 0.31, "mean": 30.0, "sharpness": 20.0})
    server = StationServer(cfg).start()
    try:
        with sync_playwright() as p:
            browser, page = open_review_screen(p, server.url, viewport=viewport)
            width, height = viewport

            def in_view(selector: str) -> None:
                box = page.locator(selector).bounding_box()
                assert box is not None, selector
                assert box["y"] >= 0 and box["y"] + box["height"] <= height, (selector, box, viewport)
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box, viewport)

            expect(page.locator(f'article[data-id="{headers[0].id}"]')).to_be_visible()
            quick = page.locator("button.verdict.quick")
            assert quick.bounding_box()["height"] >= 64  # a gloved finger's target
            in_view("button.verdict.quick")
            quick.click()  # one tap: not a defect, no kind
            expect(page.locator("#status")).to_have_text("Saved.")
            expect(page.locator("#undo")).to_be_visible()
            for selector in ("#status", "#undo", "p.keys", "button.verdict.fault"):
                in_view(selector)
            expect(page.locator(f'article[data-id="{headers[1].id}"]')).to_be_visible()
            page.keyboard.press("d")  # the same by key
            expect(page.locator(f'article[data-id="{headers[2].id}"]')).to_be_visible()
            page.keyboard.press("n")
            page.keyboard.press("0")  # "not a defect", then no kind
            expect(page.locator("#empty")).to_be_visible()
            browser.close()
        rows = {h.id: store.get_review(h.id) for h in headers}
        assert [(rows[h.id]["final_verdict"], rows[h.id]["final_kind"] or "") for h in headers] == [
            ("not_defect", "")] * 3
    finally:
        server.stop()


def test_dashboard_window_toggles_and_retrain_are_labelled_touch_targets(tmp_path, broker):
    from playwright.sync_api import expect, sync_playwright

    from station_ui.server import StationServer

    cfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-dash"},
                     web={"port": 0, "threads": 8})
    store = Store(cfg.db_path)
    accounts.add_user(store, ENGINEER[0], ENGINEER[1], ENGINEER[2])
    server = StationServer(cfg).start()
    try:
        with sync_playwright() as p:
            browser, page = open_review_screen(p, server.url, user=ENGINEER)
            page.goto(server.url + "dashboard")
            expect(page.locator("#window-label")).to_have_text("Figures of the last")
            toggles = page.locator("#window-form button.toggle")
            assert toggles.all_inner_texts() == ["24 hours", "7 days", "30 days"]
            for box in (t.bounding_box() for t in toggles.all()):
                assert box["height"] >= 44 and box["width"] >= 88, box  # a gloved finger's target
            expect(toggles.nth(0)).to_have_attribute("aria-pressed", "true")
            toggles.nth(1).click()
            expect(page.locator('#window-form button[value="7d"]')).to_have_attribute("aria-pressed", "true")
            expect(page.locator('#window-form button[value="24h"]')).to_have_attribute("aria-pressed", "false")
            retrain = page.locator("#retrain-form button[type=submit]")
            expect(retrain).to_have_text("Retrain now")
            assert retrain.bounding_box()["height"] >= 44
            expect(page.locator('label[for="retrain-reason"]')).to_be_visible()
            browser.close()
    finally:
        server.stop()


def test_the_heat_map_toggles_over_the_frame(tmp_path):
    import cv2
    import numpy as np
    from playwright.sync_api import expect, sync_playwright
    from station_support import make_header

    from models.onnx_build import threshold_model_bytes
    from models.registry import Registry
    from station_ui.server import StationServer
    from tests.models_support import build_version
    from training.release import ModelHTTPServer

    build_version(tmp_path / "reg", "1.0.0", input_hw=(64, 64), set_current=True,
                  model_bytes=threshold_model_bytes((64, 64), contrast=0.2, blur=9))
    models = ModelHTTPServer(Registry(tmp_path / "reg"), port=0, explain_token="tok").start()
    (tmp_path / "tok").write_text("tok")
    cfg = config_for(tmp_path / "st", mqtt={"enabled": False}, web={"port": 0, "threads": 8},
                     explain={"url": models.url, "token_file": str(tmp_path / "tok")})
    store = Store(cfg.db_path)
    accounts.add_user(store, OPERATOR[0], OPERATOR[1], OPERATOR[2])
    frame = np.full((240, 320), 150, np.uint8)
    cv2.circle(frame, (60, 180), 10, 40, -1)
    h = make_header(model="1.0.0")
    cfg.image_dir.mkdir(parents=True, exist_ok=True)
    (cfg.image_dir / "f.jpg").write_bytes(cv2.imencode(".jpg", frame)[1].tobytes())
    store.insert_review(h, str(cfg.image_dir / "f.jpg"), 1)
    server = StationServer(cfg).start()
    try:
        with sync_playwright() as p:
            browser, page = open_review_screen(p, server.url)
            heat = page.locator("#heat-img")
            expect(heat).to_be_hidden()
            page.keyboard.press("h")
            expect(heat).to_be_visible()
            expect(heat).to_have_js_property("naturalWidth", 320)  # the map came, at the frame's size
            frame_box, heat_box = page.locator("#frame-img").bounding_box(), heat.bounding_box()
            assert frame_box == heat_box  # laid exactly over the frame
            page.locator("#heat-toggle").click()
            expect(heat).to_be_hidden()
            browser.close()
    finally:
        server.stop()
        models.stop()
