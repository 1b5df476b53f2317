"""Shared fixtures: a real Mosquitto broker on a free loopback port per test."""
from __future__ import annotations

import pytest

from qc.broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path_factory):
    """A fresh mosquitto for one test, started with a config written here, ready on return."""
    b = MosquittoBroker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path_factory):
    """Make brokers with options (persistence, extra config lines); all are stopped afterwards."""
    made: list[MosquittoBroker] = []

    def make(**kwargs) -> MosquittoBroker:
        b = MosquittoBroker(tmp_path_factory.mktemp("broker"), **kwargs)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop()
