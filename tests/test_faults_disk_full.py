"""Fault scenario 5: the station's disk, then the edge's disk, fill up under a running line, then space returns.

Each side's data directory is a small tmpfs mounted by the test (the tests run as
root; without the right to mount, the test is skipped and says why), filled to
the last page by a filler file. The edge streams parts and reviews into the real
station ingest over a real broker. Expected, in order:

* station disk full: the station stores nothing and acknowledges nothing, raises
  its "storage" alarm (health, event hub); the edge keeps every review in its outbox;
* edge disk full too: the edge still decides every part; reviews it cannot keep are
  refused whole, counted as dropped, and alarmed (status, metrics);
* space returns: both alarms clear, everything kept is delivered, lost == 0;
* throughout: no torn JPEG or leftover temporary file on either disk, and both
  SQLite databases pass ``PRAGMA integrity_check``.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from station_ui.config import config_for
from station_ui.events import EventHub
from station_ui.ingest import Ingest
from station_ui.store import Store
from tests.fault_support import StreamingEdge, drain, station_rows, tally
from tests.waiting import wait_until

DISK_KB = 8 * 1024  # room for a SQLite WAL between checkpoints plus some images


@pytest.fixture
def small_disk(tmp_path):
    """mount(name) -> a fresh tmpfs of DISK_KB under tmp_path; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("filling a disk needs a small tmpfs: run as root (or with CAP_SYS_ADMIN) with mount(8)")
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem has no page left; return it."""
    path = disk / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return path


def assert_no_torn_files(image_dir: Path) -> int:
    """Every file is a complete JPEG (SOI ... EOI) and no temporary file was left behind."""
    files = [p for p in image_dir.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix != ".jpg"], files
    for p in files:
        data = p.read_bytes()
        assert data[:2] == b"\xff\xd8" and data.rstrip(b"\0")[-2:] == b"\xff\xd9", f"torn JPEG {p}"
    return len(files)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def alarm_metric(edge: StreamingEdge, name: str) -> float:
    body = edge.service.metrics.exposition().decode()
    m = re.search(rf'^qc_alarm\{{name="{name}"\}} (\S+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


def test_full_disks_lose_nothing_tear_nothing_raise_alarms_and_recover(tmp_path, broker, small_disk):
    edge_disk, station_disk = small_disk("edge-disk"), small_disk("station-disk")
    scfg = config_for(station_disk, mqtt={"host": broker.host, "port": broker.port, "client_id": "st-disk"})
    Store(scfg.db_path).close()
    hub = EventHub()
    events = hub.subscribe()
    ingest = Ingest(scfg, hub).start()
    edge = StreamingEdge(tmp_path / "edge", broker, rate_hz=40.0, data_dir=edge_disk)
    svc = edge.service
    try:
        edge.start()
        assert wait_until(lambda: ingest.stats()["stored"] >= 5)
        assert ingest.health()["healthy"]

        # The station's disk fills: nothing stored, nothing acked, the edge keeps every review.
        station_filler = fill(station_disk)
        stored_before = ingest.stats()["stored"]
        assert wait_until(lambda: "storage" in ingest.alarms() and ingest.stats()["store_failed"] >= 5)
        health = ingest.health()
        assert not health["healthy"] and str(station_disk) in health["alarms"]["storage"]
        assert wait_until(lambda: svc.outbox.depth() >= 10)
        alarm_events = []
        while not events.empty():
            name, data = events.get_nowait()
            if name == "alarm":
                alarm_events.append(data)
        assert alarm_events
        assert alarm_events[0]["name"] == "storage"
        assert alarm_events[0]["active"] is True
        assert ingest.stats()["stored"] <= stored_before + 64  # at most the batch already on its way

        # The edge's disk fills too: parts are still decided, reviews it cannot keep are counted.
        edge_filler = fill(edge_disk)
        assert wait_until(lambda: "outbox" in svc.metrics.alarms.active() and svc.pipeline.reviews_dropped >= 5)
        assert "outbox" in svc.status().alarms
        assert alarm_metric(edge, "outbox") == 1.0
        n = svc.pipeline.decided
        assert wait_until(lambda: svc.pipeline.decided >= n + 10)
        assert integrity(svc.cfg.outbox_dir / "outbox.sqlite3") == "ok"
        assert integrity(scfg.db_path) == "ok"

        # Space returns: the alarms clear and everything kept flows again.
        edge_filler.unlink()
        station_filler.unlink()
        assert wait_until(lambda: "outbox" not in svc.metrics.alarms.active())
        assert wait_until(lambda: "storage" not in ingest.alarms())
        assert alarm_metric(edge, "outbox") == 0.0 and ingest.health()["healthy"]
        made_so_far = len(edge.made_ids())
        assert wait_until(lambda: len(edge.made_ids()) >= made_so_far + 10)
        edge.stop_line()
        assert drain(edge, scfg.db_path)
    finally:
        edge.stop()
        ingest.stop()

    t = tally(edge, scfg.db_path)
    assert t.sent > 20
    assert t.stored == t.sent
    assert t.lost == 0
    assert t.duplicated == 0
    assert t.dropped >= 5 and t.dropped == svc.pipeline.reviews_dropped  # refused whole, and counted
    assert t.decided_once and t.parts == svc.pipeline.decided
    assert len(station_rows(scfg.db_path)) == t.stored
    assert integrity(svc.cfg.outbox_dir / "outbox.sqlite3") == "ok"
    assert integrity(scfg.db_path) == "ok"
    assert assert_no_torn_files(svc.cfg.outbox_dir / "images") == 0  # all delivered and acked
    assert assert_no_torn_files(scfg.image_dir) >= t.stored
