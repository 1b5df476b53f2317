"""Typed JSON messages: a frozen dataclass is the schema, and decoding checks every field against it.

A message class derives from ``Message`` and names itself in ``WHAT`` (for errors). Its
fields' types say what is accepted: ``str``, ``int`` and ``float`` (never a bool; floats
finite), ``bool``, ``Literal[...]`` choices, ``X | None``, ``dict[str, X]``, ``tuple[X, ...]``
and nested messages. A field's ``metadata`` may bound it (``bounded(lo, hi)``) or ask for a
UUID (``UUID``). ``decode`` raises WireError naming the message and the field, e.g.
``verdict: field 'time' must be a number, got 'soon'``; a missing field takes its default,
or is an error when it has none. Unknown keys are ignored, so a newer sender's extra
fields never break an older receiver. ``encode`` refuses NaN and infinity, so what one part
sends, every other part can decode. Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import uuid
from typing import Any, ClassVar, TypeVar, Union

from qcloop.errors import WireError

M = TypeVar("M", bound="Message")

#: ``field(metadata=UUID)``: the string must be a UUID; it is normalised to the canonical lower-case form.
UUID = {"uuid": True}


def bounded(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """``field(metadata=bounded(0, 1))``: a number (or the numbers of a dict or tuple) within [lo, hi]."""
    return {"lo": lo, "hi": hi}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def dumps(obj: Any) -> bytes:
    """Compact JSON; NaN and infinity are refused (ValueError), never sent."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def loads(payload: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object from ``payload``, or WireError naming ``what`` (NaN and infinity refused)."""
    try:
        obj = json.loads(payload, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise WireError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be a JSON object")
    return obj


class Message:
    """Base of the wire's JSON messages (frozen dataclasses); see the module docstring."""

    WHAT: ClassVar[str] = "message"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def encode(self) -> bytes:
        try:
            return dumps(self.to_json())
        except ValueError as exc:  # NaN or infinity: a sender bug, never on the wire
            raise WireError(f"{self.WHAT}: cannot encode: {exc}") from exc

    @classmethod
    def decode(cls: type[M], payload: bytes | str) -> M:
        return cls.from_json(loads(payload, cls.WHAT))

    @classmethod
    def from_json(cls: type[M], obj: Any) -> M:
        return _build(cls, obj, cls.WHAT, "")


def _build(cls: type, obj: Any, what: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise WireError(f"{what}: {where or 'the message'} must be an object, got {_kind(obj)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise WireError(f"{what}: field {key!r} is missing")
            continue
        kwargs[f.name] = _value(obj[f.name], hints[f.name], f.metadata, what, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a message's own __post_init__ check
        raise WireError(f"{what}: {exc}") from exc


def _value(v: Any, tp: Any, meta: Any, what: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _value(v, inner[0], meta, what, key)
        for a in inner:  # the first that fits
            try:
                return _value(v, a, meta, what, key)
            except WireError:
                continue
        raise WireError(f"{what}: field {key!r} has an unexpected value {v!r}")
    if origin is typing.Literal:
        if v not in args or isinstance(v, bool) != any(isinstance(a, bool) for a in args):
            raise WireError(f"{what}: field {key!r} must be one of {', '.join(map(repr, args))}, got {v!r}")
        return v
    if origin is dict:
        if not isinstance(v, dict):
            raise WireError(f"{what}: field {key!r} must be an object, got {_kind(v)}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _value(x, vt, meta, what, f"{key}.{k}") for k, x in v.items()}
    if origin is tuple:
        if not isinstance(v, list):
            raise WireError(f"{what}: field {key!r} must be a list, got {_kind(v)}")
        item = args[0] if args else Any
        return tuple(_value(x, item, meta, what, f"{key}[{i}]") for i, x in enumerate(v))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, v, what, key)
    if tp is Any:
        return v
    if tp is bool:
        if not isinstance(v, bool):
            raise WireError(f"{what}: field {key!r} must be true or false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise WireError(f"{what}: field {key!r} must be an integer, got {v!r}")
        return _in_bounds(v, meta, what, key)
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise WireError(f"{what}: field {key!r} must be a number, got {v!r}")
        return _in_bounds(float(v), meta, what, key)
    if tp is str:
        if not isinstance(v, str):
            raise WireError(f"{what}: field {key!r} must be a string, got {v!r}")
        if meta.get("uuid"):
            try:
                return str(uuid.UUID(v))
            except ValueError as exc:
                raise WireError(f"{what}: field {key!r} must be a UUID, got {v!r}") from exc
        return v
    raise TypeError(f"{what}: field {key!r} has a type the codec does not know: {tp!r}")  # a schema bug


def _in_bounds(v: float, meta: Any, what: str, key: str) -> Any:
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise WireError(f"{what}: field {key!r} must be in {span}, got {v!r}")
    return v


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__
