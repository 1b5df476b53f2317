"""Counts per model version: parts, actions and reviews since the edge started.

Carried in the edge's status so the station's dashboard can show what a new model
changed (its review and reject rates beside the previous model's) without the
station having to see every part.
"""

from __future__ import annotations

import threading
from typing import Any

from edge.decision import Decision
from qcloop import wire


class ModelTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, dict[str, Any]] = {}

    def _row(self, model: str) -> dict[str, Any]:
        return self._by_model.setdefault(model or "none", {"parts": 0, "actions": {}, "reviews": {}})

    def on_decision(self, decision: Decision) -> None:
        with self._lock:
            row = self._row(decision.model)
            row["parts"] += 1
            row["actions"][decision.action] = row["actions"].get(decision.action, 0) + 1

    def on_review(self, header: wire.ReviewHeader) -> None:
        with self._lock:
            row = self._row(header.model)
            row["reviews"][header.reason] = row["reviews"].get(header.reason, 0) + 1

    def snapshot(self) -> dict[str, wire.ModelCounts]:
        with self._lock:
            return {
                m: wire.ModelCounts(parts=r["parts"], actions=dict(r["actions"]), reviews=dict(r["reviews"]))
                for m, r in self._by_model.items()
            }
