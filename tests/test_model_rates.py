"""Per-model rates: the edge counts parts, actions and reviews per model version, the station's
dashboard shows them beside each other with a false-reject estimate from that model's audits."""
from __future__ import annotations

import json
import time

import pytest

from edge.decision import Decision
from edge.tally import ModelTally
from qcloop import wire
from qcloop.errors import WireError
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
    assert snap["0.1.0"] == wire.ModelCounts(3, {"PASS": 1, "HOLD": 1, "REJECT": 1}, {"uncertain": 1, "audit": 1})
    assert snap["0.1.1"].parts == 2
    assert snap["0.1.1"].reviews == {}
    snap["0.1.1"].actions["PASS"] = 99  # a snapshot is a copy
    assert tally.snapshot()["0.1.1"].actions == {"PASS": 2}


def test_dashboard_shows_each_models_review_reject_and_false_reject_rates(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    by_model = {"0.1.0": {"parts": 200, "actions": {"PASS": 100, "HOLD": 60, "REJECT": 40},
                          "reviews": {"uncertain": 60, "audit": 4}},
                "0.1.1": {"parts": 100, "actions": {"PASS": 90, "HOLD": 5, "REJECT": 5},
                          "reviews": {"uncertain": 5, "audit": 2}}}
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus.from_json({"state": "running", "model": "0.1.1", "parts": 300,
                                               "by_model": by_model}))
    store.upsert_edge_status("line1", "cam2", wire.EdgeStatus.from_json({"state": "running", "model": "0.1.1", "parts": 100,
                                               "by_model": {"0.1.1": {"parts": 100, "actions": {"PASS": 100},
                                                                      "reviews": {}}}}))
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
    assert "0.1.0" in table
    assert "30.0 %" in table
    assert "15.0 %" in table
    assert "2.5 %" in table


def _trainer_status(promoted: bool) -> tuple[wire.TrainStatus, object]:
    """A train status as the retraining server publishes it, built from the real gate and calibration types."""
    import numpy as np

    from training.calibrate import calibrate
    from training.gate import GateDecision, GateRule, LineComparison, ModelFigures
    from training.server import calibration_summary

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0, 0.4, 300), rng.uniform(0.3, 1.0, 100)])
    labels = np.array([0] * 300 + [1] * 100)
    cal = calibrate(scores, labels, 0.0025, 0.05, 0.01)
    figures = ModelFigures("0.1.1", 0.2, 0.8, 400, 100, 300, 0, 0.0, 0.02, 0.05, 0.99, 0.03)
    line = LineComparison(images=120, counts={"ok": 100, "def": 20},
                          candidate={"false_reject_rate": 0.31, "escape_rate": 0.0, "review_rate": 0.1},
                          current={"false_reject_rate": 0.05, "escape_rate": 0.0, "review_rate": 0.2},
                          delta={"false_reject_rate": {"value": 0.26, "low": 0.17, "high": 0.35},
                                 "escape_rate": {"value": 0.0, "low": 0.0, "high": 0.0},
                                 "review_rate": {"value": -0.1, "low": -0.16, "high": -0.04}}, interval=0.95)
    decision = GateDecision(promoted, "raises the line's false_reject_rate (0.3100 vs 0.0500)" if not promoted
                            else "lower cost", GateRule(), figures, figures, {"images": 400}, "2026-12-03T00:00:00Z",
                            line=line.to_dict())
    last = {"ok": True, "version": "0.1.1", "promoted": promoted, "gate": decision.to_dict(),
            "calibration": calibration_summary(cal.to_dict()), "reason": "verdicts", "finished": time.time()}
    return wire.TrainStatus.from_json({"state": "idle", "current": "0.1.0", "runs": 1, "verdicts_since_last": 7,
                                       "last": last}), cal


