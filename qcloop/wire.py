"""The MQTT wire contract: topic names, the binary review envelope and the JSON messages.

Defined once here and imported by the edge, the station and the trainer, so that the
three parts cannot drift apart. Standard library only: an edge box imports this
without Flask or torch.

Review envelope (binary, no base64)::

    +----------------+----------------------+-------------------+
    | 4 bytes, BE    | header: UTF-8 JSON   | JPEG bytes        |
    | header length  | (REVIEW_FIELDS ...)  | (rest of payload) |
    +----------------+----------------------+-------------------+

The review ``id`` (a UUID) is the idempotency key everywhere: the station stores a
review once per id and acknowledges every copy it receives.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, get_args

from qcloop.codec import UUID, Message, bounded, loads
from qcloop.errors import WireError

DEFAULT_PREFIX = "qc/v1"
#: Largest review payload a station accepts (header + JPEG). A 1280x1024 frame at
#: JPEG quality 90 is well under 1 MB; anything near this limit is a bug or an attack.
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
_LEN = struct.Struct(">I")

Action = Literal["PASS", "HOLD", "REJECT"]
Band = Literal["pass", "uncertain", "reject", "none"]
VerdictName = Literal["real_fault", "not_defect"]
REASONS = ("uncertain", "audit", "fail-safe")
ACTIONS: tuple[str, ...] = get_args(Action)
BANDS: tuple[str, ...] = get_args(Band)
VERDICTS: tuple[str, ...] = get_args(VerdictName)
#: Kinds a reviewer may give with "not a defect".
NOT_DEFECT_KINDS = ("glare", "shadow", "dust", "mis-trigger", "other")
#: Of those, the lighting artefacts: what the camera saw on a good part, which the model must learn to ignore.
LIGHTING_KINDS = ("glare", "shadow", "dust")
MODEL_MODES = ("live", "shadow")
#: How a line uses its people (LineSettings): in the loop, an uncertain part is HELD until a verdict
#: releases or rejects it; on the loop, the edge decides at once and people review afterwards (an
#: overruled PASS is a recall); out of the loop, the edge decides everything and only audits are reviewed.
OperatingMode = Literal["in-the-loop", "on-the-loop", "out-of-the-loop"]
OPERATING_MODES: tuple[str, ...] = get_args(OperatingMode)
#: Optional kinds for "real fault".
FAULT_KINDS = ("pit", "crack", "burr", "chip", "porosity", "other")


# --------------------------------------------------------------------------- topics
@dataclass(frozen=True)
class Topics:
    """Topic names for one prefix. Line and camera names must be single topic levels."""

    prefix: str = DEFAULT_PREFIX

    def status(self, line: str, camera: str) -> str:
        return f"{self.prefix}/{_level(line)}/{_level(camera)}/status"

    def result(self, line: str, camera: str) -> str:
        return f"{self.prefix}/{_level(line)}/{_level(camera)}/result"

    def review(self, line: str, camera: str) -> str:
        return f"{self.prefix}/{_level(line)}/{_level(camera)}/review"

    def review_ack(self, line: str) -> str:
        return f"{self.prefix}/{_level(line)}/review-ack"

    def verdict(self, line: str) -> str:
        return f"{self.prefix}/{_level(line)}/verdict"

    def model(self, line: str) -> str:
        return f"{self.prefix}/model/{_level(line)}"

    def settings(self, line: str) -> str:
        """Retained: the line's operating mode, hold time and fallback, set by an engineer at the station."""
        return f"{self.prefix}/{_level(line)}/settings"

    def retrain_request(self) -> str:
        """Station -> trainer: an engineer asked for a retrain now."""
        return f"{self.prefix}/train/request"

    def train_status(self, product: str = "") -> str:
        """Trainer -> all (retained): what the retraining server is doing, and its last result. A plant's
        trainer of several products (sets of lines sharing a model) keeps one per product under this one."""
        base = f"{self.prefix}/train/status"
        return f"{base}/{_level(product)}" if product else base

    def all_train_status(self) -> str:
        """The trainer's status and every product's (MQTT's # matches the parent level too)."""
        return f"{self.prefix}/train/status/#"

    # Subscriptions used by the station and the trainer.
    def all_reviews(self, line: str = "+") -> str:
        return f"{self.prefix}/{line}/+/review"

    def all_verdicts(self) -> str:
        return f"{self.prefix}/+/verdict"

    def parse_review_topic(self, topic: str) -> tuple[str, str]:
        """Return (line, camera) of a review topic, or raise WireError."""
        parts = topic.split("/")
        pre = self.prefix.split("/")
        if len(parts) != len(pre) + 3 or parts[: len(pre)] != pre or parts[-1] != "review":
            raise WireError(f"not a review topic: {topic!r}")
        return parts[-3], parts[-2]


