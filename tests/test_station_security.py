"""Station web security beyond the basics in test_station_web.py.

CSRF with a wrong or foreign token (form and JSON), the login rate limit per name and
its recovery, idle logout, session cookie flags and fixation, the export API's token
checks (missing, wrong, revoked, a session cookie instead of a token), security headers.

Idle time is simulated by moving the session's last-activity stamp back, so no test
waits out a timeout; the rate-limit recovery uses the shortest window the config
allows (1 s) and polls for the unblocked login against a deadline.
"""
from __future__ import annotations

import time

import pytest
from station_support import ADMIN, ENGINEER, OPERATOR, add_reviews, csrf_of, login, make_station, page_csrf
from waiting import wait_until

from station_ui import accounts
from station_ui.errors import AuthError
from station_ui.store import Store

IDLE_S = 60.0


@pytest.fixture
def station(tmp_path):
    return make_station(tmp_path, web={"login_attempts": 2, "login_window_s": 1.0, "idle_logout_s": IDLE_S})


# ------------------------------------------------------------------ CSRF
def test_form_post_with_a_wrong_or_foreign_csrf_token_is_refused(station):
    app, cfg = station
    c, other = app.test_client(), app.test_client()
    login(c, *ADMIN[::2])
    login(other, *ADMIN[::2])
    foreign = page_csrf(other, "/admin/")
    for token in (None, "", "x" * 43, foreign):
        data = {"line": "line1", "critical": "1"} | ({} if token is None else {"csrf_token": token})
        r = c.post("/admin/lines", data=data)
        assert r.status_code == 400 and b"CSRF token missing or wrong" in r.data, token
    store = Store(cfg.db_path)
    assert not any(row["critical"] for row in store.lines())
    assert c.post("/admin/lines", data={"line": "line1", "critical": "1", "csrf_token": page_csrf(c, "/admin/")}
                  ).status_code == 302
    assert any(row["critical"] for row in store.lines())


def test_json_post_with_a_wrong_csrf_header_or_token_in_the_body_is_refused(station):
    app, cfg = station
    store = Store(cfg.db_path)
    (h,) = add_reviews(store, 1, cfg.image_dir)
    c, other = app.test_client(), app.test_client()
    login(c, *OPERATOR[::2])
    login(other, *ENGINEER[::2])
    body = {"review_id": h.id, "verdict": "not_defect", "kind": "glare"}
    assert c.post("/review/verdict", json=body, headers={"X-CSRF-Token": page_csrf(other)}).status_code == 400
    assert c.post("/review/verdict", json=body | {"csrf_token": page_csrf(c)}).status_code == 400
    assert store.get_review(h.id)["state"] == "pending" and app.extensions["station"].published == []
    r = c.post("/review/verdict", json=body, headers={"X-CSRF-Token": page_csrf(c)})
    assert r.status_code == 200 and store.get_review(h.id)["state"] != "pending"


def test_logout_needs_post_with_the_token(station):
    app, _ = station
    c = app.test_client()
    login(c, *OPERATOR[::2])
    assert c.get("/logout").status_code == 405  # a link or <img> cannot log a reviewer out
    assert c.post("/logout").status_code == 400
    assert c.get("/review").status_code == 200
    assert c.post("/logout", data={"csrf_token": page_csrf(c)}).status_code == 302
    assert c.get("/review").status_code == 302


# ------------------------------------------------------------------ login rate limit
def test_login_limit_is_per_name_and_lifts_after_the_window(station):
    app, cfg = station
    c = app.test_client()
    assert [login(c, "olga", "0000").status_code for _ in range(2)] == [401, 401]
    blocked = login(c, *OPERATOR[::2])
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 2
    assert "Too many failed logins" in blocked.get_data(as_text=True)
    # Another user at the same terminal is not locked out by olga's typos.
    assert login(app.test_client(), *ENGINEER[::2]).status_code == 302
    assert wait_until(lambda: login(c, *OPERATOR[::2]).status_code == 302, timeout=10, interval=0.1), \
        "the login stayed blocked after the window"
    assert c.get("/review").status_code == 200
    actions = [e["action"] for e in Store(cfg.db_path).audit_entries(20)]
    assert actions.count("login-failed") == 2  # blocked tries are not counted as new failures


def test_a_successful_login_clears_the_failures(station):
    app, _ = station
    c = app.test_client()
    assert login(c, "olga", "0000").status_code == 401
    assert login(c, *OPERATOR[::2]).status_code == 302
    c2 = app.test_client()
    assert login(c2, "olga", "0000").status_code == 401  # one failure again, not the third in a row
    assert login(c2, *OPERATOR[::2]).status_code == 302


# ------------------------------------------------------------------ idle logout
def _idle_for(client, seconds: float) -> None:
    with client.session_transaction() as s:
        s["seen"] = time.time() - seconds


