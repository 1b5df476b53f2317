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
    captured_mono: float  # time.monotonic() at capture
    image: np.ndarray
    truth: PartTruth | None = None
    source: str = ""  # e.g. file name for replayed frames
    meta: dict = field(default_factory=dict, compare=False)
    triggered_mono: float | None = None  # time.monotonic() of the part's trigger, set by the pipeline

    @property
    def part_mono(self) -> float:
        """When the part arrived, for latency and deadlines: its trigger, or its capture if no trigger timed it."""
        return self.captured_mono if self.triggered_mono is None else self.triggered_mono


@runtime_checkable
class Camera(Protocol):
    """Delivers one frame per part. Raises hardware.errors.CameraError when it cannot:
    no frame, an unreadable frame, or a stale frame (the same image again, or one older
    than the camera's staleness limit). ``not_before`` is the part's trigger time
    (``time.monotonic()``): a camera that grabs continuously returns a frame grabbed at or
    after it, waiting up to its staleness limit, since an earlier frame shows the part
    before; a camera that grabs on demand captures after it anyway."""

    def capture(self, part_id: str, not_before: float | None = None) -> Frame: ...

    def close(self) -> None: ...


@runtime_checkable
class Trigger(Protocol):
    """Tells when each part is in front of the camera, one part per call, oldest first.

    Like a hardware trigger's event queue, parts that arrived while nobody was waiting
    are kept, each with its own arrival time, so the pipeline's deadline runs from
    when the part arrived, not from when it was read. A trigger that lost parts (its
    queue overflowed) counts them in ``missed``, and each still gets a decision.
    """

    def wait(self, timeout: float) -> float | None:
        """The ``time.monotonic()`` at which the next part arrived, or None when ``timeout`` passes first."""
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

    def release(self, part_id: str, action: str) -> None:
        """A part actuated HOLD leaves the hold lane: action PASS (released) or REJECT."""
        ...

    def close(self) -> None: ...
