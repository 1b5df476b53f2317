"""How every long-running ``qc`` process stops: Ctrl-C or SIGTERM sets one event, the caller stops in order.

A service manager (systemd, a container runtime) sends SIGTERM; a person at a terminal presses
Ctrl-C. Both only set the event, never raise into whatever the main thread is doing, so the
caller finishes the part in hand, flushes and closes its parts in order, and exits 0.
"""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (installs the handlers; call from the main thread)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
