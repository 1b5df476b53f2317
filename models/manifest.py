"""The model manifest: what a model version is, how to feed it, and how to trust it.

One ``manifest.json`` sits beside each model file in the registry
(``<registry>/<version>/manifest.json``). It names the file with its size and
sha256, describes the input tensor (shape, colour, scaling, optional ROI) and the
output, carries the decision thresholds calibrated for this model, says what network
the file is (``detector``: family, input size, views, precision) and records where the
model came from (parent version, dataset, golden-set metrics).

The signature (Ed25519, made by the trainer) covers ``canonical_bytes()``: the
manifest without its ``signature`` field, as JSON with sorted keys and compact
separators in UTF-8. Anything that changes a signed field breaks the signature.

Standard library only: the edge imports this without onnx or torch.
"""
from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.errors import IntegrityError, ManifestError
from qcloop.files import write_atomically

SCHEMA = "qcloop.manifest/1"
COLOURS = ("gray", "bgr", "rgb")
MANIFEST_NAME = "manifest.json"
#: Version names become directory names, so they are restricted to a safe alphabet.
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20


def _bad(name: str, message: str) -> ManifestError:
    return ManifestError(f"manifest field {name!r} {message}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(name, f"must be a finite number, got {value!r}")
    return float(value)


def _floats(name: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise _bad(name, f"must be a list of numbers, got {value!r}")
    return tuple(_number(f"{name}[{i}]", v) for i, v in enumerate(value))


def check_version(version: Any, name: str = "version") -> str:
    """Return the version string, or raise ManifestError when it cannot name a directory."""
    if not isinstance(version, str) or not _VERSION_RE.match(version) or ".." in version:
        raise _bad(name, f"must be 1-64 characters of letters, digits, '.', '_', '+', '-' "
                         f"starting with a letter or digit, got {version!r}")
    return version


# ------------------------------------------------------------------- parts
@dataclass(frozen=True)
class InputSpec:
    """The input tensor: (1, C, H, W) NCHW float32 = ((pixel * scale) - mean) / std per channel."""

    name: str
    shape: tuple[int, int, int, int]
    colour: str = "gray"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    roi: tuple[float, float, float, float] | None = None  # x, y, w, h as fractions of the frame

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _bad("input.name", f"must be a non-empty string, got {self.name!r}")
        shape = self.shape
        if (not isinstance(shape, (list, tuple)) or len(shape) != 4
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape) or shape[0] != 1):
            raise _bad("input.shape", f"must be [1, C, H, W] with positive integers, got {shape!r}")
        object.__setattr__(self, "shape", tuple(shape))
        if self.colour not in COLOURS:
            raise _bad("input.colour", f"must be one of {', '.join(COLOURS)}, got {self.colour!r}")
        channels = shape[1]
        want = 1 if self.colour == "gray" else 3
        if channels != want:
            raise _bad("input.shape", f"has {channels} channel(s) but colour {self.colour!r} needs {want}")
        scale = _number("input.scale", self.scale)
        if scale <= 0:
            raise _bad("input.scale", f"must be > 0, got {scale}")
        object.__setattr__(self, "scale", scale)
        for key in ("mean", "std"):
            values = _floats(f"input.{key}", getattr(self, key))
            if len(values) not in (1, channels):
                raise _bad(f"input.{key}", f"must have 1 or {channels} values, got {len(values)}")
            object.__setattr__(self, key, values)
        if any(s <= 0 for s in self.std):
            raise _bad("input.std", f"must be > 0, got {list(self.std)}")
        if self.roi is not None:
            roi = _floats("input.roi", self.roi)
            if (len(roi) != 4 or min(roi) < 0 or roi[2] <= 0 or roi[3] <= 0
                    or roi[0] + roi[2] > 1 + 1e-9 or roi[1] + roi[3] > 1 + 1e-9):
                raise _bad("input.roi", f"must be [x, y, w, h] fractions inside the frame (w, h > 0), got {self.roi!r}")
            object.__setattr__(self, "roi", roi)

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def hw(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "colour": self.colour, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std),
                "roi": list(self.roi) if self.roi is not None else None}


