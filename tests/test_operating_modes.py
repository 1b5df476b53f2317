"""Operating modes across real parts: an engineer sets a line's mode at the station, the station sends it to
the line's edges (retained, over a real broker), and a running edge holds, releases, falls back, or decides at
once accordingly; switched live."""
from __future__ import annotations

from dataclasses import replace

from station_support import ENGINEER, OPERATOR, login, page_csrf

from edge.config import load_config
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from qcloop import wire
from station_ui import accounts
from station_ui.config import config_for
from station_ui.store import Store
from tests.test_edge_service import write_config
from tests.waiting import wait_until


def _set_mode(client, line, mode, hold_time_s=60, fallback="REJECT", lot=""):
    token = page_csrf(client, "/admin/")
    r = client.post("/admin/lines/mode", data={"line": line, "mode": mode, "hold_time_s": str(hold_time_s),
                                               "fallback": fallback, "lot": lot, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)


def test_a_line_in_the_loop_holds_parts_until_ruled_then_runs_out_of_the_loop_when_switched(tmp_path, broker):
    from station_ui.server import StationServer

    scfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-modes"},
                      web={"port": 0, "threads": 8})
    store = Store(scfg.db_path)
    for user in (OPERATOR, ENGINEER):
        accounts.add_user(store, *user)
    station = StationServer(scfg).start()
    eng, op = station.app.test_client(), station.app.test_client()
    login(eng, *ENGINEER[::2])
    login(op, *OPERATOR[::2])
    # Every score is in the band (thresholds 0..1): in the loop, every part is held for a verdict.
    ecfg = load_config(write_config(tmp_path / "edge", broker))
    ecfg = replace(ecfg, edge=replace(ecfg.edge, line="L1", camera="c1"),
                   trigger=replace(ecfg.trigger, rate_hz=10.0))
    actuator = SimulatedActuator()
    edge = EdgeService(ecfg, actuator=actuator, max_parts=400)
    decisions = []
    edge.pipeline.listeners.append(decisions.append)
    try:
        assert station.ingest.connected.wait(10)
        _set_mode(eng, "L1", "in-the-loop", hold_time_s=2, fallback="REJECT", lot="LOT-7")  # retained
        edge.start()
        assert wait_until(lambda: edge.pipeline.hold_time_s == 2.0, 15)  # the station's setting arrived
        assert wait_until(lambda: edge.holds.waiting >= 2, 15)
        # The review screen says how the line uses the reviewer.
        assert "In the loop: the part waits 2 s for you, then reject" in op.get("/review").get_data(as_text=True)
        # A reviewer rules on a held part: it leaves the hold lane at once, released.
        held = [d for d in decisions if d.action == "HOLD"]
        assert wait_until(lambda: any(store.has_review(r) for r in _review_ids(edge, held)), 15)
        review_id = next(r for r in _review_ids(edge, held) if store.has_review(r))
        part_id = store.get_review(review_id)["part_id"]
        assert store.get_review(review_id)["lot"] == "LOT-7"  # the lot the station set travels with each review
        token = page_csrf(op)
        r = op.post("/review/verdict", json={"review_id": review_id, "verdict": "not_defect", "kind": "glare"},
                    headers={"X-CSRF-Token": token})
        assert r.status_code == 200, r.get_json()
        assert wait_until(lambda: (part_id, "PASS") in [(p, a) for p, a, _ in actuator.released], 15)
        # Parts nobody rules on get the fallback after the hold time, counted and alarmed.
        assert wait_until(lambda: edge.holds.fell_back >= 1, 15)
        assert ("REJECT" in {a for p, a, _ in actuator.released if p != part_id})
        assert "hold-timeout" in edge.metrics.alarms.active()
        # Switched live: on the loop, the edge decides at once on the model's lean and still sends it for review.
        _set_mode(eng, "L1", "on-the-loop")
        assert wait_until(lambda: edge.pipeline.mode == "on-the-loop", 15)
        switched = len(decisions)
        assert wait_until(lambda: len(decisions) >= switched + 6, 15)
        on = decisions[switched + 1:]
        assert on and all(d.action in ("PASS", "REJECT") and d.review == "uncertain" for d in on), on[:3]
        assert all((d.action == "REJECT") == (d.score >= 0.5) for d in on)  # the lean: the band's middle
        # Switched live: out of the loop, the edge decides every part at once and sends none for review.
        _set_mode(eng, "L1", "out-of-the-loop")
        assert wait_until(lambda: edge.pipeline.mode == "out-of-the-loop", 15)
        switched = len(decisions)
        assert wait_until(lambda: len(decisions) >= switched + 10, 15)
        after = decisions[switched + 1:]  # one part may have been in flight at the switch
        assert after and all(d.action in ("PASS", "REJECT") and d.review is None for d in after), after[:3]
        assert wait_until(lambda: store.conn.execute("SELECT payload FROM edge_status").fetchone() is not None
                          and wire.EdgeStatus.decode(store.conn.execute("SELECT payload FROM edge_status")
                                                     .fetchone()[0]).mode == "out-of-the-loop", 15)
        dash = eng.get("/dashboard").get_data(as_text=True)
        assert "Out of the loop" in dash
        assert [e["action"] for e in store.audit_entries(20, action="setting")][:2] == ["setting", "setting"]
    finally:
        edge.stop()
        station.stop()


