"""One trainer, several products: each product's lines, dataset, lineage, models and status are its own."""
import io
import json
import threading
import time
import urllib.request
import uuid
from types import SimpleNamespace

import pytest

from models.onnx_build import constant_model_bytes
from qcloop import configfile, wire
from qcloop.errors import ConfigError
from tests.models_support import make_test_manifest
from tests.test_training_server import HW, Watcher, seed_images  # noqa: F401 (a fixture)
from tests.test_training_sources import RunningStation
from tests.waiting import wait_until
from training.release import keygen
from training.serve_config import ServeConfig
from training.server import PlantTrainer

T = wire.Topics()


class StandInBuild:
    """Records what each product trains on and returns a small real model at once (training is tested elsewhere)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active, self.peak = 0, 0
        self.calls: list[tuple[str, set]] = []
        self.go = threading.Event()  # cleared: a run is held inside the build until set
        self.go.set()

    def __call__(self, data, version, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            self.go.wait(30)
            lines = {s.meta.get("line") for s in data.samples if s.meta.get("source") == "station"}
            with self.lock:
                self.calls.append((version, lines))
            m, b = make_test_manifest(version, constant_model_bytes(0.5, HW), HW, (0.3, 0.7), parent=kwargs.get("parent"))
            return SimpleNamespace(manifest=m, model_bytes=b)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def stations(tmp_path):
    made = [RunningStation(tmp_path, "L1").serve(), RunningStation(tmp_path, "L2").serve()]
    yield made
    for s in made:
        s.http.shutdown()
        s.store.close()


def plant_config(tmp_path, broker, seeds, stations, monkeypatch) -> ServeConfig:
    keygen(tmp_path / "keys" / "trainer.key", tmp_path / "keys" / "trainer.pub")
    sources = []
    for s in stations:
        line = s.heads[0].line
        monkeypatch.setenv(f"QC_TOKEN_{line}", s.token)
        sources.append({"name": f"station-{line}", "url": s.url, "token_env": f"QC_TOKEN_{line}"})
    raw = {
        "data": {"dir": str(tmp_path / "trainer"), "size": HW[0], "golden_size": 12},
        "sources": sources,
        "products": [{"name": "impeller", "lines": ["L1"], "seed_folders": [str(seeds)]},
                     {"name": "housing", "lines": ["L2", "L3"], "seed_folders": [str(seeds)]}],
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": f"plant-{tmp_path.name[-12:]}"},
        "keys": {"private": str(tmp_path / "keys" / "trainer.key"), "public": str(tmp_path / "keys" / "trainer.pub")},
        "gate": {"escape_budget": 1.0},
        "triggers": {"verdicts": 0, "every_hours": 0, "on_request": True},
        "serve": {"host": "127.0.0.1", "port": 0},
    }
    return configfile.from_dict(raw, ServeConfig)


def test_each_product_learns_from_its_lines_and_announces_to_them_only(tmp_path, broker, seed_images, stations,  # noqa: F811
                                                                       monkeypatch):
    l1, l2 = stations
    l1.rule(0)
    l2.rule(0)
    l2.rule(1, "not_defect", "glare")
    build = StandInBuild()
    plant = PlantTrainer(plant_config(tmp_path, broker, seed_images, stations, monkeypatch), build=build,
                         log_to=io.StringIO()).start()
    impeller, housing = plant.product("impeller"), plant.product("housing")
    w = Watcher(broker, T.all_train_status(), T.model("L1"), T.model("L2"), T.model("L3"))
    try:
        assert impeller.connected.wait(10) and housing.connected.wait(10)
        # An engineer of line L2 asks for a retrain: the housing product's, not the impeller's.
        w.send(T.retrain_request(), wire.RetrainRequest("erik", time.time(), line="L2").encode())
        assert wait_until(lambda: (w.last(T.train_status("housing")) or {}).get("last") is not None, 30), w.got
        assert wait_until(lambda: w.last(T.model("L2")) is not None and w.last(T.model("L3")) is not None, 10)
        ann = wire.ModelAnnouncement.decode(json.dumps(w.last(T.model("L3"))).encode())
        manifest = json.loads(urllib.request.urlopen(ann.manifest_url, timeout=5).read())
        assert impeller.runs == 0 and w.last(T.model("L1")) is None

        # A verdict of line L1 counts towards the impeller's next retrain only.
        verdict = wire.Verdict(str(uuid.uuid4()), "real_fault", "pit", "olga", time.time(), line="L1")
        w.send(T.verdict("L1"), verdict.encode())
        assert wait_until(lambda: impeller.verdicts_since == 1, 10)
        assert housing.verdicts_since == 0

        # A request for every line: each product retrains, one at a time. The first run is held in its
        # build while the other product's worker has taken its request: it must wait for the first.
        build.go.clear()
        w.send(T.retrain_request(), wire.RetrainRequest("ada", time.time()).encode())
        assert wait_until(lambda: build.active == 1 and impeller.busy and housing.busy, 30)
        assert build.active == 1
        build.go.set()
        assert wait_until(lambda: impeller.runs == 1 and housing.runs == 2 and not impeller.busy
                          and not housing.busy, 30)
        assert wait_until(lambda: w.last(T.model("L1")) is not None, 10)
        l1_ann = wire.ModelAnnouncement.decode(json.dumps(w.last(T.model("L1"))).encode())
        # The run's last status ("idle", its model current) may arrive after the trainer is no longer busy.
        assert wait_until(lambda: (w.last(T.train_status("impeller")) or {}).get("current") == "1.0.0", 10), w.got
        status = wire.TrainStatus.decode(json.dumps(w.last(T.train_status("impeller"))))
    finally:
        w.close()
        plant.stop()
    assert ann.manifest_url.endswith("/housing/1.0.0/manifest.json") and manifest["version"] == "1.0.0"
    assert l1_ann.manifest_url.endswith("/impeller/1.0.0/manifest.json")
    assert status.product == "impeller" and status.lines == ("L1",) and status.current == "1.0.0"
    # Each product trained on its own lines' verdicts (of both stations), never on the other's.
    assert [lines for _, lines in build.calls] == [{"L2"}, {"L1"}, {"L2"}] or \
        [lines for _, lines in build.calls] == [{"L2"}, {"L2"}, {"L1"}]
    assert build.peak == 1
    # Separate lineages: each product's registry, golden set and gate log under its own folder.
    root = tmp_path / "trainer" / "products"
    assert impeller.registry.versions() == ["1.0.0"] and housing.registry.current_version() == "1.0.0"
    assert (root / "impeller" / "golden").is_dir() and (root / "housing" / "golden").is_dir()
    assert not (tmp_path / "trainer" / "registry").exists()


def test_products_config_is_checked(tmp_path):
    def refused(raw: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            configfile.from_dict(raw, ServeConfig)

    one = {"name": "impeller", "lines": ["L1"]}
    refused({"products": [one, {"name": "housing", "lines": ["L2", "L1"]}]},
            r"line 'L1' is in products 'impeller' and 'housing'")
    refused({"products": [one, dict(one)]}, r"two products are named 'impeller'")
    refused({"products": [{"name": "a b", "lines": ["L1"]}]}, r"\[products\[0\]\]\.name: must be")
    refused({"products": [{"name": "a", "lines": []}]}, r"list the lines")
    refused({"products": [{"name": "a", "lines": ["model"]}]}, r"'model' is reserved")
    refused({"products": [one], "data": {"seed_folders": ["x"]}}, r"seed folders belong to each product")
    with pytest.raises(ConfigError, match=r"needs \[\[products\]\]"):
        PlantTrainer(configfile.from_dict({}, ServeConfig))
