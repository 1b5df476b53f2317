"""Per-model rates: the edge counts parts, actions and reviews per model version, the station's
dashboard shows them beside each other with a false-reject estimate from that model's audits."""
from __future__ import annotations

import time

from edge.decision import Decision
from edge.tally import ModelTally
from station_ui import reports
from station_ui.store import Store
from tests.station_support import ENGINEER, add_reviews, login, make_header, make_station


def _decision(model: str, action: str, i: int) -> Decision:
    return Decision(f"p{i}", action, "pass", None, 0.1, model, time.time(), 0.002)


def test_tally_counts_parts_actions_and_reviews_per_model():
    tally = ModelTally()
    for i, (model, action) in enumerate([("0.1.0", "PASS"), ("0.1.0", "HOLD"), ("0.1.0", "REJECT"),
                                         ("0.1.1", "PASS"), ("0.1.1", "PASS")]):
        tally.on_decision(_decision(model, action, i))
    tally.on_review(make_header(model="0.1.0", reason="uncertain"))
    tally.on_review(make_header(model="0.1.0", reason="audit"))
    snap = tally.snapshot()
    assert snap["0.1.0"] == {"parts": 3, "actions": {"PASS": 1, "HOLD": 1, "REJECT": 1},
                             "reviews": {"uncertain": 1, "audit": 1}}
    assert snap["0.1.1"]["parts"] == 2 and snap["0.1.1"]["reviews"] == {}
    snap["0.1.1"]["parts"] = 99  # a snapshot is a copy
    assert tally.snapshot()["0.1.1"]["parts"] == 2


def test_dashboard_shows_each_models_review_reject_and_false_reject_rates(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    by_model = {"0.1.0": {"parts": 200, "actions": {"PASS": 100, "HOLD": 60, "REJECT": 40},
                          "reviews": {"uncertain": 60, "audit": 4}},
                "0.1.1": {"parts": 100, "actions": {"PASS": 90, "HOLD": 5, "REJECT": 5},
                          "reviews": {"uncertain": 5, "audit": 2}}}
    store.upsert_edge_status("line1", "cam1", {"state": "running", "model": "0.1.1", "parts": 300,
                                               "by_model": by_model})
    store.upsert_edge_status("line1", "cam2", {"state": "running", "model": "0.1.1", "parts": 100,
                                               "by_model": {"0.1.1": {"parts": 100, "actions": {"PASS": 100},
                                                                      "reviews": {}}}})
    # Audited REJECTs of 0.1.0: 3 of 4 ruled "not a defect".
    audited = add_reviews(store, 4, tmp_path / "img", model="0.1.0", reason="audit", action_taken="REJECT")
    for h, verdict in zip(audited, ["not_defect", "not_defect", "not_defect", "real_fault"]):
        store.record_verdict(h.id, verdict, "glare" if verdict == "not_defect" else "pit", "erik")
    rows = {r["model"]: r for r in reports.models(store)}
    assert list(rows) == ["0.1.0", "0.1.1"]  # oldest first
    assert rows["0.1.0"]["review_rate"] == 60 / 200 and rows["0.1.0"]["reject_rate"] == 40 / 200
    assert abs(rows["0.1.0"]["false_reject_rate"] - 40 / 200 * 3 / 4) < 1e-12
    assert rows["0.1.1"]["parts"] == 200 and rows["0.1.1"]["review_rate"] == 5 / 200
    assert rows["0.1.1"]["false_reject_rate"] is None  # no audits of that model yet
    store.close()

    c = app.test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    html = c.get("/dashboard").get_data(as_text=True)
    table = html[html.index('id="models"'):]
    assert "0.1.0" in table and "30.0 %" in table and "15.0 %" in table and "2.5 %" in table
