"""One order of model versions for every part (qcloop.versions): the edge, the registry and the station agree."""
from __future__ import annotations

from qcloop import wire
from qcloop.versions import is_newer, version_key
from station_ui import reports
from station_ui.store import Store


def test_version_ordering():
    ordered = ["0.9.0", "0.10.0", "1.0.0", "1.0.0-builtin", "1.0.0-rc1", "1.0.0-rc2", "1.0.0-rc10", "1.0.1", "1.2",
               "1.10", "2"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert is_newer("0.10.0", "0.9.0")
    assert not is_newer("0.9.0", "0.10.0")
    assert not is_newer("1.0", "1.0")
    assert is_newer("2024-06-01.2", "2024-06-01.1")


def test_the_station_lists_models_in_the_order_the_edge_upgrades_them(tmp_path):
    store = Store(tmp_path / "station.db", station="s1")
    tally = {"parts": 10, "actions": {"PASS": 10}, "reviews": {}}
    store.upsert_edge_status("line1", "cam1", wire.EdgeStatus.from_json({"state": "running", "by_model": {
        "1.0.1": tally, "1.0.0-builtin": tally, "0.10.0": tally, "0.9.0": tally}}))
    listed = [row["model"] for row in reports.models(store)]
    assert listed == ["0.9.0", "0.10.0", "1.0.0-builtin", "1.0.1"]
    assert listed == sorted(listed, key=version_key)  # the edge's is_newer order
