"""The seams' contracts: what flows (Frame, PartTruth) and what each device does.

Every backend of a seam implements the same Protocol, so the pipeline never knows
whether it drives a simulator or a real device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PartTruth:
    """Ground truth of a generated (or labelled replayed) part."""

    defect: str | None = None  # pit | crack | burr | chip | None for a good part
    artefacts: tuple[str, ...] = ()  # glare | streak | shadow | dust
    boxes: tuple[tuple[int, int, int, int], ...] = ()  # x, y, w, h of the defect(s)

    @property
    def is_defect(self) -> bool:
        return self.defect is not None


@dataclass(frozen=True)
class Frame:
    """One captured image of one part. ``image`` is HxW uint8 (grey) or HxWx3 uint8 (BGR)."""

    part_id: str
    captured_at: float  # wall clock, seconds since the epoch
    captured_mono: float  # time.monotonic() at capture, for latency and deadlines
    image: np.ndarray
    truth: PartTruth | None = None
    source: str = ""  # e.g. file name for replayed frames
    meta: dict = field(default_factory=dict, compare=False)


@runtime_checkable
class Camera(Protocol):
    """Delivers one frame per part. Raises hardware.errors.CameraError when it cannot:
    no frame, an unreadable frame, or a stale frame (the same image again, or one older
    than the camera's staleness limit)."""

    def capture(self, part_id: str) -> Frame: ...

    def close(self) -> None: ...


@runtime_checkable
class Trigger(Protocol):
    """Tells when the next part is in front of the camera."""

    def wait(self, timeout: float) -> bool:
        """Block until the next part arrives (True) or the timeout passes (False)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Actuator(Protocol):
    """Carries out the decision on the line. Must not block the caller for long: a
    driver that talks to slow hardware queues the command and reports failures through
    ``faults`` (a count the pipeline exports and alarms on)."""

    faults: int

    def actuate(self, part_id: str, action: str) -> None:
        """action is PASS, HOLD or REJECT."""
        ...

    def close(self) -> None: ...
