"""Base errors shared by every part of qcloop.

    QcError                      anything qcloop raises on purpose
    ├── ConfigError              a config file is missing, unreadable or invalid (names file and key)
    └── WireError                an MQTT payload breaks the wire contract (qcloop.wire)

Each package adds its own branch in its own errors.py (edge.errors, models.errors,
hardware.errors, station_ui.errors, training.errors); library errors are translated
at the boundary with ``raise ... from exc``.
"""


class QcError(Exception):
    """Anything qcloop raises on purpose; the CLI prints it without a traceback."""


class ConfigError(QcError):
    """A config file is missing, unreadable or invalid. The message names the file and key."""


class WireError(QcError):
    """An MQTT payload breaks the wire contract."""
