"""The dashboard's "retrain now" button: engineers only, CSRF-checked, published to the trainer, audited."""
import json
import threading

import paho.mqtt.client as mqtt
from station_support import ENGINEER, OPERATOR, login, make_station, page_csrf

from qcloop import wire
from station_ui.ingest import Ingest
from station_ui.store import Store


def test_an_engineer_asks_the_trainer_to_retrain(tmp_path, broker):
    mqtt_cfg = {"host": broker.host, "port": broker.port, "client_id": "st-retrain"}
    app, cfg = make_station(tmp_path, mqtt=mqtt_cfg)
    ingest = Ingest(cfg).start()
    app.extensions["station"].publisher = ingest
    got, arrived, subscribed = [], threading.Event(), threading.Event()
    trainer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trainer-listen")
    trainer.on_message = lambda c, u, m: (got.append(wire.RetrainRequest.decode(m.payload)), arrived.set())
    trainer.on_subscribe = lambda *a: subscribed.set()
    trainer.connect(broker.host, broker.port)
    trainer.subscribe(wire.Topics().retrain_request(), qos=1)
    trainer.loop_start()
    try:
        assert subscribed.wait(10) and ingest.connected.wait(10)
        op = app.test_client()
        login(op, *OPERATOR[::2])
        assert op.post("/dashboard/retrain", data={"csrf_token": page_csrf(op)}).status_code == 403
        eng = app.test_client()
        login(eng, ENGINEER[0], ENGINEER[2])
        assert eng.post("/dashboard/retrain", data={"reason": "x"}).status_code == 400  # no CSRF token
        page = eng.get("/dashboard").get_data(as_text=True)
        assert 'id="retrain-form"' in page
        resp = eng.post("/dashboard/retrain", data={"csrf_token": page_csrf(eng, "/dashboard"),
                                                    "reason": "new casting supplier"})
        assert resp.status_code == 302
        assert "retrain requested" in eng.get(resp.headers["Location"]).get_data(as_text=True)
        assert arrived.wait(10)
    finally:
        trainer.loop_stop()
        trainer.disconnect()
        ingest.stop()
    assert len(got) == 1
    req = got[0]
    assert req.user == ENGINEER[0]
    assert req.station == cfg.station.name
    assert req.reason == "new casting supplier"
    store = Store(cfg.db_path, station=cfg.station.name)
    try:
        entries = [e for e in store.audit_entries(50) if e["target"] == "retrain"]
    finally:
        store.close()
    assert len(entries) == 1
    assert entries[0]["action"] == "setting"
    assert entries[0]["user"] == ENGINEER[0]
    assert json.loads(entries[0]["detail"])["reason"] == "new casting supplier"


def test_without_mqtt_the_button_is_hidden_and_a_request_is_refused(tmp_path):
    app, cfg = make_station(tmp_path)
    eng = app.test_client()
    login(eng, ENGINEER[0], ENGINEER[2])
    assert 'id="retrain-form"' not in eng.get("/dashboard").get_data(as_text=True)
    resp = eng.post("/dashboard/retrain", data={"csrf_token": page_csrf(eng, "/dashboard")})
    assert resp.status_code == 503
