"""The broker fixture gives a real, private mosquitto that answers MQTT on its own port."""
from qc.broker import MosquittoBroker, mqtt_ping


def test_broker_answers_connect_and_stops(tmp_path):
    b = MosquittoBroker(tmp_path).start()
    assert mqtt_ping(b.host, b.port)
    b.stop()
    assert not mqtt_ping(b.host, b.port, timeout=0.3)
