"""Review capacity: the band narrows (never passing more) when more arrives than the reviewers can take and
widens when it is quiet; each move is logged, sent to the lines' edges over a real broker, and applied."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
from station_support import ENGINEER, login, make_header, make_station

from edge.config import load_config
from edge.decision import decide, scaled_band
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from station_ui import capacity
from station_ui.config import config_for
from station_ui.store import Store
from tests.test_edge_service import write_config
from tests.waiting import wait_until


def test_a_narrower_band_never_passes_a_part_the_calibrated_band_held_and_a_wider_one_passes_fewer():
    pb, ra = 0.3, 0.7
    assert scaled_band(pb, ra, 0.5) == (0.3, 0.5)  # the top comes down ...
    lo, hi = scaled_band(pb, ra, 1.5)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.8)  # ... or both sides move out
    assert scaled_band(0.05, 0.95, 3.0) == (0.0, 1.0)  # within [0, 1]
    for score in [i / 100 for i in range(101)]:
        calibrated = decide(score, pb, ra).action
        narrow = decide(score, *scaled_band(pb, ra, 0.4)).action
        wide = decide(score, *scaled_band(pb, ra, 1.8)).action
        assert not (narrow == "PASS" and calibrated != "PASS")  # narrowing never passes more: escapes hold
        assert not (wide == "PASS" and calibrated != "PASS")
        assert not (wide == "REJECT" and calibrated != "REJECT")


def _arrive(store, n, at, line="line1"):
    items = []
    for _ in range(n):
        h = make_header(line=line, reason="uncertain")
        items.append((h, "x.jpg", 0))
    store.insert_reviews(items, received_at=at)
    return [h for h, _, _ in items]


def test_the_band_narrows_under_load_widens_when_quiet_and_logs_why(tmp_path):
    app, cfg = make_station(tmp_path, review={"capacity_per_hour": 100})
    store = Store(cfg.db_path)
    ctl = capacity.CapacityControl(cfg.db_path, "station1", 100, 60, publisher=None)
    t = time.time() - 2500.0
    first = _arrive(store, 1, t - 3600)  # a line this station serves, ruled long ago
    store.record_verdict(first[0].id, "not_defect", "", "olga")
    assert ctl.step(t).scale == 1.25 and store.band_scale() == 1.25  # quiet and nothing waiting: wider
    assert "widened" in store.band_moves()[-1]["reason"]
    burst = _arrive(store, 40, t + 10)  # 40 in 15 minutes: 160 an hour against 100
    assert ctl.step(t + 20).scale == 1.0
    assert ctl.step(t + 30).scale == 0.8 and "narrowed" in store.band_moves()[-1]["reason"]
    (line1,) = store.line_settings()
    assert (line1.line, line1.band_scale) == ("line1", 0.8)  # what the line's edges are sent
    for _ in range(20):
        ctl.step(t + 40)
    assert store.band_scale() == capacity.MIN_SCALE  # never narrower than its limit
    for h in burst:
        store.record_verdict(h.id, "not_defect", "", "olga")
    assert ctl.step(t + 100) is None  # the burst is still in the window: under capacity now, kept
    assert ctl.step(t + 2000).scale == round(capacity.MIN_SCALE * capacity.WIDEN, 4)  # quiet again: wider
    c = app.test_client()
    login(c, *ENGINEER[::2])
    dash = c.get("/dashboard?window=30d").get_data(as_text=True)
    assert 'id="band-moves"' in dash and "narrowed" in dash and "Review band width" in dash


def test_an_engineers_mode_change_keeps_the_band_the_capacity_set(tmp_path):
    store = Store(tmp_path / "s.db")
    _arrive(store, 1, 1.0)
    store.set_band_scale(0.64, "test", 200, 30, 100)
    settings = store.set_line_mode("line1", "on-the-loop", 60, "REJECT", "erik")
    assert settings.band_scale == 0.64


def test_an_edge_sending_more_than_the_reviewers_can_take_gets_a_narrower_band(tmp_path, broker):
    from station_ui.server import StationServer

    scfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-cap"},
                      web={"port": 0, "threads": 8}, review={"capacity_per_hour": 60, "capacity_check_s": 0.2})
    store = Store(scfg.db_path)
    _arrive(store, 1, 1.0, line="L1")  # the station serves line L1
    store.record_verdict(store.next_items()[0]["id"], "not_defect", "", "olga")
    ecfg = load_config(write_config(tmp_path / "edge", broker))
    ecfg = replace(ecfg, trigger=replace(ecfg.trigger, rate_hz=5.0))
    edge = EdgeService(ecfg, actuator=SimulatedActuator(), max_parts=100)
    station = StationServer(scfg).start()
    try:
        edge.start()
        # Every part is uncertain here (thresholds 0..1): 5 reviews a second; 15 waiting is a quarter hour of work.
        assert wait_until(lambda: edge.pipeline.band_scale < 1.0, 20)  # the station narrowed the band
        pb, ra = edge.detector.thresholds.pass_below, edge.detector.thresholds.reject_above
        assert edge.pipeline._thresholds(edge.detector) == scaled_band(pb, ra, edge.pipeline.band_scale)
        assert wait_until(lambda: edge.status().band_scale == edge.pipeline.band_scale, 5)
    finally:
        edge.stop()
        station.stop()
