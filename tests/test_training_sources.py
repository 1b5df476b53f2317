"""A plant's trainer gathers verdicts from several stations' export APIs, each with its own token."""
import threading

import pytest
from werkzeug.serving import make_server

from qcloop import configfile
from qcloop.errors import ConfigError
from tests.station_support import add_reviews, make_jpeg, make_station
from training.serve_config import ServeConfig, load_config
from training.server import TrainServer

HW = (64, 64)


class RunningStation:
    """A real station app with its own database, export token and reviews, served on loopback."""

    def __init__(self, tmp_path, name: str):
        from station_ui import accounts
        from station_ui.store import Store

        self.app, cfg = make_station(tmp_path / name, station={"name": name})
        self.store = Store(cfg.db_path, station=cfg.station.name)
        self.token = accounts.add_token(self.store, "trainer")
        self.heads = add_reviews(self.store, 6, cfg.image_dir, line=name)
        for i, h in enumerate(self.heads):  # each part its own photo: copies would be one image to the trainer
            (cfg.image_dir / f"{h.id}.jpg").write_bytes(make_jpeg(sum(map(ord, name)) * 100 + i, size=(64, 64)))
        self.port = 0
        self.http = None

    def serve(self) -> "RunningStation":
        self.http = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self.http.server_port
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rule(self, i: int, verdict: str = "real_fault", kind: str = "pit") -> str:
        self.store.record_verdict(self.heads[i].id, verdict, kind, "olga")
        return self.heads[i].id


@pytest.fixture
def stations(tmp_path):
    made = [RunningStation(tmp_path, "line1").serve(), RunningStation(tmp_path, "line2").serve()]
    yield made
    for s in made:
        if s.http is not None:
            s.http.shutdown()
        s.store.close()


def trainer_for(tmp_path, stations, monkeypatch) -> TrainServer:
    sources = []
    for s in stations:
        monkeypatch.setenv(f"QC_TOKEN_{s.heads[0].line.upper()}", s.token)
        sources.append({"name": f"station-{s.heads[0].line}", "url": s.url,
                        "token_env": f"QC_TOKEN_{s.heads[0].line.upper()}", "page": 2})
    raw = {"data": {"dir": str(tmp_path / "trainer"), "size": HW[0]}, "sources": sources}
    return TrainServer(configfile.from_dict(raw, ServeConfig))


def ids_by_source(data) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in data.samples:
        out.setdefault(s.meta["station_source"], set()).add(s.meta["review_id"])
    return out


def test_the_trainer_gathers_every_stations_verdicts_and_goes_on_when_one_is_down(tmp_path, stations, monkeypatch):
    one, two = stations
    trainer = trainer_for(tmp_path, stations, monkeypatch)
    first = {one.rule(0), one.rule(1, "not_defect", "glare")}
    second = {two.rule(0)}
    data, sources = trainer.collect()
    assert ids_by_source(data) == {"station-line1": first, "station-line2": second}
    assert [s["new_items"] for s in sources] == [2, 1]
    assert all("error" not in s for s in sources)

    # The second line's station goes away; both lines' reviewers go on ruling.
    two.down()
    first.add(one.rule(2))
    later = two.rule(1, "not_defect", "dust")
    data, sources = trainer.collect()
    assert ids_by_source(data) == {"station-line1": first, "station-line2": second}  # its earlier items still train
    by_name = {s["name"]: s for s in sources}
    assert by_name["station-line1"]["new_items"] == 1 and "error" not in by_name["station-line1"]
    assert "cannot reach the station" in by_name["station-line2"]["error"]
    assert by_name["station-line2"]["new_items"] == 0

    # Back on its old address: what was ruled while it was away arrives, nothing twice.
    two.serve()
    data, sources = trainer.collect()
    assert ids_by_source(data) == {"station-line1": first, "station-line2": second | {later}}
    assert [s["new_items"] for s in sources] == [0, 1]
    assert len(data) == len(first) + len(second) + 1


def test_a_source_that_refuses_the_token_is_skipped_and_named(tmp_path, stations, monkeypatch):
    trainer = trainer_for(tmp_path, stations, monkeypatch)
    monkeypatch.setenv("QC_TOKEN_LINE2", "not-the-token")
    stations[0].rule(0)
    data, sources = trainer.collect()
    assert len(data) == 1
    assert "refused the API token" in sources[1]["error"]


def test_sources_config_reads_tokens_from_env_or_file_and_refuses_mistakes(tmp_path, monkeypatch):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "l2").write_text("token-of-line-2\n")
    path = tmp_path / "serve.toml"
    path.write_text('[[sources]]\nname = "line1"\nurl = "http://st1:8080"\ntoken_env = "QC_T1"\n\n'
                    '[[sources]]\nname = "line2"\nurl = "http://st2:8080"\ntoken_file = "tokens/l2"\n')
    cfg = load_config(path)
    assert [s.name for s in cfg.sources] == ["line1", "line2"]
    assert cfg.sources[1].token_file == tmp_path / "tokens" / "l2"  # relative to the config file
    assert cfg.sources[1].token() == "token-of-line-2"
    monkeypatch.delenv("QC_T1", raising=False)
    with pytest.raises(ConfigError, match=r"'line1': token_env names 'QC_T1', which is not set"):
        cfg.sources[0].token()
    monkeypatch.setenv("QC_T1", "token-of-line-1")
    assert cfg.sources[0].token() == "token-of-line-1"

    def refused(text: str, match: str) -> None:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(path)

    refused('[[sources]]\nname = "a"\nurl = "http://x"\n', r"\[sources\[0\]\]\.token_env: .*set token_env or token_file")
    refused('[[sources]]\nname = "a/../b"\nurl = "http://x"\ntoken_env = "T"\n', r"\[sources\[0\]\]\.name: must be")
    refused('[[sources]]\nname = "a"\nurl = "ftp://x"\ntoken_env = "T"\n', r"\[sources\[0\]\]\.url: .*http://")
    refused('[[sources]]\nname = "a"\nurl = "http://x"\ntoken_env = "T"\ntoken = "secret"\n', r"token: unknown key")
    refused('[[sources]]\nname = "a"\nurl = "http://x"\ntoken_env = "T"\n\n'
            '[[sources]]\nname = "a"\nurl = "http://y"\ntoken_env = "T"\n', r"two sources are named 'a'")
    refused('[station]\nurl = "http://x"\n\n[[sources]]\nname = "a"\nurl = "http://x/"\ntoken_env = "T"\n',
            r"http://x is listed twice")


def test_a_missing_token_stops_the_trainer_at_start_naming_the_source(tmp_path, monkeypatch):
    from training.release import keygen

    keygen(tmp_path / "k.key", tmp_path / "k.pub")
    monkeypatch.delenv("QC_NOT_SET", raising=False)
    raw = {"data": {"dir": str(tmp_path / "trainer")}, "keys": {"private": str(tmp_path / "k.key")},
           "sources": [{"name": "line9", "url": "http://127.0.0.1:9", "token_env": "QC_NOT_SET"}]}
    server = TrainServer(configfile.from_dict(raw, ServeConfig))
    with pytest.raises(ConfigError, match="'line9': token_env names 'QC_NOT_SET'"):
        server.start(wait_s=0.1)
    assert server.http is None  # nothing was started
