"""The station's health: /healthz for monitoring (no login) and the ingest's alarms on the dashboard."""
from __future__ import annotations

from station_ui.events import EventHub
from station_ui.ingest import Ingest
from tests.station_support import ENGINEER, login, make_station
from tests.waiting import wait_until


def test_healthz_and_dashboard_show_a_storage_alarm(tmp_path, broker):
    app, cfg = make_station(tmp_path, mqtt={"host": broker.host, "port": broker.port, "client_id": "st-health"})
    ingest = Ingest(cfg, EventHub())
    app.extensions["station"].publisher = ingest
    c = app.test_client()
    assert c.get("/healthz").status_code == 503  # not connected yet
    ingest.start(wait_s=10)
    try:
        wait_until(lambda: c.get("/healthz").status_code == 200, timeout=10)
        ingest.alarm_state.raise_("storage", "the station's disk is full: reviews are not acknowledged")
        r = c.get("/healthz")
        assert r.status_code == 503 and r.get_json()["alarms"] == {
            "storage": "the station's disk is full: reviews are not acknowledged"}
        login(c, ENGINEER[0], ENGINEER[2])
        html = c.get("/dashboard").get_data(as_text=True)
        assert 'id="alarm-storage"' in html and "disk is full" in html
    finally:
        ingest.stop()