def test_idle_session_ends_and_the_login_page_says_why(station):
    app, _ = station
    c = app.test_client()
    login(c, *OPERATOR[::2])
    _idle_for(c, IDLE_S - 5)
    assert c.get("/review").status_code == 200  # still inside the timeout; this is activity
    with c.session_transaction() as s:
        assert time.time() - s["seen"] < 5
    _idle_for(c, IDLE_S + 1)
    r = c.get("/review")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    with c.session_transaction() as s:
        assert "user" not in s and "csrf" not in s
    assert c.get("/review").status_code == 302  # the session is gone, not just skipped once


def test_the_pages_own_background_fetches_do_not_keep_an_unattended_screen_logged_in(station):
    app, _ = station
    c = app.test_client()
    login(c, *OPERATOR[::2])
    _idle_for(c, IDLE_S - 5)
    background = {"Accept": "application/json", "X-QC-Background": "1"}  # as review.js sends after each event
    assert c.get("/review/item", headers=background).status_code == 200
    with c.session_transaction() as s:
        assert time.time() - s["seen"] > IDLE_S - 10  # not counted as a person's activity
    _idle_for(c, IDLE_S + 1)
    assert c.get("/review/item", headers=background).status_code == 401  # the idle logout still comes


def test_idle_logout_message_and_json_answer(station):
    app, _ = station
    c = app.test_client()
    login(c, *OPERATOR[::2])
    _idle_for(c, IDLE_S + 1)
    assert "logged out after a while without activity" in c.get("/login").get_data(as_text=True)
    login(c, *OPERATOR[::2])
    _idle_for(c, IDLE_S + 1)
    r = c.get("/review/item", headers={"Accept": "application/json"})
    assert r.status_code == 401 and r.get_json() == {"error": "not logged in"}


# ------------------------------------------------------------------ cookies and session
def _cookie(resp) -> str:
    (cookie,) = [v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith("qc_station=")]
    return cookie


def test_session_cookie_flags_before_and_after_login(station):
    app, _ = station
    c = app.test_client()
    first = _cookie(c.get("/login"))  # the CSRF token already lives in the session
    after = _cookie(login(c, *OPERATOR[::2]))
    for cookie in (first, after):
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # not production: plain HTTP on a test bench must still work


@pytest.mark.parametrize("sections", [{"station": {"production": True}},
                                      {"web": {"secure_cookies": True}}])
def test_secure_cookie_in_production_or_when_asked(tmp_path, sections):
    app, _ = make_station(tmp_path, **sections)
    c = app.test_client()
    for resp in (c.get("/login"), login(c, *OPERATOR[::2])):
        cookie = _cookie(resp)
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie


def test_login_starts_a_fresh_session_and_refuses_open_redirects(station):
    app, _ = station
    c = app.test_client()
    before = csrf_of(c.get("/login").get_data(as_text=True))
    r = c.post("/login?next=//evil.example/x", data={"name": "olga", "secret": "4827", "csrf_token": before})
    assert r.status_code == 302 and r.headers["Location"] == "/review"
    assert page_csrf(c) != before  # a token planted before login is worthless afterwards


@pytest.mark.parametrize("nxt", ["/%09/evil.example/phish.html", "/%0A/evil.example", "/%0D%0A/evil.example",
                                 "/%5Cevil.example", "%5C%5Cevil.example", "https://evil.example/x",
                                 "//evil.example", "///evil.example", "/%20/evil.example", "javascript:alert(1)"])
def test_login_never_redirects_off_the_station(station, nxt):
    app, _ = station
    c = app.test_client()
    token = csrf_of(c.get("/login").get_data(as_text=True))
    r = c.post(f"/login?next={nxt}", data={"name": "olga", "secret": "4827", "csrf_token": token})
    assert r.status_code == 302
    assert r.headers["Location"] == "/review", f"next={nxt} sent the browser to {r.headers['Location']!r}"


def test_login_returns_to_a_page_of_the_station(station):
    app, _ = station
    c = app.test_client()
    token = csrf_of(c.get("/login").get_data(as_text=True))
    r = c.post("/login?next=/history%3Fline%3DL1", data={"name": "olga", "secret": "4827", "csrf_token": token})
    assert r.headers["Location"] == "/history?line=L1"


def test_pages_carry_security_headers(station):
    app, _ = station
    r = app.test_client().get("/login")
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


# ------------------------------------------------------------------ export API tokens
@pytest.fixture
def api(station):
    app, cfg = station
    store = Store(cfg.db_path)
    (h,) = add_reviews(store, 1, cfg.image_dir)
    store.record_verdict(h.id, "real_fault", "crack", "olga")
    return app, store, h