def _level(name: str) -> str:
    if not name or any(c in name for c in "/+#") or name.strip() != name:
        raise WireError(f"line or camera name {name!r} must be one topic level (no '/', '+', '#', spaces at the ends)")
    return name


#: Second levels of the prefix that are not lines (P/model/<line>, P/train/..., P/bridge/<line>/state).
RESERVED_LINES = ("model", "train", "bridge")


def check_line_name(name: str) -> str:
    """A line's name, or WireError: one topic level, and none of the prefix's own second levels."""
    _level(name)
    if name in RESERVED_LINES:
        raise WireError(f"line name {name!r} is reserved (a topic level of the prefix: {', '.join(RESERVED_LINES)})")
    return name


def check_line_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """A list of lines (a station's, a product's), or WireError: each a line name, none twice."""
    seen: set[str] = set()
    for name in names:
        check_line_name(name)
        if name in seen:
            raise WireError(f"line {name!r} is listed twice")
        seen.add(name)
    return names


# ------------------------------------------------------------------------ envelope
@dataclass(frozen=True)
class ReviewHeader:
    """The JSON header of a review envelope."""

    id: str
    part_id: str
    line: str
    camera: str
    captured_at: float  # seconds since the epoch (UTC)
    model: str  # model version that scored the part ("" when no model ran)
    score: float | None  # None when no score exists (camera fault, model error)
    band: str  # pass | uncertain | reject | none
    action_taken: str  # PASS | HOLD | REJECT
    reason: str  # uncertain | audit | fail-safe
    thresholds: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)  # image-quality hints
    detail: str = ""  # for fail-safe: why (late, camera-fault, model-error, queue-full)
    width: int = 0
    height: int = 0
    lot: str = ""  # the production lot the part belongs to ("" when the line does not say): named in a recall

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "part_id": (str,),
    "line": (str,),
    "camera": (str,),
    "captured_at": (int, float),
    "model": (str,),
    "score": (int, float, type(None)),
    "band": (str,),
    "action_taken": (str,),
    "reason": (str,),
    "thresholds": (dict,),
    "quality": (dict,),
    "detail": (str,),
    "width": (int,),
    "height": (int,),
    "lot": (str,),
}
REQUIRED_HEADER_FIELDS = (
    "id",
    "part_id",
    "line",
    "camera",
    "captured_at",
    "model",
    "score",
    "band",
    "action_taken",
    "reason",
)


def new_review_id() -> str:
    return str(uuid.uuid4())


def encode_review(header: ReviewHeader, jpeg: bytes) -> bytes:
    """Pack a header and JPEG bytes into one review envelope."""
    validate_header(header.to_json())
    head = json.dumps(header.to_json(), separators=(",", ":"), allow_nan=False).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise WireError(f"review header is {len(head)} bytes, over {MAX_HEADER_BYTES}")
    payload = _LEN.pack(len(head)) + head + jpeg
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise WireError(f"review envelope is {len(payload)} bytes, over {MAX_ENVELOPE_BYTES}")
    return payload