@dataclass(frozen=True)
class OutputSpec:
    name: str
    meaning: str = "defect_probability"

    def __post_init__(self) -> None:
        for key in ("name", "meaning"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise _bad(f"output.{key}", f"must be a non-empty string, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "meaning": self.meaning}


@dataclass(frozen=True)
class Thresholds:
    """score < pass_below: PASS; score >= reject_above: REJECT; between: uncertain."""

    pass_below: float
    reject_above: float

    def __post_init__(self) -> None:
        for key in ("pass_below", "reject_above"):
            value = _number(f"thresholds.{key}", getattr(self, key))
            if not 0.0 <= value <= 1.0:
                raise _bad(f"thresholds.{key}", f"must be within [0, 1], got {value}")
            object.__setattr__(self, key, value)
        if self.pass_below > self.reject_above:
            raise _bad("thresholds.pass_below",
                       f"must be <= reject_above ({self.reject_above}), got {self.pass_below}")

    def to_dict(self) -> dict[str, float]:
        return {"pass_below": self.pass_below, "reject_above": self.reject_above}


# ------------------------------------------------------------------- manifest
_FIELDS = ("schema", "version", "parent", "created_at", "file", "sha256", "bytes", "input", "output",
           "thresholds", "labels", "detector", "dataset", "metrics", "signature")
_REQUIRED = ("schema", "version", "created_at", "file", "sha256", "bytes", "input", "output", "thresholds")


@dataclass(frozen=True)
class Manifest:
    schema: str
    version: str
    parent: str | None
    created_at: str  # ISO-8601, UTC
    file: str  # model file name inside the version directory
    sha256: str  # hex digest of the model file
    bytes: int  # size of the model file
    input: InputSpec
    output: OutputSpec
    thresholds: Thresholds
    labels: tuple[str, ...] = ("ok", "def")
    # What network the file is (family, its options, input size, views, precision); {} for models
    # from before families were recorded. Written only when set, so older signatures still verify.
    detector: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # hash and counts of the training data
    metrics: dict = field(default_factory=dict)  # golden-set results: escape rate, false rejects, AUROC ...
    signature: str = ""  # base64 Ed25519 over canonical_bytes(); "" when unsigned

    def __post_init__(self) -> None:
        if self.schema != SCHEMA:
            raise _bad("schema", f"must be {SCHEMA!r}, got {self.schema!r} (unknown manifest schema)")
        check_version(self.version)
        if self.parent is not None:
            check_version(self.parent, "parent")
        if not isinstance(self.created_at, str):
            raise _bad("created_at", f"must be an ISO-8601 string, got {self.created_at!r}")
        try:
            datetime.fromisoformat(self.created_at)
        except ValueError as exc:
            raise _bad("created_at", f"must be an ISO-8601 time, got {self.created_at!r}") from exc
        if (not isinstance(self.file, str) or not self.file or self.file in (".", "..", MANIFEST_NAME)
                or "/" in self.file or "\\" in self.file or self.file.startswith(".")):
            raise _bad("file", f"must be a plain file name beside the manifest, got {self.file!r}")
        if not isinstance(self.sha256, str) or not _SHA256_RE.match(self.sha256):
            raise _bad("sha256", f"must be 64 lower-case hex digits, got {self.sha256!r}")
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 0:
            raise _bad("bytes", f"must be a non-negative integer, got {self.bytes!r}")
        for key, kind in (("input", InputSpec), ("output", OutputSpec), ("thresholds", Thresholds)):
            if not isinstance(getattr(self, key), kind):
                raise _bad(key, f"must be a {kind.__name__}, got {type(getattr(self, key)).__name__}")
        labels = self.labels
        if (not isinstance(labels, (list, tuple)) or not labels
                or not all(isinstance(x, str) and x for x in labels)):
            raise _bad("labels", f"must be a non-empty list of names, got {labels!r}")
        object.__setattr__(self, "labels", tuple(labels))
        if self.detector and not (isinstance(self.detector, dict) and isinstance(self.detector.get("family"), str)
                                  and self.detector["family"]):
            raise _bad("detector", f"must be an object naming a family, got {self.detector!r}")
        for key in ("detector", "dataset", "metrics"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise _bad(key, f"must be an object, got {type(value).__name__}")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise _bad(key, f"must hold plain JSON values (finite numbers): {exc}") from exc
        if not isinstance(self.signature, str):
            raise _bad("signature", f"must be a string, got {type(self.signature).__name__}")

    # -------------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        d = {"schema": self.schema, "version": self.version, "parent": self.parent,
             "created_at": self.created_at, "file": self.file, "sha256": self.sha256, "bytes": self.bytes,
             "input": self.input.to_dict(), "output": self.output.to_dict(),
             "thresholds": self.thresholds.to_dict(), "labels": list(self.labels),
             "dataset": self.dataset, "metrics": self.metrics, "signature": self.signature}
        if self.detector:
            d["detector"] = self.detector
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Build and validate a manifest from parsed JSON; ManifestError names the bad field."""
        if not isinstance(d, dict):
            raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA:
            raise _bad("schema", f"must be {SCHEMA!r}, got {d.get('schema')!r} (unknown manifest schema)")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise _bad(unknown[0], "is not part of schema " + SCHEMA)
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise _bad(missing[0], "is missing")
        inp = _section(d, "input", InputSpec, ("name", "shape"))
        out = _section(d, "output", OutputSpec, ("name",))
        thr = _section(d, "thresholds", Thresholds, ("pass_below", "reject_above"))
        kwargs = {k: d[k] for k in _FIELDS if k in d and k not in ("input", "output", "thresholds")}
        kwargs.setdefault("parent", None)
        try:
            return cls(input=inp, output=out, thresholds=thr, **kwargs)
        except TypeError as exc:  # a value of a kind the checks could not even compare
            raise ManifestError(f"manifest is malformed: {exc}") from exc

    def canonical_bytes(self) -> builtins.bytes:  # the field ``bytes`` shadows the type in the class
        """The signed form: everything except ``signature``, sorted keys, compact, UTF-8."""
        d = self.to_dict()
        del d["signature"]
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")

    def with_signature(self, sig: str) -> Manifest:
        return replace(self, signature=sig)


def _section(d: dict, key: str, kind: Any, required: tuple[str, ...]) -> Any:
    raw = d[key]
    if not isinstance(raw, dict):
        raise _bad(key, f"must be an object, got {type(raw).__name__}")
    known = {f for f in kind.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _bad(f"{key}.{unknown[0]}", "is not part of schema " + SCHEMA)
    for name in required:
        if name not in raw:
            raise _bad(f"{key}.{name}", "is missing")
    try:
        return kind(**raw)
    except TypeError as exc:
        raise _bad(key, f"is malformed: {exc}") from exc


# ------------------------------------------------------------------- building
def make_manifest(version: str, model_bytes: bytes, input: InputSpec, thresholds: Thresholds,
                  output: OutputSpec | None = None, parent: str | None = None, file: str = "model.onnx",
                  dataset: dict | None = None, metrics: dict | None = None, detector: dict | None = None) -> Manifest:
    """A new unsigned manifest for ``model_bytes`` (hash, size and creation time filled in)."""
    return Manifest(
        schema=SCHEMA, version=version, parent=parent,
        created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        file=file, sha256=hashlib.sha256(model_bytes).hexdigest(), bytes=len(model_bytes),
        input=input, output=output or OutputSpec("score"), thresholds=thresholds,
        detector=dict(detector) if isinstance(detector, dict) else (detector or {}), dataset=dict(dataset or {}),
        metrics=dict(metrics or {}),
    )


# ------------------------------------------------------------------- files
def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; ManifestError names the file (and the field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: manifest not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return Manifest.from_dict(raw)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of either."""
    path = Path(path)
    data = (json.dumps(manifest.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")
    write_atomically(path, data)


def verify_model_bytes(manifest: Manifest, data: bytes, source: str = "model") -> None:
    """Raise IntegrityError when ``data`` is not the file the manifest describes."""
    if len(data) != manifest.bytes:
        raise IntegrityError(f"{source}: {len(data)} bytes, manifest {manifest.version} says {manifest.bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(digest, manifest.sha256):
        raise IntegrityError(f"{source}: sha256 {digest} differs from manifest {manifest.version} ({manifest.sha256})")


def verify_model_file(manifest: Manifest, path: str | Path) -> None:
    """Raise IntegrityError when the file's size or sha256 differs from the manifest (hash streamed)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size != manifest.bytes:
            raise IntegrityError(f"{path}: {size} bytes, manifest {manifest.version} says {manifest.bytes}")
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    except FileNotFoundError as exc:
        raise IntegrityError(f"{path}: model file missing (manifest {manifest.version})") from exc
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read model file: {exc}") from exc
    digest = h.hexdigest()
    if not hmac.compare_digest(digest, manifest.sha256):
        raise IntegrityError(f"{path}: sha256 {digest} differs from manifest {manifest.version} ({manifest.sha256})")
