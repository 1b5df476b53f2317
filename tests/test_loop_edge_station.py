"""The review loop across real parts: a running edge, a real broker, the real station, headless Chromium.

Reviews made by the edge appear on the station's screen without a reload, a reviewer
rules by tap and by key, the verdicts reach the verdict topic and the export API, and
the station's acks empty the edge's outbox.
"""
from __future__ import annotations

import json
import os
import threading
import urllib.request
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest
from station_support import CHROMIUM, OPERATOR, open_review_screen

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from qcloop import wire
from station_ui import accounts
from station_ui.config import config_for
from station_ui.store import Store
from tests.test_edge_service import write_config
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed")]


def test_edge_reviews_are_ruled_at_the_station_and_exported(tmp_path, broker):
    from playwright.sync_api import expect, sync_playwright

    from station_ui.server import StationServer

    # The station, with a reviewer and an API token for the retraining server.
    scfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-loop"},
                      web={"port": 0, "threads": 8})
    store = Store(scfg.db_path)
    accounts.add_user(store, *OPERATOR)
    token = accounts.add_token(store, "trainer")
    station = StationServer(scfg).start()

    verdicts: list[wire.Verdict] = []
    subscribed = threading.Event()
    trainer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loop-trainer")
    trainer.on_connect = lambda c, u, f, rc, p: c.subscribe(wire.Topics().all_verdicts(), qos=1)
    trainer.on_subscribe = lambda *a: subscribed.set()
    trainer.on_message = lambda c, u, msg: verdicts.append(wire.Verdict.decode(msg.payload))
    trainer.connect(broker.host, broker.port)
    trainer.loop_start()

    # The edge: every part is uncertain (thresholds 0..1), so every part is sent for review.
    ecfg = load_config(write_config(tmp_path / "edge", broker))
    ecfg = replace(ecfg, edge=replace(ecfg.edge, line="line1", camera="cam1"))
    edge = EdgeService(ecfg, actuator=SimulatedActuator(), max_parts=2, backpressure=True)
    made: list[wire.ReviewHeader] = []
    edge.pipeline.review_listeners.append(made.append)
    try:
        assert subscribed.wait(10) and station.ingest.connected.wait(10)
        with sync_playwright() as p:
            browser, page = open_review_screen(p, station.url)
            count = page.locator("#queue-count")
            expect(count).to_have_text("0")

            edge.start()  # reviews now arrive while the reviewer watches the queue
            expect(count).to_have_text("2", timeout=15_000)
            assert wait_until(lambda: len(made) == 2)
            first, second = sorted(made, key=lambda h: h.part_id)
            expect(page.locator(f'article[data-id="{first.id}"]')).to_be_visible()

            page.locator("button.verdict.fault").click()  # by touch
            page.locator('#kinds-real_fault button[data-kind="pit"]').click()
            expect(count).to_have_text("1")
            page.keyboard.press("n")  # by key
            page.keyboard.press("1")
            expect(count).to_have_text("0")
            browser.close()

        assert wait_until(lambda: len(verdicts) == 2)
        assert {(v.review_id, v.verdict, v.part_id) for v in verdicts} == {
            (first.id, "real_fault", first.part_id), (second.id, "not_defect", second.part_id)}

        req = urllib.request.Request(station.url + "api/v1/export?since=0&limit=10",
                                     headers={"Authorization": f"Bearer {token}"})
        items = json.load(urllib.request.urlopen(req, timeout=5))["items"]
        assert {(i["id"], i["verdict"]) for i in items} == {(first.id, "real_fault"), (second.id, "not_defect")}
        img = urllib.request.urlopen(urllib.request.Request(
            station.url.rstrip("/") + items[0]["image_url"], headers={"Authorization": f"Bearer {token}"}),
            timeout=5).read()
        assert img[:2] == b"\xff\xd8"

        assert wait_until(lambda: edge.outbox.depth() == 0)  # the station's acks emptied the outbox
    finally:
        edge.stop()
        trainer.loop_stop()
        station.stop()