def _review_ids(edge, decisions):
    """The review ids the journal-less edge gave its held parts: the hold lane's keys."""
    with edge.holds._lock:
        lane = {h.part_id: rid for rid, h in edge.holds._held.items()}
    return [lane[d.part_id] for d in decisions if d.part_id in lane]


def test_bad_line_settings_are_refused_naming_the_field(tmp_path):
    store = Store(tmp_path / "s.db")
    import pytest

    from station_ui.errors import StoreError

    with pytest.raises(StoreError, match="mode"):
        store.set_line_mode("L1", "sideways", 60, "REJECT", "erik")
    with pytest.raises(StoreError, match="hold_time_s"):
        store.set_line_mode("L1", "in-the-loop", 0.1, "REJECT", "erik")
    with pytest.raises(StoreError, match="fallback"):
        store.set_line_mode("L1", "in-the-loop", 60, "HOLD", "erik")
    assert store.line_settings() == []  # nothing half-saved
    s = store.set_line_mode("L1", "on-the-loop", 30, "PASS", "erik")
    assert (s.mode, s.hold_time_s, s.fallback, s.user) == ("on-the-loop", 30.0, "PASS", "erik")
    assert store.line_mode("L1") == ("on-the-loop", 30.0, "PASS") and store.line_mode("L9")[0] == "in-the-loop"


def test_a_passed_part_ruled_a_real_fault_raises_a_recall_naming_part_time_and_lot(tmp_path):
    from station_support import add_reviews, make_station

    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    (passed,) = add_reviews(store, 1, cfg.image_dir, reason="uncertain", action_taken="PASS", part_id="P-OUT",
                            lot="LOT-42", t0=1_700_000_000.0)
    (held,) = add_reviews(store, 1, cfg.image_dir, reason="uncertain", action_taken="HOLD", part_id="P-HELD")
    (fine,) = add_reviews(store, 1, cfg.image_dir, reason="audit", action_taken="PASS", part_id="P-FINE")
    store.record_verdict(held.id, "real_fault", "crack", "olga")  # held: the line still has it, no recall
    store.record_verdict(fine.id, "not_defect", "", "olga")  # a pass confirmed: no recall
    assert store.recalls() == []
    store.record_verdict(passed.id, "real_fault", "pit", "olga")  # on the loop: the line passed it, it is gone
    (recall,) = store.recalls()
    assert (recall["part_id"], recall["lot"], recall["user"]) == ("P-OUT", "LOT-42", "olga")
    c = app.test_client()
    login(c, *ENGINEER[::2])
    dash = c.get("/dashboard").get_data(as_text=True)
    import time

    assert "RECALL:</strong> part P-OUT" in dash and "lot LOT-42" in dash
    assert time.strftime("%Y-%m-%d", time.localtime(1_700_000_000.0)) in dash  # and when it was made
    token = page_csrf(c, "/dashboard")
    assert c.post("/dashboard/recalls/ack", data={"review_id": passed.id, "csrf_token": token}).status_code == 302
    assert store.recalls() == [] and store.recalls(include_acked=True)[0]["acked_by"] == ENGINEER[0]
    assert "RECALL" not in c.get("/dashboard").get_data(as_text=True)
    assert store.audit_entries(5, action="recall")[0]["target"] == passed.id
    assert store.audit_entries(5, action="recall-acknowledged")[0]["user"] == ENGINEER[0]
