"""Config tables of the physical seams: ``[camera]``, ``[trigger]``, ``[actuator]``.

Frozen dataclasses read by ``qcloop.configfile`` (unknown keys are refused there);
``type`` picks the backend in ``hardware.factory``. Range checks name the bad key.
They do no I/O: whether a path exists is checked when the device opens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qcloop.configfile import check_range, field_error


@dataclass(frozen=True)
class CameraConfig:
    type: Literal["synthetic", "folder", "video", "opencv"] = "synthetic"
    path: Path | None = None  # folder: image folder (ok/ and def/ subfolders give labels); video: file
    source: str = ""  # opencv: USB index ("0"), RTSP/HTTP URL, GStreamer pipeline or file
    seed: int = 0  # synthetic: which line of parts
    width: int = 1280
    height: int = 1024
    defect_rate: float = 0.1
    artefact_rate: float = 0.2
    prerender: int = 0  # synthetic: render N parts up front and cycle (benchmarks)
    loop: bool = True  # folder/video: start again at the end
    stale_after_s: float = 0.5  # opencv: a frame older than this is stale
    repeat_limit: int = 3  # the same image this many times in a row is a frozen camera; 0: no check

    def __post_init__(self) -> None:
        if self.type in ("folder", "video") and self.path is None:
            raise field_error("path", f"camera type {self.type!r} needs a path")
        if self.type == "opencv" and not self.source.strip():
            raise field_error("source", "camera type 'opencv' needs a source (USB index, URL or pipeline)")
        check_range("width", self.width, 64, 16384)
        check_range("height", self.height, 64, 16384)
        check_range("defect_rate", self.defect_rate, 0.0, 1.0)
        check_range("artefact_rate", self.artefact_rate, 0.0, 1.0)
        check_range("prerender", self.prerender, 0, 10000)
        check_range("stale_after_s", self.stale_after_s, 0.0, 60.0, lo_open=True)
        if self.repeat_limit != 0:
            check_range("repeat_limit", self.repeat_limit, 2, 1000)


@dataclass(frozen=True)
class TriggerConfig:
    type: Literal["software", "gpio"] = "software"
    rate_hz: float = 20.0  # software: parts per second; 0 = as fast as they are inspected
    chip: str = "/dev/gpiochip0"
    line: int = 0
    edge: Literal["rising", "falling", "both"] = "rising"

    def __post_init__(self) -> None:
        check_range("rate_hz", self.rate_hz, 0.0, 10000.0)
        check_range("line", self.line, 0)
        if self.type == "gpio" and not self.chip:
            raise field_error("chip", "trigger type 'gpio' needs a chip, e.g. /dev/gpiochip0")


@dataclass(frozen=True)
class ActuatorConfig:
    type: Literal["simulated", "modbus", "gpio"] = "simulated"
    host: str = "127.0.0.1"  # modbus: the PLC
    port: int = 502
    unit: int = 1  # modbus device (unit / slave) id
    reject_coil: int = 0
    hold_coil: int = -1  # -1: no hold lane coil
    pulse_ms: int = 0  # 0: coils are levels; > 0: pulse length (gpio: default 50 when 0)
    timeout_s: float = 1.0
    # modbus, part tracking: holding registers (sequence high, sequence low, action 1/2/3) per part,
    # and the result-ready / PLC-acknowledge coils of the handshake (-1: not used).
    result_register: int = -1
    ready_coil: int = -1
    ack_coil: int = -1
    handshake_timeout_s: float = 1.0
    chip: str = "/dev/gpiochip0"
    line: int = 0

    def __post_init__(self) -> None:
        if self.type == "modbus" and not self.host:
            raise field_error("host", "actuator type 'modbus' needs a host")
        check_range("port", self.port, 1, 65535)
        check_range("unit", self.unit, 0, 255)
        check_range("reject_coil", self.reject_coil, 0, 65535)
        check_range("hold_coil", self.hold_coil, -1, 65535)
        if self.hold_coil == self.reject_coil:
            raise field_error("hold_coil", f"must differ from reject_coil ({self.reject_coil})")
        check_range("pulse_ms", self.pulse_ms, 0, 60000)
        for name in ("result_register", "ready_coil", "ack_coil"):
            check_range(name, getattr(self, name), -1, 65535)
        if (self.ready_coil < 0) != (self.ack_coil < 0) or (self.ready_coil >= 0 and self.result_register < 0):
            raise field_error("ready_coil", "the handshake needs result_register, ready_coil and ack_coil together")
        check_range("handshake_timeout_s", self.handshake_timeout_s, 0.0, 60.0, lo_open=True)
        check_range("timeout_s", self.timeout_s, 0.0, 60.0, lo_open=True)
        check_range("line", self.line, 0)


@dataclass(frozen=True)
class HardwareConfig:
    """The three seams together, for tools that configure only the hardware."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    actuator: ActuatorConfig = field(default_factory=ActuatorConfig)
