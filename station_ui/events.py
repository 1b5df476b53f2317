"""In-process fan-out of station events to the open review screens (server-sent events).

The ingest publishes "a review arrived", the review views publish "the queue
changed"; each open event stream holds one bounded queue. A slow or gone browser
loses events rather than slowing the ingest: the page re-reads the queue state on
every event it does get, so a lost one only delays a count.
"""
from __future__ import annotations

import json
import queue
import threading
from typing import Any


class EventHub:
    def __init__(self, max_queued: int = 100):
        self._subs: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self.max_queued = max_queued
        self.closed = threading.Event()

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(self.max_queued)
        with self._lock:
            self._subs.add(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._subs.discard(q)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait((event, data))
            except queue.Full:
                pass

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        self.closed.set()
        self.publish("close", {})


def sse_format(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
