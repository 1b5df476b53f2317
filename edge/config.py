"""The edge box's configuration: one TOML file, validated at start (see config/edge.example.toml).

Loaded with qcloop.configfile, so an unknown key, a wrong type or an out-of-range
value stops the edge with a message naming the file and the key. Paths are resolved
relative to the config file. Secrets are never in the file: the MQTT password is
read from an environment variable or a file named here (qcloop.mqttconn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hardware.config import ActuatorConfig, CameraConfig, TriggerConfig
from qcloop import configfile
from qcloop.configfile import check_range, field_error
from qcloop.mqttconn import BrokerSettings


@dataclass(frozen=True)
class EdgeSection:
    line: str = "line1"
    camera: str = "cam1"
    data_dir: Path = Path("var/edge")  # outbox, local model registry
    journal: bool = False  # append every decision and stored review to <data_dir>/decisions.jsonl (audits)
    lot: str = ""  # the production lot, sent with each review (the station's line settings may set it instead)

    def __post_init__(self) -> None:
        for name in ("line", "camera"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/+# "):
                raise field_error(name, f"must be a non-empty name without '/', '+', '#' or spaces, got {value!r}")


@dataclass(frozen=True)
class ModelSection:
    registry: Path | None = None  # None (or ""): <data_dir>/models
    seed_builtin: bool = True  # install the built-in model when the registry is empty
    threads: int = 1  # onnxruntime intra-op threads; 1 leaves the other core to capture
    spinning: bool = False  # busy-wait threads burn a core between parts
    opencv_threads: int = 1  # OpenCV's pool would compete with inference for the other core
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h in pixels; overrides the manifest
    warmup: int = 3
    public_key: Path | None = None  # the trainer's Ed25519 public key: new models must carry its signature
    allow_unsigned: bool = False  # accept announced models without a signature (never in production)
    follow_registry_s: float = 1.0  # how often a running edge checks CURRENT (e.g. after qc edge rollback)

    def __post_init__(self) -> None:
        check_range("follow_registry_s", self.follow_registry_s, 0.05, 60)
        check_range("threads", self.threads, 1, 64)
        check_range("opencv_threads", self.opencv_threads, 1, 64)
        check_range("warmup", self.warmup, 0, 1000)
        if self.roi is not None and (min(self.roi[:2]) < 0 or min(self.roi[2:]) <= 0):
            raise field_error("roi", f"must be [x, y, w, h] with x, y >= 0 and w, h > 0, got {list(self.roi)}")


@dataclass(frozen=True)
class DecisionSection:
    uncertain_action: Literal["HOLD", "REJECT"] = "HOLD"
    audit_rate: float = 0.01
    deadline_ms: float = 50.0  # trigger to decision; a later decision fails safe (REJECT)
    queue_size: int = 8  # frames waiting for inference; a full queue fails the part safe
    pass_below: float | None = None  # overrides the manifest's thresholds when set
    reject_above: float | None = None
    seed: int | None = None  # audit sampling seed (None: random)
    shadow_review_rate: float = 0.1  # share of shadow-model disagreements sent for review (as audits)
    # The line's operating mode (edge.decision) until the station's line settings arrive, which replace
    # these three: in-the-loop holds an uncertain part; with hold_time_s > 0 the edge keeps it in the hold
    # lane until a verdict releases (PASS) or rejects it, or hold_time_s passes and hold_fallback applies.
    # 0: the edge does not track held parts (the PLC's hold lane decides on its own).
    mode: Literal["in-the-loop", "on-the-loop", "out-of-the-loop"] = "in-the-loop"
    hold_time_s: float = 0.0
    hold_fallback: Literal["PASS", "REJECT"] = "REJECT"

    def __post_init__(self) -> None:
        check_range("hold_time_s", self.hold_time_s, 0.0, 86400.0)
        check_range("audit_rate", self.audit_rate, 0.0, 1.0)
        check_range("shadow_review_rate", self.shadow_review_rate, 0.0, 1.0)
        check_range("deadline_ms", self.deadline_ms, 0.0, 60_000.0, lo_open=True)
        check_range("queue_size", self.queue_size, 1, 10_000)
        for name in ("pass_below", "reject_above"):
            value = getattr(self, name)
            if value is not None:
                check_range(name, value, 0.0, 1.0)
        if (self.pass_below is None) != (self.reject_above is None):
            raise field_error("pass_below", "set both pass_below and reject_above, or neither")
        if self.pass_below is not None and self.reject_above is not None and self.pass_below > self.reject_above:
            raise field_error("pass_below", f"must be <= reject_above ({self.reject_above}), got {self.pass_below}")


@dataclass(frozen=True)
class OutboxSection:
    max_bytes: int = 512 * 1024 * 1024
    resend_after_s: float = 10.0  # a review not acknowledged by the station by then is sent again
    max_in_flight: int = 64
    jpeg_quality: int = 90
    queue_size: int = 64  # reviews waiting to be written; beyond it they are counted as dropped

    def __post_init__(self) -> None:
        check_range("max_bytes", self.max_bytes, 1024 * 1024)
        check_range("resend_after_s", self.resend_after_s, 0.1, 3600)
        check_range("max_in_flight", self.max_in_flight, 1, 10_000)
        check_range("jpeg_quality", self.jpeg_quality, 10, 100)
        check_range("queue_size", self.queue_size, 1, 100_000)


@dataclass(frozen=True)
class MqttSection(BrokerSettings):
    enabled: bool = True
    publish_results: bool = True
    status_every_s: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("status_every_s", self.status_every_s, 0.1, 3600)


@dataclass(frozen=True)
class MetricsSection:
    host: str = "127.0.0.1"
    port: int = 9108  # 0 = no metrics/health endpoint

    def __post_init__(self) -> None:
        check_range("port", self.port, 0, 65535)


@dataclass(frozen=True)
class EdgeConfig:
    edge: EdgeSection = field(default_factory=EdgeSection)
    model: ModelSection = field(default_factory=ModelSection)
    decision: DecisionSection = field(default_factory=DecisionSection)
    camera: CameraConfig = field(default_factory=CameraConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    actuator: ActuatorConfig = field(default_factory=ActuatorConfig)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)

    @property
    def registry_dir(self) -> Path:
        return self.model.registry if self.model.registry is not None else self.edge.data_dir / "models"

    @property
    def outbox_dir(self) -> Path:
        return self.edge.data_dir / "outbox"

    @property
    def journal_path(self) -> Path:
        return self.edge.data_dir / "decisions.jsonl"

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"qc-edge-{self.edge.line}-{self.edge.camera}"


def load_config(path: str | Path) -> EdgeConfig:
    """Load and validate an edge config; relative paths are relative to the file (qcloop.configfile)."""
    return configfile.load(path, EdgeConfig)
