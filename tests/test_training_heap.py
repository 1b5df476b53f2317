"""The trainer keeps freed memory in the process (training.heap) where the C library allows it."""
import platform
import sys

import pytest

from training import heap


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_keeps_freed_blocks_once_asked_and_asking_again_is_harmless():
    assert heap.keep_freed_memory() is True
    assert heap.keep_freed_memory() is True  # once per process; the second call changes nothing
    assert heap._mallopt() is True  # the settings themselves are accepted, not just remembered


def test_without_linux_it_does_nothing(monkeypatch):
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap._mallopt() is False
