"""Event streams hold a server thread each: one person's many streams must not stop the station."""
from __future__ import annotations

import http.client
import urllib.request

import pytest

from station_ui import accounts
from station_ui.config import config_for
from station_ui.events import EventHub
from station_ui.server import StationServer
from station_ui.store import Store
from tests.station_support import OPERATOR
from tests.test_faults_concurrent_verdicts import Session
from tests.waiting import wait_until

# Stopping the station with streams open must end cleanly: an error in the server's own loop thread
# (a socket closed under its select()) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def _open_stream(host: str, port: int, cookie: str) -> tuple[http.client.HTTPConnection, int]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/review/events", headers={"Cookie": cookie, "Accept": "text/event-stream"})
    return conn, conn.getresponse().status  # the headers come at once; the body is the stream


def test_eight_streams_of_one_operator_leave_the_station_answering(tmp_path):
    cfg = config_for(tmp_path / "st", mqtt={"enabled": False}, web={"port": 0, "threads": 8})
    store = Store(cfg.db_path)
    accounts.add_user(store, *OPERATOR)
    store.close()
    station = StationServer(cfg).start()
    streams = []
    try:
        browser = Session(station.url, OPERATOR[0], OPERATOR[2])
        jar = next(h.cookiejar for h in browser.opener.handlers if hasattr(h, "cookiejar"))
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        host, port = station.server.effective_host, station.server.effective_port
        streams = [_open_stream(host, port, cookie) for _ in range(8)]
        assert [status for _, status in streams] == [200] * 8  # each reload is served ...
        assert wait_until(lambda: station.hub.subscribers == 2, 10)  # ... the oldest end (streams_per_user 2)
        for path in ("healthz", "login"):
            with urllib.request.urlopen(station.url + path, timeout=5) as resp:  # a thread is free for these
                assert resp.status == 200
    finally:
        for conn, _ in streams:
            conn.close()
        station.stop()


def test_the_station_refuses_a_stream_over_its_limit_and_keeps_threads_for_the_rest():
    hub = EventHub()
    held = [hub.subscribe(f"user{i}", per_owner=2, total=4) for i in range(4)]
    assert all(q is not None for q in held)
    assert hub.subscribe("user9", per_owner=2, total=4) is None  # a fifth person: refused (503, retry later)
    assert hub.refused == 1
    again = hub.subscribe("user0", per_owner=1, total=4)  # user0 reloads: replaces their own stream
    assert again is not None
    assert held[0].get_nowait() == ("close", {})  # the replaced stream is told to end
    assert hub.subscribers == 4
