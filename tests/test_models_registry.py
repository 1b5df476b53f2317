"""The on-disk registry: complete versions only, atomic flips, rollback through history."""
from __future__ import annotations

import json

import pytest
from models_support import build_version, make_test_manifest

from models.errors import IntegrityError, ManifestError, RegistryError, VersionError
from models.manifest import load_manifest, verify_model_file
from models.registry import Registry


def test_add_writes_manifest_and_model(tmp_path):
    reg = Registry(tmp_path / "reg")
    path = build_version(reg.root, "1.0.0")
    assert path == reg.version_dir("1.0.0")
    m = reg.manifest("1.0.0")
    assert m == load_manifest(path / "manifest.json")
    verify_model_file(m, reg.model_path("1.0.0"))
    assert reg.versions() == ["1.0.0"]
    assert reg.current_version() is None and reg.previous_version() is None
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".tmp-")]


def test_existing_version_refused(tmp_path):
    reg = Registry(tmp_path)
    build_version(tmp_path, "1.0.0", thresholds=(0.3, 0.7))
    manifest, data = make_test_manifest("1.0.0", thresholds=(0.1, 0.9))
    with pytest.raises(VersionError, match="1.0.0 already exists"):
        reg.add(manifest, data)
    assert reg.manifest("1.0.0").thresholds.pass_below == 0.3  # the first one is untouched


def test_bytes_not_matching_manifest_refused(tmp_path):
    reg = Registry(tmp_path)
    manifest, data = make_test_manifest("1.0.0")
    with pytest.raises(IntegrityError):
        reg.add(manifest, data[:-1] + bytes([data[-1] ^ 1]))
    assert reg.versions() == []


def test_flip_and_rollback_walk_history(tmp_path):
    reg = Registry(tmp_path)
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        build_version(tmp_path, v)
        reg.set_current(v, reason=f"publish {v}")
    assert (tmp_path / "CURRENT").read_text().strip() == "1.2.0"
    assert reg.current_version() == "1.2.0" and reg.previous_version() == "1.1.0"
    assert reg.rollback() == "1.1.0"
    assert reg.current_version() == "1.1.0" and reg.previous_version() == "1.0.0"
    assert reg.rollback() == "1.0.0"
    with pytest.raises(RegistryError, match="no earlier live version"):
        reg.rollback()
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(h["version"], h["previous"]) for h in history] == [
        ("1.0.0", None), ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0"), ("1.1.0", "1.2.0"), ("1.0.0", "1.1.0")]
    assert history[0]["reason"] == "publish 1.0.0" and all(h["time"] for h in history)
    # A fresh Registry on the same root sees the same state (nothing lives only in memory).
    assert Registry(tmp_path).current_version() == "1.0.0"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".CURRENT")]  # no temp pointer left


def test_set_current_unknown_or_corrupt_refused(tmp_path):
    reg = Registry(tmp_path)
    build_version(tmp_path, "1.0.0", set_current=True)
    with pytest.raises(RegistryError, match="9.9.9"):
        reg.set_current("9.9.9")
    build_version(tmp_path, "1.1.0")
    reg.model_path("1.1.0").write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        reg.set_current("1.1.0")
    assert reg.current_version() == "1.0.0"


def test_leftover_temp_dir_and_bad_names_ignored(tmp_path):
    reg = Registry(tmp_path)
    build_version(tmp_path, "0.10.0")
    build_version(tmp_path, "0.9.0")
    crashed = tmp_path / ".tmp-2.0.0-deadbeef"
    crashed.mkdir()
    (crashed / "model.onnx").write_bytes(b"half")
    (tmp_path / "no-manifest").mkdir()
    assert reg.versions() == ["0.9.0", "0.10.0"]
    build_version(tmp_path, "2.0.0")  # the crashed attempt does not block a real add
    assert reg.versions() == ["0.9.0", "0.10.0", "2.0.0"]
    with pytest.raises(VersionError):
        reg.version_dir("../outside")


def test_corrupted_manifest_names_file(tmp_path):
    reg = Registry(tmp_path)
    path = build_version(tmp_path, "1.0.0")
    (path / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match=r"1\.0\.0/manifest\.json: not valid JSON"):
        reg.manifest("1.0.0")
    with pytest.raises(VersionError):
        reg.manifest("3.0.0")


def test_current_pointing_at_missing_version_is_an_error(tmp_path):
    reg = Registry(tmp_path)
    (tmp_path / "CURRENT").write_text("4.0.0\n")
    with pytest.raises(RegistryError, match="4.0.0"):
        reg.current_version()