def test_dashboard_explains_the_last_gate_decision_with_the_paired_line_comparison_and_calibration(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    c = app.test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    assert "No status from the retraining server yet" in c.get("/dashboard").get_data(as_text=True)

    status, cal = _trainer_status(promoted=False)
    assert not cal.certified["escape"] and cal.defects_to_certify > 0  # 100 defects cannot certify 0.25 %
    store.upsert_trainer_status("qc/v1/train/status", status)
    html = c.get("/dashboard").get_data(as_text=True)
    trainer = html[html.index('id="trainer"'):]
    decision = trainer[trainer.index('id="trainer-decision"'):]
    assert "NOT promoted" in decision.split("</p>")[0]
    assert "raises the line&#39;s false_reject_rate" in decision.split("</p>")[0]
    row = trainer[trainer.index("False rejects"):].split("</tr>")[0]
    assert "31.00 %" in row and "5.00 %" in row
    assert "+26.00 pp [+17.00, +35.00]" in row
    calibration = trainer[trainer.index('id="trainer-calibration"'):].split("</p>")[0]
    assert "cannot certify the escape budget 0.25 %" in calibration
    assert f"about {cal.defects_to_certify} more labelled defects" in calibration


def test_a_malformed_trainer_status_is_refused_and_never_breaks_the_dashboard(tmp_path):
    malformed = {"state": 5, "last": {"ok": True, "gate": {"line": {"delta": "lots", "candidate": [1],
                 "images": "many"}}, "calibration": {"certified": "yes", "defects_to_certify": "a few"}}}
    with pytest.raises(WireError, match="trainer status: field 'state' must be one of"):
        wire.TrainStatus.decode(json.dumps(malformed))
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    with store.write() as conn:  # as a station before the typed codecs could have stored it
        conn.execute("INSERT INTO trainer_status (topic, payload, updated_at) VALUES (?,?,?)",
                     ("qc/v1/train/status", json.dumps(malformed), time.time()))
    c = app.test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    response = c.get("/dashboard")
    assert response.status_code == 200
    assert "No status from the retraining server yet" in response.get_data(as_text=True)


def test_audit_estimates_count_audited_passes_and_rejects_of_every_model_within_the_window(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    now = time.time()
    old = add_reviews(store, 2, tmp_path / "img", t0=now - 3 * 86400, model="0.1.0", reason="audit",
                      action_taken="PASS")
    passes = (add_reviews(store, 3, tmp_path / "img", t0=now - 100, model="0.1.0", reason="audit",
                          action_taken="PASS")
              + add_reviews(store, 2, tmp_path / "img", t0=now - 50, model="0.1.1", reason="audit",
                            action_taken="PASS"))
    rejects = add_reviews(store, 2, tmp_path / "img", t0=now - 40, model="0.1.1", reason="audit",
                          action_taken="REJECT")
    for h in old:
        store.record_verdict(h.id, "real_fault", "pit", "erik")
    for h, verdict in zip(passes, ["real_fault", "not_defect", "not_defect", "real_fault", "not_defect"]):
        store.record_verdict(h.id, verdict, "pit" if verdict == "real_fault" else "glare", "erik")
    for h, verdict in zip(rejects, ["not_defect", "real_fault"]):
        store.record_verdict(h.id, verdict, "glare" if verdict == "not_defect" else "crack", "erik")
    s = reports.summary(store, now - 86400)  # the two-day-old audits are outside the window
    assert s["escape"] == {"faults": 2, "audited": 5, "rate": 2 / 5}
    assert s["false_reject"] == {"false": 1, "audited": 2, "rate": 1 / 2}
    everything = reports.summary(store, 0.0)
    assert everything["escape"] == {"faults": 4, "audited": 7, "rate": 4 / 7}
    store.close()


def test_the_dashboard_shows_a_shadow_models_agreement_with_the_live_one(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus(
        "running", model="0.1.0", parts=400, shadow=wire.ShadowCounts("0.2.0", parts=400, agree=388, skipped=3)))
    c = app.test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    html = c.get("/dashboard").get_data(as_text=True)
    assert "0.2.0: 97.0% agree on 400 parts, 3 skipped" in html


def test_edge_alarms_show_on_the_dashboard_and_an_engineer_can_acknowledge_them(tmp_path):
    from tests.station_support import page_csrf

    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    down = "reject actuator failing: cannot connect to Modbus server 192.0.2.10:502"
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus("running", alarms={"actuator": down}))
    c = app.test_client()
    login(c, ENGINEER[0], ENGINEER[2])
    html = c.get("/dashboard").get_data(as_text=True)
    alarm = html[html.index('id="alarm-line1-cam1-actuator"'):].split("</div>")[0]
    assert down in alarm
    assert "Acknowledge" in alarm
    token = page_csrf(c, "/dashboard")
    r = c.post("/dashboard/alarms/ack", data={"source": "line1/cam1", "name": "actuator", "csrf_token": token})
    assert r.status_code == 302
    alarm = c.get("/dashboard").get_data(as_text=True).split('id="alarm-line1-cam1-actuator"')[1].split("</div>")[0]
    assert f"acknowledged by {ENGINEER[0]}" in alarm  # still listed: the cause has not gone
    # The alarm comes back with another message: the acknowledgement no longer counts.
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus("running", alarms={"actuator": down + " (again)"}))
    alarm = c.get("/dashboard").get_data(as_text=True).split('id="alarm-line1-cam1-actuator"')[1].split("</div>")[0]
    assert "acknowledged by" not in alarm
    # The cause goes: the edge's status has no alarm, and neither has the dashboard.
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus("running"))
    assert 'id="alarm-line1-cam1-actuator"' not in c.get("/dashboard").get_data(as_text=True)
    r = c.post("/dashboard/alarms/ack", data={"source": "line1/cam1", "name": "actuator", "csrf_token": token})
    assert r.status_code == 404  # nothing active to acknowledge


