"""Property-based tests of the two parsers that take input from outside: the review envelope and the config.

* ``qcloop.wire.decode_review``: arbitrary bytes (and arbitrary JSON in a well-framed
  envelope) never raise anything but WireError; every valid header round-trips.
* ``qcloop.configfile`` as the edge uses it: any TOML value for any known key either
  loads or fails with a ConfigError that names the file and that key; numbers that
  load are finite and inside the key's range.
"""
from __future__ import annotations

import dataclasses
import json
import math
import struct
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import EdgeConfig, load_config
from qcloop import wire
from qcloop.errors import ConfigError, WireError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JPEG = b"\xff\xd8" + b"\x10" * 64 + b"\xff\xd9"


# ------------------------------------------------------------------ envelope
@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_wire_error(payload):
    try:
        wire.decode_review(payload)
    except WireError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(wire._HEADER_TYPES)) | st.text(max_size=8), json_values, max_size=16),
       st.binary(max_size=64))
def test_framed_arbitrary_json_headers_raise_only_wire_error(obj, tail):
    head = json.dumps(obj).encode()
    payload = struct.pack(">I", len(head)) + head + tail
    try:
        header, jpeg = wire.decode_review(payload)
    except WireError:
        return
    assert jpeg == tail and header.id == obj["id"]  # accepted only when complete and valid


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
hint_maps = st.dictionaries(st.text(max_size=12), finite, max_size=5)


@st.composite
def headers(draw):
    reason = draw(st.sampled_from(wire.REASONS))
    return wire.ReviewHeader(
        id=str(draw(st.uuids())), part_id=draw(names), line=draw(names), camera=draw(names),
        captured_at=draw(finite), model=draw(st.text(max_size=30)),
        score=draw(st.none() | st.floats(0.0, 1.0)), band=draw(st.sampled_from(wire.BANDS)),
        action_taken=draw(st.sampled_from(wire.ACTIONS)), reason=reason, thresholds=draw(hint_maps),
        quality=draw(hint_maps), detail=draw(st.text(max_size=40)),
        width=draw(st.integers(0, 100_000)), height=draw(st.integers(0, 100_000)))


@SETTINGS
@given(headers(), st.binary(max_size=256))
def test_valid_headers_round_trip(header, body):
    jpeg = b"\xff\xd8" + body + b"\xff\xd9"
    got, image = wire.decode_review(wire.encode_review(header, jpeg))
    assert got == header and image == jpeg


# -------------------------------------------------------------------- config
def _known_keys() -> list[tuple[str, str]]:
    out = []
    for section in dataclasses.fields(EdgeConfig):
        for f in dataclasses.fields(typing.get_type_hints(EdgeConfig)[section.name]):
            out.append((section.name, f.name))
    return out


KEYS = _known_keys()
toml_scalars = (st.integers(-2**63, 2**63 - 1) | st.floats() | st.booleans()
                | st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"\\'), max_size=12))
toml_values = toml_scalars | st.lists(st.integers(-10**6, 10**6), max_size=5) | st.lists(toml_scalars, max_size=3)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    return "[" + ", ".join(_toml(v) for v in value) + "]"


@SETTINGS
@given(st.sampled_from(KEYS), toml_values)
def test_any_value_for_a_known_key_loads_or_names_the_key(tmp_path, key, value):
    section, name = key
    path = tmp_path / "edge.toml"
    path.write_text(f"[{section}]\n{name} = {_toml(value)}\n")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        assert str(path) in msg
        # The bad key itself, or (for "set both") the key it must agree with, in the same table.
        assert f"[{section}]." in msg, msg
        return
    assert dataclasses.is_dataclass(cfg)


FLOAT_KEYS = [(s, n) for s, n in KEYS
              if float in (typing.get_type_hints(typing.get_type_hints(EdgeConfig)[s])[n],
                           *typing.get_args(typing.get_type_hints(typing.get_type_hints(EdgeConfig)[s])[n]))]


def _accepted(tmp_path, bad: str) -> list[str]:
    """The float keys that load with ``bad`` as their value; every refusal must name its key."""
    accepted = []
    for section, name in FLOAT_KEYS:
        path = tmp_path / f"{section}-{name}.toml"
        path.write_text(f"[{section}]\n{name} = {bad}\n")
        try:
            load_config(path)
        except ConfigError as exc:
            assert f"[{section}].{name}" in str(exc)
        else:
            accepted.append(f"[{section}].{name}")
    return accepted


@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_infinite_numbers_are_refused_for_every_float_key(tmp_path, bad):
    assert not _accepted(tmp_path, bad)


def test_nan_is_refused_for_every_float_key(tmp_path):
    assert not _accepted(tmp_path, "nan")
