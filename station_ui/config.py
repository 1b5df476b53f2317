"""The station's configuration: one TOML file, validated at start (see station.example.toml).

Loaded with qcloop.configfile, so an unknown key, a wrong type or an out-of-range
value stops the station with a message naming the file and the key. Paths are
relative to the config file. The Flask secret key is never in the file: it is read
from a file named here (created with owner-only rights when missing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qcloop import configfile, wire
from qcloop.configfile import check_range, field_error
from qcloop.errors import WireError
from qcloop.mqttconn import BrokerSettings


@dataclass(frozen=True)
class StationSection:
    name: str = "station1"  # recorded with every verdict and audit entry
    data_dir: Path = Path("var/station")  # station.db and images/
    production: bool = False  # refuses default passwords, secure cookies
    secret_key_file: Path | None = None  # None (or ""): <data_dir>/secret_key
    # The lines this station serves when a plant has several stations on one broker: it subscribes to,
    # stores and acknowledges only their reviews, and sends only their settings. Empty: every line.
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise field_error("name", f"must be 1..64 characters, got {self.name!r}")
        try:
            wire.check_line_names(self.lines)
        except WireError as exc:
            raise field_error("lines", str(exc)) from exc

    def serves(self, line: str) -> bool:
        """Whether this station stores, acknowledges and sets the reviews and modes of ``line``."""
        return not self.lines or line in self.lines


@dataclass(frozen=True)
class MqttSection(BrokerSettings):
    client_id: str = "qc-station-1"  # fixed, so the broker keeps the session's QoS 1 queue
    enabled: bool = True
    subscribe_status: bool = True  # edge and trainer status (counters, models, gate) for the dashboard
    max_review_bytes: int = wire.MAX_ENVELOPE_BYTES
    queue_size: int = 1000  # received reviews waiting for the disk writer

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("queue_size", self.queue_size, 1, 1_000_000)
        check_range("max_review_bytes", self.max_review_bytes, 1024, wire.MAX_ENVELOPE_BYTES)
        if not self.client_id:
            raise field_error("client_id", "must not be empty (a persistent session needs a fixed id)")


@dataclass(frozen=True)
class WebSection:
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 16  # waitress threads; each open review screen holds one for its event stream
    streams_per_user: int = 2  # open review screens per person; a new one ends that person's oldest
    secure_cookies: bool | None = None  # None: on in production
    idle_logout_s: float = 900.0
    login_attempts: int = 5  # failed logins per user and address ...
    login_window_s: float = 300.0  # ... within this window, then 429
    undo_window_s: float = 10.0

    def __post_init__(self) -> None:
        check_range("port", self.port, 0, 65535)
        check_range("threads", self.threads, 2, 256)
        check_range("streams_per_user", self.streams_per_user, 1, 64)
        check_range("idle_logout_s", self.idle_logout_s, 10.0, 86400.0)
        check_range("login_attempts", self.login_attempts, 1, 1000)
        check_range("login_window_s", self.login_window_s, 1.0, 86400.0)
        check_range("undo_window_s", self.undo_window_s, 0.0, 600.0)


@dataclass(frozen=True)
class ReviewSection:
    # Known-answer items (station_ui.known_answers): this share of the items a reviewer is shown are
    # settled reviews served again, looking like live ones; they measure the reviewer and never reach a
    # line or the training set. 0 (the default): none; a plant turns it on (station.example.toml: 0.03).
    known_answer_rate: float = 0.0
    known_answer_min_accuracy: float = 0.9  # a reviewer below this on known answers is flagged ...
    known_answer_min_answers: int = 10  # ... once they have answered at least this many
    # Review capacity (station_ui.capacity): items an hour this station's reviewers can rule on; the
    # lines' review band narrows (never passing more) when more arrive and widens when it is quiet. 0: off.
    capacity_per_hour: float = 0.0
    capacity_check_s: float = 60.0

    def __post_init__(self) -> None:
        check_range("capacity_per_hour", self.capacity_per_hour, 0.0, 1e6)
        check_range("capacity_check_s", self.capacity_check_s, 0.1, 3600.0)
        check_range("known_answer_rate", self.known_answer_rate, 0.0, 0.5)
        check_range("known_answer_min_accuracy", self.known_answer_min_accuracy, 0.0, 1.0)
        check_range("known_answer_min_answers", self.known_answer_min_answers, 1, 100000)


@dataclass(frozen=True)
class ExplainSection:
    # Where the model looked (the review screen's heat map): the retraining server's model URL, whose
    # POST /explain/<version> draws it, and the file holding the token it asks for. "": no heat maps.
    url: str = ""
    token_file: Path | None = None
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise field_error("url", f"must be an http(s) URL, got {self.url!r}")
        if self.url and self.token_file is None:
            raise field_error("token_file", "a heat map URL needs the token file the retraining server checks")
        check_range("timeout_s", self.timeout_s, 0.1, 600.0)


@dataclass(frozen=True)
class StationConfig:
    station: StationSection = field(default_factory=StationSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    web: WebSection = field(default_factory=WebSection)
    review: ReviewSection = field(default_factory=ReviewSection)
    explain: ExplainSection = field(default_factory=ExplainSection)
    critical_lines: tuple[str, ...] = ()  # lines with the two-person rule for "real fault"

    @property
    def max_streams(self) -> int:
        """Event streams the station holds open at once: the waitress threads but four, kept for pages,
        verdicts, /healthz and logins."""
        return max(1, self.web.threads - 4)

    @property
    def data_dir(self) -> Path:
        return self.station.data_dir

    @property
    def db_path(self) -> Path:
        return self.data_dir / "station.db"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def secret_key_path(self) -> Path:
        p = self.station.secret_key_file
        return self.data_dir / "secret_key" if p is None else p

    @property
    def secure_cookies(self) -> bool:
        return self.station.production if self.web.secure_cookies is None else self.web.secure_cookies


def load_config(path: str | Path) -> StationConfig:
    """Load and validate a station config; relative paths are relative to the file (qcloop.configfile)."""
    return configfile.load(path, StationConfig)


def config_for(data_dir: Path, **sections: object) -> StationConfig:
    """A config for a data directory (tests, bench): sections as dicts, validated the same way."""
    raw = {k: v for k, v in sections.items()}
    raw.setdefault("station", {})
    raw["station"] = {**raw["station"], "data_dir": str(data_dir)}  # type: ignore[dict-item]
    return configfile.from_dict(raw, StationConfig, source="<station config>")
