"""The station's health: what ``/healthz`` answers and the dashboard's alarm list shows."""
from __future__ import annotations

from typing import Any


def station_health(publisher: Any) -> dict[str, Any]:
    """The ingest's health (connected, active alarms), or healthy with MQTT off when the station runs without it."""
    if publisher is None or not hasattr(publisher, "health"):
        return {"healthy": True, "mqtt": "off", "alarms": {}}
    return publisher.health()
