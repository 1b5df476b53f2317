"""The edge's MQTT link: status with a last will, per-part results, and the review sender.

paho-mqtt with the VERSION2 callback API. The client id is fixed and the session is
persistent (clean_session=False), so review-acks published while the edge was away
are delivered when it returns. ``connected`` is set only on reason code 0;
reconnects use a short maximum delay. With several brokers in ``[mqtt].brokers``
the link moves to the next when the one in use fails (``broker.current`` names it).

The sender thread moves reviews from the outbox to the broker (QoS 1), at most
``max_in_flight`` unacknowledged at a time, and sends again whatever the station has
not acknowledged after ``resend_after_s``. Acks delete the review from the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttSection
from edge.errors import OutboxError
from edge.outbox import Outbox
from qcloop import wire
from qcloop.errors import WireError
from qcloop.mqttconn import BrokerFailover, make_client

log = logging.getLogger(__name__)


class EdgeLink:
    def __init__(
        self, cfg: MqttSection, line: str, camera: str, client_id: str, on_ack: Callable[[str], None] | None = None
    ):
        self.cfg = cfg
        self.line, self.camera = line, camera
        self.topics = wire.Topics(cfg.prefix)
        self.connected = threading.Event()
        self.on_ack = on_ack
        self.on_connect_hooks: list[Callable[[], None]] = []
        # topic -> handler(payload); subscribed with QoS 1 on every (re)connect.
        self._handlers: dict[str, Callable[[bytes], None]] = {self.topics.review_ack(line): self._on_ack_payload}
        self.acks_received = 0
        self._stopping = False
        self.bad_messages = 0
        self._status = wire.EdgeStatus("starting", line=line, camera=camera)
        c = make_client(
            cfg,
            client_id,
            will=(self.topics.status(line, camera), wire.EdgeStatus("offline", line=line, camera=camera).encode()),
        )
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        self.broker = BrokerFailover(c, cfg, f"edge {line}/{camera}")  # created after the callbacks it wraps

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.broker.start()

    def stop(self) -> None:
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(
                self.topics.status(self.line, self.camera),
                replace(self._status, state="offline").encode(),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self.broker.stop()
        self.connected.clear()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code != 0:
            log.error("broker %s refused the connection: %s", self.broker.current, reason_code)
            return
        for topic in list(self._handlers):
            client.subscribe(topic, qos=1)
        self.connected.set()
        log.info("connected to broker %s (brokers: %s)", self.broker.current, self.cfg.broker_list)
        self.publish_status(self._status)
        for hook in self.on_connect_hooks:
            hook()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("lost the connection to broker %s (%s); reconnecting", self.broker.current, reason_code)
        self.connected.clear()

    def subscribe(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Call handler(payload) for each message on topic (exact name), from now and after reconnects."""
        self._handlers[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        handler = self._handlers.get(msg.topic)
        if handler is None:
            return
        try:
            handler(bytes(msg.payload))
        except WireError as exc:
            self.bad_messages += 1
            log.warning("ignoring a bad message on %s: %s", msg.topic, exc)

    def _on_ack_payload(self, payload: bytes) -> None:
        ack = wire.ReviewAck.decode(payload)
        self.acks_received += 1
        if ack.stored and self.on_ack:
            self.on_ack(ack.id)

    # ------------------------------------------------------------------ publishing
    def publish_status(self, status: wire.EdgeStatus) -> None:
        self._status = replace(status, line=self.line, camera=self.camera)
        if self.connected.is_set():
            self.client.publish(self.topics.status(self.line, self.camera), self._status.encode(), qos=1, retain=True)

    def publish_result(self, result: wire.PartResult) -> None:
        if self.connected.is_set():
            self.client.publish(self.topics.result(self.line, self.camera), result.encode(), qos=0)

    def publish_review(self, payload: bytes) -> bool:
        info = self.client.publish(self.topics.review(self.line, self.camera), payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS


class ReviewSender:
    """Moves reviews from the outbox to the broker until the station acknowledges each."""

    def __init__(self, outbox: Outbox, link: EdgeLink, resend_after_s: float, max_in_flight: int):
        self.outbox, self.link = outbox, link
        self.resend_after_s = resend_after_s
        self.max_in_flight = max_in_flight
        self.sent = 0
        self.errors = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="review-sender", daemon=True)
        link.on_ack = self._acked
        link.on_connect_hooks.append(self._reconnected)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def wake(self) -> None:
        """A new review is in the outbox."""
        self._wake.set()

    def _acked(self, review_id: str) -> None:
        if self.outbox.ack(review_id):
            self._wake.set()  # room for another in flight

    def _reconnected(self) -> None:
        # Copies in flight when the connection dropped may be lost: make all due now.
        self.outbox.reset_sent()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(1.0, self.resend_after_s / 2))
            self._wake.clear()
            if not self.link.connected.is_set():
                continue
            try:
                self._send_due()
            except OutboxError as exc:
                self.errors += 1
                log.error("review sender: %s", exc)

    def _send_due(self) -> None:
        room = self.max_in_flight - self.outbox.in_flight(self.resend_after_s)
        if room <= 0:
            return
        due = self.outbox.due(self.resend_after_s, room)
        sent: list[str] = []
        for item in due:
            if self._stop.is_set() or not self.link.connected.is_set():
                break
            try:
                payload = self.outbox.envelope(item)
            except (OutboxError, WireError) as exc:
                self.errors += 1
                log.error("review %s cannot be sent and stays in the outbox: %s", item.id, exc)
                continue
            if self.link.publish_review(payload):
                sent.append(item.id)
        if sent:
            self.outbox.mark_sent(sent, now=time.time())
            self.sent += len(sent)
