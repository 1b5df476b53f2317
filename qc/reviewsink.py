"""A minimal review consumer: decodes review envelopes, remembers their ids, acknowledges each.

It speaks the same contract as the station's ingest (qcloop.wire) over a real broker,
and is used where the full station is not the subject: the edge benchmark and the
edge's own delivery tests. It counts every copy it receives, so duplicates show.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt

from qcloop import wire
from qcloop.errors import WireError
from qcloop.mqttconn import BrokerSettings, make_client


class ReviewSink:
    def __init__(self, host: str, port: int, line: str = "+", prefix: str = wire.DEFAULT_PREFIX,
                 client_id: str = "qc-review-sink", ack: bool = True):
        self.topics = wire.Topics(prefix)
        self.line = line
        self.ack = ack
        self.copies: Counter[str] = Counter()  # review id -> copies received
        self.headers: dict[str, wire.ReviewHeader] = {}
        self.bad = 0
        self.connected = threading.Event()
        self._changed = threading.Condition()
        c = make_client(BrokerSettings(host=host, port=port, prefix=prefix, reconnect_max_s=2.0), client_id)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self.host, self.port = host, port

    def start(self, timeout: float = 10.0) -> ReviewSink:
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"review sink could not connect to {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc == 0:
            client.subscribe(self.topics.all_reviews(self.line), qos=1)
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            header, _ = wire.decode_review(msg.payload)
        except WireError:
            self.bad += 1
            return
        with self._changed:
            self.copies[header.id] += 1
            self.headers[header.id] = header
            self._changed.notify_all()
        if self.ack:
            client.publish(self.topics.review_ack(header.line), wire.ReviewAck(header.id).encode(), qos=1)

    @property
    def stored(self) -> set[str]:
        with self._changed:
            return set(self.copies)

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        """Wait until every id in ids has been received at least once."""
        with self._changed:
            return self._changed.wait_for(lambda: ids <= set(self.copies), timeout)
