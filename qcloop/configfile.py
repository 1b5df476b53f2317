"""Typed, validated TOML configuration.

A config schema is a tree of frozen dataclasses: a field whose type is a dataclass
is a TOML table, a field with a default is optional. ``load(path, Schema)`` reads
the file and builds the tree; an unknown key, a missing key, a wrong type or a
value outside its range fails with a ConfigError that names the file and the
dotted key, e.g. ``edge.toml: [detector].intra_op_threads: must be >= 1, got 0``.

Range checks live in the dataclasses' ``__post_init__`` and raise ``ValueError``
with ``field_error(name, message)`` so the loader can name the key. Config objects
do no I/O.

**Paths.** Every field typed ``Path`` (or ``Path | None``, or ``tuple[Path, ...]``), given or
defaulted, is made relative to the config file's folder by ``load``, not to the working
directory the process happens to start in; the loader finds them from the schema's types,
so a new path field needs no list kept by hand; tables in a list (``[[sources]]``) are
resolved the same way. An empty string in a ``Path | None`` field
means unset (None).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from qcloop.errors import ConfigError

T = TypeVar("T")


class FieldError(ValueError):
    """Raised by a schema's __post_init__ to name the offending field."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def field_error(name: str, message: str) -> FieldError:
    return FieldError(name, message)


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise a FieldError when value is outside [lo, hi] (or the open variants), or not a finite number."""
    if isinstance(value, float) and not math.isfinite(value):
        # nan passes every comparison: a nan deadline or audit rate would switch a safeguard off
        raise FieldError(name, f"must be a finite number, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise FieldError(name, f"must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise FieldError(name, f"must be {'<' if hi_open else '<='} {hi}, got {value}")


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise FieldError(name, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")


def first_repeated(values: typing.Iterable[Any]) -> Any | None:
    """The first value that comes again in ``values`` (None when each is there once): for "listed twice" errors."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


def load(path: str | Path, schema: type[T]) -> T:
    """Read a TOML file and build the schema tree (paths relative to the file's folder), or raise ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return resolve_paths(from_dict(raw, schema, source=str(path)), path.resolve().parent)


def from_dict(raw: dict[str, Any], schema: type[T], source: str = "<config>") -> T:
    """Build the schema tree from plain data (as parsed from TOML); paths are left as given."""
    return _build(raw, schema, source, prefix="")


def resolve_paths(cfg: T, base: Path) -> T:
    """``cfg`` with every relative path field, at any depth, made relative to ``base`` (module docstring)."""
    hints = typing.get_type_hints(type(cfg))
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value, tp = getattr(cfg, f.name), hints[f.name]
        new: Any
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            new = resolve_paths(value, base)
        elif isinstance(value, Path) and _holds_path(tp):
            new = resolve_path(base, value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value) and _holds_path(tp):
            new = tuple(resolve_path(base, v) for v in value)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            # A list of tables ([[sources]]): each table's paths, as for a single one.
            resolved = tuple(resolve_paths(v, base) for v in value)
            new = value if all(a is b for a, b in zip(resolved, value)) else resolved
        else:
            continue
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]


def _holds_path(tp: Any) -> bool:
    """True for Path, Path | None and tuple[Path, ...] (the field types that hold file paths)."""
    if tp is Path:
        return True
    return typing.get_origin(tp) in (Union, types.UnionType, tuple) and any(_holds_path(a) for a in typing.get_args(tp))


def _build(raw: Any, schema: type[T], source: str, prefix: str) -> T:
    where = f"[{prefix}]" if prefix else "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{source}: {_key(prefix, unknown[0])}: unknown key (known keys here: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _key(prefix, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    kwargs[name] = _build({}, hints[name], source, _join(prefix, name))
                    continue
                raise ConfigError(f"{source}: {key}: required key is missing")
            continue
        kwargs[name] = _convert(raw[name], hints[name], source, key, _join(prefix, name))
    try:
        return schema(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{source}: {_key(prefix, exc.name)}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc


def _convert(value: Any, tp: Any, source: str, key: str, table: str) -> Any:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(value, tp, source, table)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if (value is None or (value == "" and Path in args)) and type(None) in args:
            return None  # an empty path string in an optional path field: unset
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, source, key, table)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{source}: {key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: must be a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key}: must have {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, source, f"{key}[{i}]", table) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        # A list of tables ([[name]]) names its items by position: "[sources[1]].url".
        tables = isinstance(item, type) and dataclasses.is_dataclass(item)
        out = [
            _convert(v, item, source, f"{key}[{i}]", f"{table}[{i}]" if tables else table) for i, v in enumerate(value)
        ]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: must be a table, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, source, f"{key}.{k}", table) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: must be a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{source}: {key}: unsupported type {tp!r} in schema")  # a schema bug


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _key(prefix: str, name: str) -> str:
    return f"[{prefix}].{name}" if prefix else name


def resolve_path(base: Path, value: Path) -> Path:
    """Relative paths in a config file are relative to the file's directory (``..`` folded away)."""
    return value if value.is_absolute() else Path(os.path.normpath(base / value))


def describe(cfg: Any, used: dict[str, Any] | None = None) -> str:
    """The config as a person reads it: one ``[section]`` per table, ``key = value`` with plain values
    (paths as text, unset as ``(unset)``), then ``used``: what the part derives from it (the paths really used)."""
    lines: list[str] = []
    top = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)]
    for name, value in top:
        if not dataclasses.is_dataclass(value):
            lines.append(f"{name} = {_plain(value)}")
    for name, value in top:
        if dataclasses.is_dataclass(value):
            lines.append(f"[{name}]")
            lines += [f"  {f.name} = {_plain(getattr(value, f.name))}" for f in dataclasses.fields(value)]
    if used:
        lines.append("[used]")
        lines += [f"  {k} = {_plain(v)}" for k, v in used.items()]
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return "{" + ", ".join(f"{f.name} = {_plain(getattr(value, f.name))}" for f in dataclasses.fields(value)) + "}"
    return repr(value) if isinstance(value, str) else str(value)
