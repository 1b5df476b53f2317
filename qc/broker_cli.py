"""The ``qc broker`` command group: access control and passwords (qc.brokeradmin) and line bridges (qc.bridge)."""
from __future__ import annotations

import argparse

from qc import bridge, brokeradmin


def register(sub: argparse._SubParsersAction) -> None:
    bridge.register_bridge(brokeradmin.register(sub))
