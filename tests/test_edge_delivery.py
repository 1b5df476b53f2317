"""Reviews reach the station through the outbox: even when none listened at first, and after a restart."""
import threading

from edge.config import MqttSection
from edge.link import EdgeLink, ReviewSender
from edge.outbox import Outbox
from qc.reviewsink import ReviewSink
from qcloop import wire
from tests.waiting import wait_until

JPEG = b"\xff\xd8" + b"\x22" * 2000 + b"\xff\xd9"


def header(i):
    return wire.ReviewHeader(id=wire.new_review_id(), part_id=f"p{i}", line="L1", camera="c1", captured_at=1.7e9,
                             model="1.0.0", score=0.5, band="uncertain", action_taken="HOLD", reason="uncertain")


def start_edge(broker, outbox, resend_after_s=0.3):
    cfg = MqttSection(host=broker.host, port=broker.port, reconnect_max_s=1.0)
    link = EdgeLink(cfg, "L1", "c1", client_id="qc-edge-L1-c1")
    sender = ReviewSender(outbox, link, resend_after_s=resend_after_s, max_in_flight=16)
    link.start()
    sender.start()
    assert link.connected.wait(10)
    return link, sender


def test_review_made_while_no_station_listens_is_delivered_once_one_appears(broker, tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    link, sender = start_edge(broker, outbox)
    h = header(0)
    outbox.put(h, JPEG)
    sender.wake()
    assert wait_until(lambda: sender.sent >= 1)  # published to a broker with no station
    assert outbox.depth() == 1  # the broker's PUBACK does not delete it
    sink = ReviewSink(broker.host, broker.port, line="L1").start()
    try:
        assert sink.wait_for({h.id}, timeout=10)
        assert wait_until(lambda: outbox.depth() == 0)  # deleted only on the station's ack
        assert sink.headers[h.id] == h
    finally:
        sink.stop()
        sender.stop()
        link.stop()


def test_edge_restarted_with_a_non_empty_outbox_sends_what_was_left(broker, tmp_path):
    box = Outbox(tmp_path / "outbox")
    left = set()
    for i in range(20):
        h = header(i)
        box.put(h, JPEG)
        left.add(h.id)
    box.close()  # the edge stopped before anything was sent

    sink = ReviewSink(broker.host, broker.port, line="L1").start()
    outbox = Outbox(tmp_path / "outbox")
    link, sender = start_edge(broker, outbox, resend_after_s=5.0)
    try:
        assert sink.wait_for(left, timeout=15)
        assert wait_until(lambda: outbox.depth() == 0)
        assert sink.stored == left
    finally:
        sink.stop()
        sender.stop()
        link.stop()


def test_status_is_retained_and_the_last_will_says_offline(broker, tmp_path):
    import paho.mqtt.client as mqtt

    outbox = Outbox(tmp_path / "outbox")
    link, sender = start_edge(broker, outbox)
    link.publish_status(wire.EdgeStatus("running", model="1.0.0"))
    # Kill the link's socket without a DISCONNECT: the broker must publish the will.
    sender.stop()
    link.client.loop_stop()
    link.client.socket().close()

    got = {}
    seen = threading.Event()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")

    def on_message(c, u, msg):
        got["status"] = wire.EdgeStatus.decode(msg.payload)
        if got["status"].state == "offline":
            seen.set()

    watcher.on_message = on_message
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe(wire.Topics().status("L1", "c1"), qos=1)
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    try:
        assert seen.wait(30), got  # keepalive 15 s x 1.5 at most
        assert got["status"] == wire.EdgeStatus("offline", line="L1", camera="c1")
    finally:
        watcher.loop_stop()
