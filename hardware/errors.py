"""Errors of the physical seams.

    qcloop.errors.QcError
    └── HardwareError            a device could not be opened or used
        ├── CameraError          no frame, unreadable frame, or a stale frame
        ├── TriggerError         the trigger source failed
        └── ActuatorError        the actuator could not be reached or commanded
"""
from qcloop.errors import QcError


class HardwareError(QcError):
    """A device could not be opened or used."""


class CameraError(HardwareError):
    """No frame, an unreadable frame, or a stale frame."""


class TriggerError(HardwareError):
    """The trigger source failed."""


class ActuatorError(HardwareError):
    """The actuator could not be reached or commanded."""
