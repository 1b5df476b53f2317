"""Durable file writes shared by every part: a reader sees the old file or the new one, never a torn one.

``write_durably`` writes a temporary file in the same directory, fsyncs it and renames it
over the target. Making the rename itself survive a power cut needs the directory fsynced
too (``fsync_dir``): ``write_atomically`` does both, for a file written on its own; a
caller that renames a batch fsyncs the directory once after it. ``fsync_dir`` raises
when the disk cannot, so a caller never acknowledges what may not have landed.
Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Temp file beside ``path`` (unique per call, so concurrent writers never clash), fsync, os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomically(path: Path, data: bytes) -> None:
    """``write_durably`` and then ``fsync_dir`` of its folder: the new file survives a power cut once this returns."""
    write_durably(path, data)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make renames into ``path`` durable; raises OSError when the disk cannot (callers must not ack then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
