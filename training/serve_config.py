"""The retraining server's config (``qc train serve --config FILE``): one validated TOML file.

Sections: ``[data]`` (the data folder, seed folders, input size, golden set), ``[station]``
(the export API of one station it syncs verdicts from) and ``[[sources]]`` (one table per
further station: a plant's trainer gathers the verdicts of every line's station, each with
its own token), ``[mqtt]`` (broker, lines it announces to),
``[keys]`` (the signing key), ``[gate]`` (the promotion rule and the line's held-out parts),
``[train]`` (budgets, epochs, warm start), ``[triggers]`` (verdict count, schedule) and
``[serve]`` (the model HTTP server). Relative paths are relative to the file
(qcloop.configfile). Config objects do no I/O.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from qcloop import configfile, wire
from qcloop.configfile import check_range, field_error, first_repeated
from qcloop.errors import ConfigError, WireError
from qcloop.mqttconn import BrokerSettings
from training.gate import GateRule

_frozen = dataclasses.dataclass(frozen=True)


@_frozen
class DataSection:
    dir: Path = Path("var/trainer")  # registry, golden set, station items, gate log
    seed_folders: tuple[Path, ...] = ()
    synthetic: int = 0  # also train on this many synthetic parts
    synthetic_seed: int = 0
    size: int = 128  # model input side in pixels
    golden_size: int = 200  # images frozen into the golden set at the first build
    roi: tuple[float, float, float, float] | None = None  # the part's region of a full frame, as fractions

    def __post_init__(self) -> None:
        check_range("size", self.size, 32, 1024)
        check_range("golden_size", self.golden_size, 2)
        check_range("synthetic", self.synthetic, 0)


@_frozen
class StationSection:
    url: str = ""  # "" = no station source (seed folders only)
    token_env: str = "QC_STATION_TOKEN"  # the variable holding the export API token (never the token here)
    page: int = 500

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise field_error("url", f"must start with http:// or https://, got {self.url!r}")
        check_range("page", self.page, 1, 1000)


#: A source's or a product's name becomes a folder of the trainer's data directory: letters, digits, '.', '_', '-'.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@_frozen
class SourceSection:
    """One station's export API (a ``[[sources]]`` table): where the trainer gathers that station's verdicts.

    The token is never in the file: ``token_env`` names an environment variable holding it, or
    ``token_file`` a file (owner-only) that does. Items are kept under ``<data>/sources/<name>/``.
    """

    name: str
    url: str
    token_env: str = ""
    token_file: Path | None = None
    page: int = 500

    def __post_init__(self) -> None:
        if not _FOLDER_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise field_error("name", f"must be 1-64 letters, digits, '.', '_' or '-' (it names a folder), "
                                      f"got {self.name!r}")
        if not self.url.startswith(("http://", "https://")):
            raise field_error("url", f"source {self.name!r}: must start with http:// or https://, got {self.url!r}")
        if bool(self.token_env) == (self.token_file is not None):
            raise field_error("token_env", f"source {self.name!r}: set token_env or token_file (one of them)")
        check_range("page", self.page, 1, 1000)

    def token(self) -> str:
        """The export API token, read when the trainer starts (as broker passwords are)."""
        if self.token_env:
            value = os.environ.get(self.token_env, "")
            if not value:
                raise ConfigError(f"[[sources]] {self.name!r}: token_env names {self.token_env!r}, which is not set")
            return value
        try:
            value = self.token_file.read_text().strip() if self.token_file is not None else ""
        except OSError as exc:
            raise ConfigError(f"[[sources]] {self.name!r}: token_file {self.token_file}: {exc}") from exc
        if not value:
            raise ConfigError(f"[[sources]] {self.name!r}: token_file {self.token_file} is empty")
        return value


@_frozen
class ProductSection:
    """One product of a plant's trainer (a ``[[products]]`` table): a set of lines sharing one model.

    Each product has its own dataset (its lines' verdicts from every source, its own seed
    folders), golden set, model lineage and registry under ``<data>/products/<name>/``, and
    its models are announced to its lines only.
    """

    name: str
    lines: tuple[str, ...]
    seed_folders: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not _FOLDER_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise field_error("name", f"must be 1-64 letters, digits, '.', '_' or '-' (it names a folder and a "
                                      f"topic level), got {self.name!r}")
        if not self.lines:
            raise field_error("lines", f"product {self.name!r}: list the lines that share its model")
        try:
            wire.check_line_names(self.lines)
        except WireError as exc:
            raise field_error("lines", f"product {self.name!r}: {exc}") from exc


@_frozen
class TrainerMqtt(BrokerSettings):
    client_id: str = "qc-trainer"
    lines: tuple[str, ...] = ("line1",)  # model topics to announce on (with [[products]]: each product's lines)


@_frozen
class KeysSection:
    private: Path = Path("keys/trainer.key")  # made by `qc train keygen`; mode 0600
    public: Path = Path("keys/trainer.pub")  # copy this to each edge ([model].public_key)


@_frozen
class GateSection:
    escape_tolerance: float = 0.0
    review_weight: float = 0.25
    escape_budget: float = 0.005
    escape_weight: float = 10.0
    # The line's own parts in the gate (training.gate): the most recent station verdicts, this share of
    # them (at most line_max), held out from training; none below line_min verdicts.
    line_share: float = 0.2
    line_max: int = 400
    line_min: int = 20
    line_tolerance: float = 0.0
    # true: refuse on cost only when the paired interval says the candidate is not better (training.gate)
    promote_unless_worse: bool = False

    def __post_init__(self) -> None:
        for name in ("escape_tolerance", "review_weight", "escape_budget", "escape_weight", "line_tolerance"):
            check_range(name, getattr(self, name), 0.0)
        check_range("line_share", self.line_share, 0.0, 0.9)
        check_range("line_max", self.line_max, 0)
        check_range("line_min", self.line_min, 1)

    def rule(self) -> GateRule:
        return GateRule(self.escape_tolerance, self.review_weight, self.escape_budget, self.escape_weight,
                        self.line_tolerance, self.promote_unless_worse)


@_frozen
class TrainSection:
    # Detector family (training.family); "auto": the running model's own family (so a retrain can
    # fine-tune it), or for a first model the one training.defaults picks for the data's size.
    family: str = "auto"
    epochs: int = 14
    seed: int = 0
    val: float = 0.15
    escape_budget: float = 0.005
    review_budget: float = 0.05
    false_reject_budget: float = 0.01
    first_version: str = "1.0.0"  # used when the registry is empty; must be newer than what edges run
    warm_start: bool = True  # fine-tune the current model (training.warmstart) instead of starting afresh
    fine_tune_epochs: int = 4
    fine_tune_lr: float = 1e-3

    def __post_init__(self) -> None:
        from training.family import FAMILIES

        if self.family != "auto" and self.family not in FAMILIES:
            raise field_error("family", f"must be auto or one of {', '.join(FAMILIES)}, got {self.family!r}")
        check_range("epochs", self.epochs, 1)
        check_range("fine_tune_epochs", self.fine_tune_epochs, 1)
        check_range("fine_tune_lr", self.fine_tune_lr, 1e-6, 1.0)
        check_range("val", self.val, 0.01, 0.9)


@_frozen
class TriggersSection:
    verdicts: int = 200  # retrain after this many new verdicts (0 = off)
    every_hours: float = 0.0  # retrain on a schedule (0 = off)
    on_request: bool = True  # retrain when the station asks

    def __post_init__(self) -> None:
        check_range("verdicts", self.verdicts, 0)
        check_range("every_hours", self.every_hours, 0.0)


@_frozen
class ServeSection:
    host: str = "0.0.0.0"
    port: int = 8765
    public_url: str = ""  # the URL edges use to reach this server ("" = http://host:port)
    # A file holding the token the station sends to POST /explain/<version> (training.explain: where the
    # model looked, for the review screen). None: the endpoint is off.
    explain_token_file: Path | None = None

    def __post_init__(self) -> None:
        check_range("port", self.port, 0, 65535)


@_frozen
class ServeConfig:
    data: DataSection = dataclasses.field(default_factory=DataSection)
    station: StationSection = dataclasses.field(default_factory=StationSection)
    sources: tuple[SourceSection, ...] = ()
    products: tuple[ProductSection, ...] = ()  # none: one product, [mqtt].lines, data in [data].dir
    mqtt: TrainerMqtt = dataclasses.field(default_factory=TrainerMqtt)
    keys: KeysSection = dataclasses.field(default_factory=KeysSection)
    gate: GateSection = dataclasses.field(default_factory=GateSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    triggers: TriggersSection = dataclasses.field(default_factory=TriggersSection)
    serve: ServeSection = dataclasses.field(default_factory=ServeSection)

    def __post_init__(self) -> None:
        twice = first_repeated(s.name for s in self.sources)
        if twice is not None:
            raise field_error("sources", f"two sources are named {twice!r}; each needs its own name")
        urls = [s.url.rstrip("/") for s in self.sources] + ([self.station.url.rstrip("/")] if self.station.url else [])
        again = first_repeated(urls)
        if again is not None:
            raise field_error("sources", f"the station {again} is listed twice ([station] or [[sources]])")
        twice = first_repeated(p.name for p in self.products)
        if twice is not None:
            raise field_error("products", f"two products are named {twice!r}; each needs its own name")
        owner: dict[str, str] = {}
        for p in self.products:
            for line in p.lines:
                if line in owner:
                    raise field_error("products", f"line {line!r} is in products {owner[line]!r} and {p.name!r}; "
                                                  "a line runs one product's model")
                owner[line] = p.name
        if self.products and self.data.seed_folders:
            raise field_error("data", "with [[products]], seed folders belong to each product "
                                      "([[products]].seed_folders), not to [data]")
        if self.products and self.data.synthetic:
            raise field_error("data", "with [[products]], [data].synthetic has no product to train; set it to 0")


def load_config(path: str | Path) -> ServeConfig:
    """Read the TOML config; relative paths are relative to the config file's folder (qcloop.configfile)."""
    return configfile.load(path, ServeConfig)
