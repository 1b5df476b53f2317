"""Fault scenario 7: ten reviewers rule on the same item at the same moment, through the real web server.

The station runs as ``qc station run`` runs it (waitress plus the MQTT ingest) while
an edge streams parts and reviews into it, so the ingest writes to the database
while the verdicts race. Ten logged-in sessions (ten different users) post a
verdict on one item behind a barrier. Exactly one verdict counts (two on a
critical line: the first ruling and one confirmation), every other reviewer gets
a 409 that says why, nobody gets a 500, and "database is locked" appears in no
answer and no log line. The review tally must show nothing lost or duplicated.
"""
from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from station_ui import accounts
from station_ui.config import config_for
from station_ui.server import StationServer
from station_ui.store import Store
from tests.fault_support import StreamingEdge, drain, station_rows, tally
from tests.waiting import wait_until

REVIEWERS = [(f"rev{i}", "operator", f"{5100 + i * 7}") for i in range(10)]


class Session:
    """One reviewer's browser: a cookie jar, a login, the CSRF token of the review page."""

    def __init__(self, base_url: str, name: str, secret: str):
        self.base = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        token = self._csrf(self._get("login"))
        form = urllib.parse.urlencode({"name": name, "secret": secret, "csrf_token": token}).encode()
        with self.opener.open(self.base + "login", data=form, timeout=30) as resp:
            assert resp.url.endswith("/review"), f"{name} was not logged in: landed on {resp.url}"
            self.token = self._csrf(resp.read().decode())

    def _get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as resp:
            return resp.read().decode()

    @staticmethod
    def _csrf(html: str) -> str:
        m = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert m, "page has no CSRF token"
        return m.group(1)

    def post_verdict(self, review_id: str, verdict: str, kind: str) -> tuple[int, str]:
        body = json.dumps({"review_id": review_id, "verdict": verdict, "kind": kind}).encode()
        req = urllib.request.Request(self.base + "review/verdict", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json",
                                              "X-CSRF-Token": self.token})
        try:
            with self.opener.open(req, timeout=60) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


@pytest.mark.parametrize("critical", [False, True], ids=["ordinary-line", "critical-line"])
def test_ten_reviewers_at_once_exactly_one_verdict_counts(tmp_path, broker, caplog, critical):
    caplog.set_level(logging.WARNING)
    scfg = config_for(tmp_path / "st", mqtt={"host": broker.host, "port": broker.port, "client_id": "st-race"},
                      web={"port": 0, "threads": 16}, critical_lines=["line1"] if critical else [])
    store = Store(scfg.db_path)
    for user in REVIEWERS:
        accounts.add_user(store, *user)
    store.close()
    station = StationServer(scfg).start()
    edge = StreamingEdge(tmp_path / "edge", broker, rate_hz=40.0)
    try:
        assert station.ingest.connected.wait(10)
        edge.start()
        assert wait_until(lambda: len(station_rows(scfg.db_path)) >= 5)
        sessions = [Session(station.url, name, secret) for name, _, secret in REVIEWERS]
        target = sorted(station_rows(scfg.db_path))[0][0]

        barrier = threading.Barrier(len(sessions))
        answers: list[tuple[str, int, str]] = []
        lock = threading.Lock()

        def rule(s: Session, name: str) -> None:
            barrier.wait()
            code, body = s.post_verdict(target, "real_fault", "crack")
            with lock:
                answers.append((name, code, body))

        threads = [threading.Thread(target=rule, args=(s, u[0])) for s, u in zip(sessions, REVIEWERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(answers) == len(REVIEWERS)
        # The line keeps running through the race: more reviews arrive after it.
        n = len(station_rows(scfg.db_path))
        assert wait_until(lambda: len(station_rows(scfg.db_path)) > n + 5)
        edge.stop_line()
        assert drain(edge, scfg.db_path)
    finally:
        edge.stop()
        station.stop()

    codes = sorted(code for _, code, _ in answers)
    assert 500 not in codes
    assert not any("locked" in body.lower() for _, _, body in answers)
    assert not [r for r in caplog.records if "locked" in r.getMessage().lower()]
    ok = [(name, json.loads(body)) for name, code, body in answers if code == 200]
    refused = [json.loads(body)["error"] for _, code, body in answers if code == 409]
    expected_ok = 2 if critical else 1
    assert len(ok) == expected_ok and len(refused) == len(REVIEWERS) - expected_ok, codes
    assert all(target in msg and ("already" in msg or "second reviewer" in msg) for msg in refused), refused
    assert sorted(body["counted"] for _, body in ok) == ([False, True] if critical else [True])

    check = Store(scfg.db_path, migrate=False)
    live = check.live_verdicts(target)
    row = check.get_review(target)
    assert len(live) == expected_ok and len({v["user"] for v in live}) == expected_ok
    assert row["state"] == "done"
    assert row["final_verdict"] == "real_fault"
    assert row["open"] == 0
    assert len([e for e in check.audit_entries(500, action="verdict") if e["target"] == target]) == expected_ok
    check.close()
    published = [m for m in station.app.extensions["station"].published if m.review_id == target]
    assert len(published) == 1  # one final label goes to the trainer

    t = tally(edge, scfg.db_path)
    assert t.sent > 10
    assert t.stored == t.sent
    assert t.lost == 0
    assert t.duplicated == 0
    assert t.dropped == 0
    assert t.decided_once