def decode_review(payload: bytes, max_bytes: int = MAX_ENVELOPE_BYTES) -> tuple[ReviewHeader, bytes]:
    """Unpack and validate a review envelope; raise WireError naming what is wrong.

    Checks the framing, the header's JSON and field types, and that the image is a
    complete JPEG (SOI at the start, EOI at the end), so a truncated frame is refused.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise WireError("review payload must be bytes")
    payload = bytes(payload)
    if len(payload) > max_bytes:
        raise WireError(f"review envelope is {len(payload)} bytes, over the limit of {max_bytes}")
    if len(payload) < _LEN.size:
        raise WireError("review envelope shorter than its 4-byte header length")
    (n,) = _LEN.unpack_from(payload)
    if n == 0 or n > MAX_HEADER_BYTES or _LEN.size + n > len(payload):
        raise WireError(f"review header length {n} does not fit a {len(payload)}-byte envelope")
    raw = payload[_LEN.size : _LEN.size + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"review header is not valid UTF-8: {exc}") from exc
    obj = loads(text, "review header")
    header = header_from_json(obj)
    jpeg = payload[_LEN.size + n :]
    check_jpeg(jpeg)
    return header, jpeg


def header_from_json(obj: Any) -> ReviewHeader:
    validate_header(obj)
    known = {k: obj[k] for k in _HEADER_TYPES if k in obj}
    known["id"] = str(uuid.UUID(known["id"]))  # one id, one review: upper case, braces, urn: and hex are the same
    known["captured_at"] = float(known["captured_at"])
    if known.get("score") is not None:
        known["score"] = float(known["score"])
    return ReviewHeader(**known)


def validate_header(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise WireError("review header must be a JSON object")
    missing = [k for k in REQUIRED_HEADER_FIELDS if k not in obj]
    if missing:
        raise WireError(f"review header lacks {', '.join(missing)}")
    for key, types in _HEADER_TYPES.items():
        if key in obj and (not isinstance(obj[key], types) or isinstance(obj[key], bool)):
            raise WireError(f"review header field {key!r} has type {type(obj[key]).__name__}")
    try:
        uuid.UUID(obj["id"])
    except ValueError as exc:
        raise WireError(f"review id {obj['id']!r} is not a UUID") from exc
    for key, allowed in (("reason", REASONS), ("action_taken", ACTIONS), ("band", BANDS)):
        if obj[key] not in allowed:
            raise WireError(f"review header field {key!r} is {obj[key]!r}, expected one of {allowed}")
    score = obj["score"]
    if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise WireError(f"review score {score!r} is not in [0, 1]")
    if not math.isfinite(obj["captured_at"]):
        raise WireError("review captured_at is not a finite number")
    for name in ("part_id", "line", "camera"):
        if not obj[name] or len(obj[name]) > 200:
            raise WireError(f"review header field {name!r} must be 1..200 characters")


def check_jpeg(data: bytes) -> None:
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise WireError("review image is not a JPEG (no SOI marker)")
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise WireError("review image is a truncated JPEG (no EOI marker)")


# -------------------------------------------------------------------- JSON messages
# Every JSON message is a typed Message (qcloop.codec): decode checks each field's type and range.


@dataclass(frozen=True)
class ReviewAck(Message):
    """Station -> edge: the review with this id is stored; the edge may delete it."""

    WHAT: ClassVar[str] = "review-ack"
    id: str = field(metadata=UUID)
    stored: bool = True
    station: str = ""


@dataclass(frozen=True)
class Verdict(Message):
    """Station -> trainer and edge: a reviewer's ruling on one review."""

    WHAT: ClassVar[str] = "verdict"
    review_id: str = field(metadata=UUID)
    verdict: VerdictName
    kind: str  # defect kind or artefact kind ("" when not given)
    user: str
    time: float = field(metadata=bounded(0.0))
    station: str = ""
    line: str = ""
    camera: str = ""
    part_id: str = ""
    undone: bool = False  # True when the reviewer undid this verdict


@dataclass(frozen=True)
class ModelAnnouncement(Message):
    """Trainer -> edges (retained): a new model version is live in the registry."""

    WHAT: ClassVar[str] = "model announcement"
    version: str
    manifest_url: str
    sha256: str  # of the manifest file
    signature: str = ""
    mode: Literal["live", "shadow"] = "live"  # live: replaces the running model; shadow: runs beside it

    def __post_init__(self) -> None:
        for name in ("version", "manifest_url", "sha256"):
            if not getattr(self, name):
                raise ValueError(f"field {name!r} must not be empty")


@dataclass(frozen=True)
class RetrainRequest(Message):
    """Station -> trainer: retrain now (engineers only; the station checks the role)."""

    WHAT: ClassVar[str] = "retrain request"
    user: str
    time: float = field(metadata=bounded(0.0))
    line: str = ""  # "" = every line the trainer serves
    station: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("field 'user' (who asked) must not be empty")


