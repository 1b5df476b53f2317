"""Waiting on readiness in tests: poll a condition against a deadline, never sleep a fixed time."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """True as soon as predicate() holds; False if it still does not when the deadline passes.

    The timeout only matters when something is broken: a passing test returns at readiness.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