def _refused(resp) -> None:
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "missing or wrong API token (send 'Authorization: Bearer TOKEN')"}
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_export_api_refuses_missing_wrong_and_malformed_tokens(api):
    app, store, h = api
    good = accounts.add_token(store, "trainer")
    c = app.test_client()
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer qct_wrong"},
                    {"Authorization": f"Basic {good}"}, {"Authorization": good},
                    {"Authorization": f"Bearer {good[:-1]}"}):
        _refused(c.get("/api/v1/export", headers=headers))
        _refused(c.get(f"/api/v1/images/{h.id}", headers=headers))
    _refused(c.get(f"/api/v1/export?token={good}"))  # never in a URL (logs, proxies)
    r = c.get("/api/v1/export", headers={"Authorization": f"bearer {good}"})
    assert r.status_code == 200 and [i["id"] for i in r.get_json()["items"]] == [h.id]


def test_export_api_refuses_a_revoked_token(api):
    app, store, h = api
    token = accounts.add_token(store, "old-trainer")
    c = app.test_client()
    assert c.get("/api/v1/export", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    accounts.revoke_token(store, "old-trainer", by="ada")
    _refused(c.get("/api/v1/export", headers={"Authorization": f"Bearer {token}"}))
    assert [r["action"] for r in store.audit_entries(action="token-revoke")] == ["token-revoke"]
    with pytest.raises(AuthError, match="no active API token named 'old-trainer'"):
        accounts.revoke_token(store, "old-trainer")  # twice: named, not silently accepted


def test_export_api_does_not_take_a_logged_in_session(api):
    app, _, h = api
    c = app.test_client()
    assert login(c, *ADMIN[::2]).status_code == 302
    _refused(c.get("/api/v1/export"))
    _refused(c.get(f"/api/v1/images/{h.id}"))


# ------------------------------------------------------------------ sessions end server-side
def _copy_session(src, dst):
    """What an attacker with a copied cookie has: the same session, in another client."""
    with src.session_transaction() as s:
        data = dict(s)
    with dst.session_transaction() as d:
        d.update(data)


def test_a_demoted_admins_old_session_can_no_longer_change_settings(station):
    app, cfg = station
    c = app.test_client()
    login(c, *ADMIN[::2])
    token = page_csrf(c, "/admin/")
    assert c.post("/admin/lines", data={"line": "line1", "critical": "1", "csrf_token": token}).status_code == 302
    store = Store(cfg.db_path)
    accounts.add_user(store, ADMIN[0], "operator", ADMIN[2])  # demoted
    r = c.post("/admin/lines", data={"line": "line1", "critical": "0", "csrf_token": token})
    assert r.status_code != 302 or "/login" in r.headers["Location"]  # refused: the session ended with the role
    assert [row["critical"] for row in store.lines() if row["name"] == "line1"] == [1]  # unchanged
    assert c.get("/admin/").status_code == 302  # logged out, to log in again as what the user now is


def test_a_cookie_copied_before_logout_is_dead_after_it(station):
    app, _ = station
    c, thief = app.test_client(), app.test_client()
    login(c, *OPERATOR[::2])
    _copy_session(c, thief)
    assert thief.get("/review").status_code == 200  # the copy works while the session lives
    c.post("/logout", data={"csrf_token": page_csrf(c)})
    assert thief.get("/review").status_code == 302  # and not after the logout


def test_disable_user_ends_open_sessions_and_refuses_login(station, tmp_path):
    from qc.cli import main

    app, cfg = station
    c = app.test_client()
    login(c, *OPERATOR[::2])
    assert c.get("/review").status_code == 200
    conf = tmp_path / "station.toml"
    conf.write_text(f'[station]\ndata_dir = "{cfg.data_dir}"\n[mqtt]\nenabled = false\n')
    assert main(["station", "disable-user", OPERATOR[0], "--config", str(conf)]) == 0
    assert c.get("/review").status_code == 302
    r = login(c, *OPERATOR[::2])
    assert r.status_code == 401


# ------------------------------------------------------------------ failed logins are bounded
def test_failed_logins_cannot_flood_the_audit_log_or_the_limiter(station):
    app, cfg = station  # login_attempts 2 per name: 8 per address across names
    c = app.test_client()
    token = csrf_of(c.get("/login").get_data(as_text=True))
    codes = []
    for i in range(300):
        name = f"{i:03d}" + "x" * 63_000  # 63 KB names, a new one each time
        codes.append(c.post("/login", data={"name": name, "secret": "nope", "csrf_token": token}).status_code)
    assert codes.count(401) <= 8  # the address is stopped, whatever names it rotates through
    assert codes.count(429) >= 292
    store = Store(cfg.db_path)
    rows = store.conn.execute("SELECT count(*), coalesce(sum(length(user) + length(detail)), 0) FROM audit_log"
                              " WHERE action = 'login-failed'").fetchone()
    assert rows[0] <= 8
    assert rows[1] < 8 * 300  # bytes: cut names, not 63 KB each
    limiter = app.extensions["station"].limiter
    assert limiter.entries <= 9  # one per name tried before the stop, one for the address