@dataclass(frozen=True)
class LineSettings(Message):
    """Station -> edges (retained, per line): how the line uses its people, as an engineer set it."""

    WHAT: ClassVar[str] = "line settings"
    line: str
    mode: OperatingMode = "in-the-loop"
    hold_time_s: float = field(default=60.0, metadata=bounded(1.0, 86400.0))  # in the loop: wait this long ...
    fallback: Literal["PASS", "REJECT"] = "REJECT"  # ... then do this with a held part no one ruled
    lot: str = ""  # the lot the line is running now ("" : the edge's own [edge].lot)
    # The review band's width against the calibrated one, set by the station's review capacity
    # (station_ui.capacity): below 1 the band narrows from its top (more REJECTs, never more PASSes),
    # above 1 it widens on both sides (more reviews, fewer automatic decisions either way).
    band_scale: float = field(default=1.0, metadata=bounded(0.1, 3.0))
    user: str = ""
    time: float = field(default=0.0, metadata=bounded(0.0))

    def __post_init__(self) -> None:
        if not self.line:
            raise ValueError("field 'line' must not be empty")


@dataclass(frozen=True)
class PartResult(Message):
    """Edge -> anyone (``[mqtt].publish_results``): one part's decision, as the actuator got it."""

    WHAT: ClassVar[str] = "part result"
    part_id: str
    time: float  # capture time, seconds since the epoch
    score: float | None = field(metadata=bounded(0.0, 1.0))  # None: no score (a fail-safe before scoring)
    action: Action
    band: Band
    model: str
    latency_ms: float = field(metadata=bounded(0.0))
    fail_safe: str = ""


@dataclass(frozen=True)
class ModelCounts(Message):
    """One model version's counts since the edge started (edge.tally)."""

    WHAT: ClassVar[str] = "model counts"
    parts: int = field(default=0, metadata=bounded(0))
    actions: dict[str, int] = field(default_factory=dict, metadata=bounded(0))  # action -> parts
    reviews: dict[str, int] = field(default_factory=dict, metadata=bounded(0))  # reason -> reviews queued


@dataclass(frozen=True)
class ShadowCounts(Message):
    """A shadow candidate beside the live model: how often it would have decided the same."""

    WHAT: ClassVar[str] = "shadow counts"
    version: str
    parts: int = field(default=0, metadata=bounded(0))  # parts it scored
    agree: int = field(default=0, metadata=bounded(0))  # of those, the same action as the live model
    skipped: int = field(default=0, metadata=bounded(0))  # parts not scored: the shadow was behind the line


@dataclass(frozen=True)
class EdgeStatus(Message):
    """Edge -> station (retained, every ``status_every_s`` and as the last will): what one camera's edge is doing."""

    WHAT: ClassVar[str] = "edge status"
    state: Literal["starting", "running", "stopped", "offline"]  # offline: the broker's last will, or a clean stop
    line: str = ""
    camera: str = ""
    model: str = ""
    parts: int = field(default=0, metadata=bounded(0))
    triggered: int = field(default=0, metadata=bounded(0))
    actions: dict[str, int] = field(default_factory=dict, metadata=bounded(0))
    failsafe: dict[str, int] = field(default_factory=dict, metadata=bounded(0))  # reason -> parts
    reviews_queued: int = field(default=0, metadata=bounded(0))
    reviews_dropped: int = field(default=0, metadata=bounded(0))
    outbox_depth: int | None = field(default=None, metadata=bounded(0))  # None once stopped
    alarms: dict[str, str] = field(default_factory=dict)  # active alarm -> message
    time: float = 0.0
    since: float = 0.0
    by_model: dict[str, ModelCounts] = field(default_factory=dict)
    shadow: ShadowCounts | None = None  # a candidate scored beside the live model, when one runs
    mode: str = ""  # the line's operating mode the edge runs in (OPERATING_MODES; "" from older edges)
    band_scale: float = field(default=1.0, metadata=bounded(0.0, 10.0))  # the review band's width in use
    held: int = field(default=0, metadata=bounded(0))  # parts waiting in the hold lane for a verdict
    holds: dict[str, int] = field(default_factory=dict, metadata=bounded(0))  # released / rejected / fallback


# ------------------------------------------------------------------ trainer status
@dataclass(frozen=True)
class LineRates(Message):
    """One model's rates on the line's held-out parts (the gate's paired comparison)."""

    WHAT: ClassVar[str] = "line rates"
    false_reject_rate: float = field(metadata=bounded(0.0, 1.0))
    escape_rate: float = field(metadata=bounded(0.0, 1.0))
    review_rate: float = field(metadata=bounded(0.0, 1.0))


@dataclass(frozen=True)
class RateChange(Message):
    """Candidate minus current on one rate, with its paired interval."""

    WHAT: ClassVar[str] = "rate change"
    value: float = field(metadata=bounded(-1.0, 1.0))
    low: float = field(metadata=bounded(-1.0, 1.0))
    high: float = field(metadata=bounded(-1.0, 1.0))


