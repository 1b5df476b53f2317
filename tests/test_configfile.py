"""The config loader (qcloop.configfile): every path field is relative to the config file, found from its type."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import load_config as load_edge
from qcloop import configfile
from station_ui.config import load_config as load_station
from training.serve_config import load_config as load_trainer


@dataclass(frozen=True)
class Inner:
    folder: Path = Path("var/inner")  # a default, never written in the file
    maybe: Path | None = None
    many: tuple[Path, ...] = ()
    name: str = "not/a/path"


@dataclass(frozen=True)
class Outer:
    top: Path = Path("data")
    inner: Inner = field(default_factory=Inner)


def test_every_path_field_given_or_defaulted_is_relative_to_the_file(tmp_path, monkeypatch):
    conf = tmp_path / "etc" / "x.toml"
    conf.parent.mkdir()
    conf.write_text('[inner]\nmaybe = "keys/k.pub"\nmany = ["a", "/abs/b"]\n')
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    cfg = configfile.load(conf, Outer)
    base = conf.parent.resolve()
    assert cfg.top == base / "data"
    assert cfg.inner.folder == base / "var/inner"
    assert cfg.inner.maybe == base / "keys/k.pub"
    assert cfg.inner.many == (base / "a", Path("/abs/b"))
    assert cfg.inner.name == "not/a/path"  # a string is not a path


def test_an_empty_optional_path_is_unset(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text('[inner]\nmaybe = ""\n')
    assert configfile.load(conf, Outer).inner.maybe is None


def test_each_part_resolves_its_paths_from_the_file_folder(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "edge.toml").write_text('[edge]\nline = "l1"\ncamera = "c1"\n[model]\npublic_key = "trainer.pub"\n'
                                   '[mqtt]\nca_file = "ca.pem"\n[camera]\ntype = "folder"\npath = "photos"\n')
    (etc / "station.toml").write_text('[station]\nsecret_key_file = "secret"\n')
    (etc / "serve.toml").write_text('[data]\nseed_folders = ["seed"]\n')
    monkeypatch.chdir(tmp_path)
    base = etc.resolve()
    edge = load_edge(etc / "edge.toml")
    assert (edge.edge.data_dir, edge.registry_dir) == (base / "var/edge", base / "var/edge/models")
    assert (edge.model.public_key, edge.mqtt.ca_file, edge.camera.path) == (
        base / "trainer.pub", base / "ca.pem", base / "photos")
    station = load_station(etc / "station.toml")
    assert (station.db_path, station.secret_key_path) == (base / "var/station/station.db", base / "secret")
    trainer = load_trainer(etc / "serve.toml")
    assert (trainer.data.dir, trainer.data.seed_folders, trainer.keys.private) == (
        base / "var/trainer", (base / "seed",), base / "keys/trainer.key")
    assert os.getcwd() == str(tmp_path)


def test_check_config_prints_plain_values_and_the_paths_really_used(tmp_path, capsys):
    from qc.cli import main

    (tmp_path / "edge.toml").write_text('[edge]\nline = "l1"\ncamera = "c1"\ndata_dir = "../var/edge"\n')
    assert main(["edge", "check-config", str(tmp_path / "edge.toml")]) == 0
    out = capsys.readouterr().out
    assert "PosixPath" not in out
    used = (tmp_path.parent / "var" / "edge").resolve()
    assert f"data_dir = {used}\n" in out  # '..' folded away
    assert f"model registry = {used / 'models'}\n" in out  # not the unset registry = '.'
    (tmp_path / "station.toml").write_text('[station]\ndata_dir = "st"\n[mqtt]\nenabled = false\n')
    assert main(["station", "check-config", str(tmp_path / "station.toml")]) == 0
    out = capsys.readouterr().out
    assert "PosixPath" not in out
    assert f"database = {tmp_path.resolve() / 'st' / 'station.db'}\n" in out
