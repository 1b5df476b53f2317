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
    """Each open stream holds a server thread, so streams are bounded: ``per_owner`` for one person (a
    new one ends that person's oldest, as when a screen is reloaded) and ``total`` for the station (a
    stream over it is refused), so pages, verdicts, /healthz and logins always find a thread."""

    def __init__(self, max_queued: int = 100):
        self._subs: dict[queue.Queue, str] = {}  # stream -> its owner, in the order they opened
        self._lock = threading.Lock()
        self.max_queued = max_queued
        self.closed = threading.Event()
        self.refused = 0  # streams refused because the station had as many as it holds

    def subscribe(self, owner: str = "", per_owner: int | None = None, total: int | None = None) -> queue.Queue | None:
        """A new stream for ``owner``, or None when the station already holds ``total`` streams."""
        q: queue.Queue = queue.Queue(self.max_queued)
        with self._lock:
            mine = [s for s, who in self._subs.items() if who == owner]
            ended = mine[: len(mine) - per_owner + 1] if per_owner is not None and len(mine) >= per_owner else []
            if total is not None and len(self._subs) - len(ended) >= total:
                self.refused += 1
                return None
            for old in ended:  # the owner's oldest: told to close, which frees its thread at once
                del self._subs[old]
                _close(old)
            self._subs[q] = owner
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._subs.pop(q, None)

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


def _close(q: queue.Queue) -> None:
    """Make room for the close event even in a full queue: a stream must always learn that it ends."""
    while True:
        try:
            q.put_nowait(("close", {}))
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


def sse_format(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