def test_rates_per_model_version_over_time_from_the_edges_samples_and_the_audits(tmp_path):
    """A retrain at 10:00: the old model's hours before it, the new one's after, each from the growth of the
    edge's counts between samples and that hour's audits; the dashboard plots them as lines per version."""
    store = Store(tmp_path / "s.db")
    t0 = time.mktime((2026, 12, 1, 8, 0, 0, 0, 0, -1))  # 08:00 local
    hour = 3600.0

    def status(at, by_model):
        return wire.EdgeStatus("running", line="line1", camera="cam1", since=t0 - 60, time=at, by_model={
            m: wire.ModelCounts(parts=p, actions={"PASS": ps, "REJECT": r}, reviews={"uncertain": u})
            for m, (p, ps, r, u) in by_model.items()})

    store.upsert_edge_status("line1", "cam1", status(t0, {"0.1.0": (0, 0, 0, 0)}), now=t0)  # the baseline
    store.upsert_edge_status("line1", "cam1", status(t0 + 60, {"0.1.0": (10, 0, 0, 0)}), now=t0 + 60)  # too soon
    store.upsert_edge_status("line1", "cam1", status(t0 + hour, {"0.1.0": (1000, 700, 100, 200)}), now=t0 + hour)
    store.upsert_edge_status("line1", "cam1", status(t0 + 2 * hour, {"0.1.0": (2000, 1400, 200, 400)}),
                             now=t0 + 2 * hour)
    store.upsert_edge_status("line1", "cam1", status(t0 + 3 * hour, {"0.1.0": (2000, 1400, 200, 400),
                                                                      "0.1.1": (1000, 900, 50, 50)}),
                             now=t0 + 3 * hour)
    assert store.conn.execute("SELECT count(*) FROM model_samples").fetchone()[0] == 5  # every 5 min at most
    # Audits: in 09:00-10:00, 10 audited REJECTs of 0.1.0, 4 of them good parts; after, 10 of 0.1.1, 1 good.
    for model, start, wrong in (("0.1.0", t0 + hour + 60, 4), ("0.1.1", t0 + 2 * hour + 60, 1)):
        hs = add_reviews(store, 10, tmp_path / "img", t0=start, reason="audit", action_taken="REJECT", model=model)
        for i, h in enumerate(hs):
            store.record_verdict(h.id, "not_defect" if i < wrong else "real_fault", "", "olga")
    rates = reports.model_rates_over_time(store, t0 + 1, hour)
    old, new = rates["0.1.0"], rates["0.1.1"]
    assert [(r["parts"], round(r["review_rate"], 3)) for r in old] == [(1000, 0.2), (1000, 0.2)]
    assert old[1]["false_reject_rate"] == pytest.approx(0.1 * 0.4)  # rejects 10 % of parts, 40 % of them good
    assert [(r["parts"], r["review_rate"]) for r in new] == [(1000, 0.05)]
    assert new[0]["false_reject_rate"] == pytest.approx(0.05 * 0.1) and new[0]["escape_rate"] is None
    app, cfg = make_station(tmp_path / "st")
    st = Store(cfg.db_path)
    now = time.time()
    st.upsert_edge_status("line1", "cam1", status(now - 7200, {"0.1.0": (0, 0, 0, 0)}), now=now - 7200)
    st.upsert_edge_status("line1", "cam1", status(now - 3600, {"0.1.0": (500, 400, 50, 50)}), now=now - 3600)
    c = app.test_client()
    login(c, *ENGINEER[::2])
    dash = c.get("/dashboard").get_data(as_text=True)
    assert 'id="model-rates"' in dash and "Review share per model version (24h)" in dash
    assert "<polyline" in dash or "<circle" in dash  # the series is drawn ...
    assert "0.1.0" in dash.split('id="model-rates"')[1].split("</div></div>")[0]  # ... named by its version