@dataclass(frozen=True)
class LineComparison(Message):
    """Candidate and current scored on the same line parts, compared as a pair (training.gate)."""

    WHAT: ClassVar[str] = "line comparison"
    images: int = field(metadata=bounded(0))
    counts: dict[str, int]
    candidate: LineRates
    current: LineRates
    delta: dict[str, RateChange]  # rate name -> candidate minus current
    interval: float = field(metadata=bounded(0.0, 1.0))


@dataclass(frozen=True)
class GateOutcome(Message):
    """The gate's decision on one candidate, as the trainer's log and the dashboard explain it."""

    WHAT: ClassVar[str] = "gate outcome"
    promoted: bool
    reason: str
    rule_text: str = ""
    time: str = ""
    candidate: dict[str, Any] = field(default_factory=dict)  # the candidate's figures on the golden set
    current: dict[str, Any] | None = None
    golden: dict[str, Any] = field(default_factory=dict)  # images, counts, hash of the golden set
    rule: dict[str, Any] = field(default_factory=dict)
    line: LineComparison | None = None


@dataclass(frozen=True)
class CalibrationSummary(Message):
    """A candidate's calibration: the budgets, whether the labels certify them, what certifying would take."""

    WHAT: ClassVar[str] = "calibration summary"
    confidence: float | None = field(default=None, metadata=bounded(0.0, 1.0))
    escape_budget: float | None = field(default=None, metadata=bounded(0.0, 1.0))
    review_budget: float | None = field(default=None, metadata=bounded(0.0, 1.0))
    false_reject_budget: float | None = field(default=None, metadata=bounded(0.0, 1.0))
    certified: dict[str, bool] = field(default_factory=dict)  # budget name -> its upper bound is within it
    escape_rate_upper: float | None = field(default=None, metadata=bounded(0.0, 1.0))
    defects_to_certify: int = field(default=0, metadata=bounded(0))
    note: str = ""


@dataclass(frozen=True)
class TrainRun(Message):
    """One retrain: built, gated, and promoted or not; or the error that stopped it."""

    WHAT: ClassVar[str] = "train run"
    ok: bool
    error: str = ""
    version: str = ""
    promoted: bool = False
    reason: str = ""  # why it ran (verdicts, a request, the schedule)
    seconds: float = field(default=0.0, metadata=bounded(0.0))
    finished: float | None = None
    gate: GateOutcome | None = None
    calibration: CalibrationSummary | None = None
    announced: dict[str, Any] | None = None  # lines and manifest URL, when promoted


@dataclass(frozen=True)
class TrainStatus(Message):
    """Trainer -> all (retained): what the retraining server is doing, and its last run."""

    WHAT: ClassVar[str] = "trainer status"
    state: Literal["idle", "training", "gating"]
    reason: str = ""
    time: float = 0.0
    queued: str | None = None  # the reason of a run waiting for the current one
    runs: int = field(default=0, metadata=bounded(0))
    verdicts_since_last: int = field(default=0, metadata=bounded(0))
    current: str | None = None  # the live version
    last: TrainRun | None = None
    product: str = ""  # "" : the trainer's one product
    lines: tuple[str, ...] = ()  # the lines the product's models are announced to (() : not said)


# ------------------------------------------------------------------ dataset export (HTTP)
@dataclass(frozen=True)
class ExportItem(Message):
    """One labelled review in the station's export API (``GET /api/v1/export``), read by the trainer."""

    WHAT: ClassVar[str] = "export item"
    id: str = field(metadata=UUID)
    part_id: str
    line: str
    camera: str
    captured_at: float
    model: str
    score: float | None = field(metadata=bounded(0.0, 1.0))
    band: Band
    action_taken: Action
    reason: str
    verdict: VerdictName
    cursor: int = field(metadata=bounded(0))  # the final verdict's id: items come in this order
    image_url: str
    kind: str = ""
    user: str = ""
    verdict_time: float = 0.0
    station: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    width: int = field(default=0, metadata=bounded(0))
    height: int = field(default=0, metadata=bounded(0))


@dataclass(frozen=True)
class ExportPage(Message):
    """One page of the export API: its items and the cursor to ask from next."""

    WHAT: ClassVar[str] = "export page"
    items: tuple[ExportItem, ...]
    next_cursor: int = field(metadata=bounded(0))
