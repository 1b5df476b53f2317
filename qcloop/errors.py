"""Base errors shared by every part of qcloop.

    QcError                      anything qcloop raises on purpose
    ├── ConfigError              a config file is missing, unreadable or invalid (names file and key)
    ├── PortError                a port a command would listen on cannot be opened (names it and its key)
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


class PortError(QcError):
    """A port a command would listen on is taken or not allowed; the message names it and how to change it."""


def port_error(what: str, host: str, port: int, change: str, exc: OSError) -> PortError:
    """The PortError for ``exc`` raised while ``what`` bound ``host:port``; ``change`` says how to pick another."""
    import errno

    why = (
        "is already in use (another process listens there)"
        if exc.errno == errno.EADDRINUSE
        else f"cannot be opened: {exc}"
    )
    return PortError(f"{what}: {host}:{port} {why}; {change}")
