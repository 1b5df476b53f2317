"""The model manifest: validation naming the field, stable canonical bytes, integrity, version order."""
from __future__ import annotations

import hashlib
import json

import pytest

from models.errors import IntegrityError, ManifestError
from models.manifest import (
    SCHEMA,
    InputSpec,
    Manifest,
    OutputSpec,
    Thresholds,
    load_manifest,
    make_manifest,
    verify_model_file,
    write_manifest,
)

MODEL = b"not really onnx, but bytes with a hash" * 10


def _manifest(**kw) -> Manifest:
    spec = InputSpec("image", (1, 3, 32, 48), colour="bgr", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5),
                     roi=(0.1, 0.2, 0.5, 0.5))
    return make_manifest(kw.pop("version", "1.2.0"), MODEL, spec, Thresholds(0.25, 0.75), parent="1.1.0",
                         dataset={"hash": "abc", "counts": {"ok": 10, "def": 3}}, metrics={"auroc": 0.97}, **kw)


def test_round_trip_through_dict_and_file(tmp_path):
    m = _manifest()
    assert m.schema == SCHEMA
    assert m.bytes == len(MODEL)
    assert m.sha256 == hashlib.sha256(MODEL).hexdigest()
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    path = tmp_path / "manifest.json"
    write_manifest(path, m)
    assert load_manifest(path) == m
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


def test_canonical_bytes_exclude_signature_and_are_stable():
    m = _manifest()
    signed = m.with_signature("c2lnbmF0dXJl")
    assert signed.signature == "c2lnbmF0dXJl" and m.signature == ""
    assert signed.canonical_bytes() == m.canonical_bytes()
    assert b"signature" not in m.canonical_bytes()
    # Same content through JSON and back (keys in another order) gives the same bytes.
    d = m.to_dict()
    shuffled = dict(reversed(list(d.items())))
    assert Manifest.from_dict(shuffled).canonical_bytes() == m.canonical_bytes()
    assert json.loads(m.canonical_bytes()) == {k: v for k, v in d.items() if k != "signature"}
    # Any signed field change changes the bytes.
    other = Manifest.from_dict({**d, "thresholds": {"pass_below": 0.2, "reject_above": 0.75}})
    assert other.canonical_bytes() != m.canonical_bytes()


@pytest.mark.parametrize("change, field", [
    ({"thresholds": {"pass_below": 0.8, "reject_above": 0.7}}, "thresholds.pass_below"),
    ({"thresholds": {"pass_below": -0.1, "reject_above": 0.7}}, "thresholds.pass_below"),
    ({"thresholds": {"pass_below": 0.1}}, "thresholds.reject_above"),
    ({"input": {"name": "image", "shape": [1, 3, 32]}}, "input.shape"),
    ({"input": {"name": "image", "shape": [1, 3, 32, 32], "colour": "gray"}}, "input.shape"),
    ({"input": {"name": "image", "shape": [1, 1, 32, 32], "colour": "cmyk"}}, "input.colour"),
    ({"input": {"name": "image", "shape": [1, 1, 32, 32], "std": [0.0]}}, "input.std"),
    ({"input": {"name": "image", "shape": [1, 1, 32, 32], "roi": [0.5, 0, 0.6, 1]}}, "input.roi"),
    ({"input": {"name": "image", "shape": [1, 1, 32, 32], "gamma": 2}}, "input.gamma"),
    ({"sha256": "xyz"}, "sha256"),
    ({"bytes": -1}, "bytes"),
    ({"file": "../evil.onnx"}, "file"),
    ({"version": "../1.0"}, "version"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"metrics": {"auroc": float("nan")}}, "metrics"),
    ({"colour_space": "x"}, "colour_space"),
])
def test_bad_fields_are_named(change, field):
    d = {**_manifest().to_dict(), **change}
    with pytest.raises(ManifestError, match=f"manifest field '{field}'"):
        Manifest.from_dict(d)


def test_unknown_schema_and_missing_field_refused():
    d = _manifest().to_dict()
    with pytest.raises(ManifestError, match="unknown manifest schema"):
        Manifest.from_dict({**d, "schema": "qcloop.manifest/2"})
    del d["sha256"]
    with pytest.raises(ManifestError, match="'sha256' is missing"):
        Manifest.from_dict(d)


def test_corrupted_json_names_the_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"schema": "qcloop.manifest/1", "version": ')
    with pytest.raises(ManifestError, match="manifest.json: not valid JSON"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "missing.json")
    d = _manifest().to_dict()
    d["thresholds"]["reject_above"] = 2
    path.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=r"manifest\.json: manifest field 'thresholds\.reject_above'"):
        load_manifest(path)


def test_verify_model_file(tmp_path):
    m = _manifest()
    path = tmp_path / "model.onnx"
    path.write_bytes(MODEL)
    verify_model_file(m, path)
    path.write_bytes(MODEL[:-1] + b"X")  # same size, other content
    with pytest.raises(IntegrityError, match="sha256"):
        verify_model_file(m, path)
    path.write_bytes(MODEL + b"!")
    with pytest.raises(IntegrityError, match="bytes"):
        verify_model_file(m, path)
    with pytest.raises(IntegrityError, match="missing"):
        verify_model_file(m, tmp_path / "gone.onnx")


def test_frozen_specs_normalise_lists():
    spec = InputSpec("x", [1, 1, 8, 8], mean=[0], std=[1])
    assert spec.shape == (1, 1, 8, 8)
    assert spec.mean == (0.0,)
    assert spec.hw == (8, 8)
    assert OutputSpec("score").meaning == "defect_probability"


def test_detector_section_round_trips_and_is_left_out_when_empty():
    described = _manifest(detector={"family": "lite0", "blocks": 11, "input_hw": [224, 224], "views": 1})
    assert Manifest.from_dict(json.loads(json.dumps(described.to_dict()))).detector["family"] == "lite0"
    plain = _manifest()
    # A manifest written before families were recorded has no such key, so its signed bytes are unchanged.
    assert "detector" not in plain.to_dict() and b"detector" not in plain.canonical_bytes()
    assert b'"family":"lite0"' in described.canonical_bytes()


@pytest.mark.parametrize("bad", [{"blocks": 11}, {"family": ""}, ["lite0"], {"family": "x", "v": float("nan")}])
def test_detector_section_must_name_a_family(bad):
    with pytest.raises(ManifestError, match="detector"):
        _manifest(detector=bad)
