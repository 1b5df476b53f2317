"""The station web app through Flask's test client: login, CSRF, rate limit, verdicts, export API."""
from __future__ import annotations

import re

import pytest
from station_support import ADMIN, ENGINEER, OPERATOR, add_reviews, csrf_of, login, make_station, page_csrf

from qcloop import wire
from station_ui import accounts
from station_ui.app import create_app
from station_ui.config import config_for
from station_ui.errors import UnsafeConfigError, WeakSecretError
from station_ui.store import Store


@pytest.fixture
def station(tmp_path):
    app, cfg = make_station(tmp_path, web={"login_attempts": 3})
    return app, cfg


def test_login_sets_safe_cookie_and_wrong_secret_fails(station):
    app, _ = station
    c = app.test_client()
    assert c.get("/review").status_code == 302  # not logged in
    assert login(c, "olga", "0000").status_code == 401
    r = login(c, *OPERATOR[::2])
    assert r.status_code == 302 and r.headers["Location"].endswith("/review")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert c.get("/review").status_code == 200
    assert c.get("/dashboard").status_code == 403  # an operator is not an engineer


def test_secure_cookie_in_production(tmp_path):
    app, _ = make_station(tmp_path, station={"production": True})
    r = login(app.test_client(), *OPERATOR[::2])
    assert "Secure" in r.headers["Set-Cookie"]


def test_login_without_csrf_token_is_refused(station):
    app, _ = station
    c = app.test_client()
    c.get("/login")
    r = c.post("/login", data={"name": "olga", "secret": "4827"})
    assert r.status_code == 400 and b"CSRF" in r.data


def test_json_post_without_csrf_header_is_refused(station, tmp_path):
    app, cfg = station
    store = Store(cfg.db_path)
    (h,) = add_reviews(store, 1, cfg.image_dir)
    c = app.test_client()
    login(c, *OPERATOR[::2])
    r = c.post("/review/verdict", json={"review_id": h.id, "verdict": "not_defect", "kind": "glare"})
    assert r.status_code == 400
    assert store.get_review(h.id)["state"] == "pending"


def test_login_rate_limit_answers_429(station):
    app, _ = station
    c = app.test_client()
    for _ in range(3):
        assert login(c, "olga", "9999").status_code == 401
    r = login(c, *OPERATOR[::2])  # even the right PIN waits now
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_verdict_undo_and_publish(station):
    app, cfg = station
    store = Store(cfg.db_path)
    a, b = add_reviews(store, 2, cfg.image_dir)
    c = app.test_client()
    login(c, *OPERATOR[::2])
    page = c.get("/review").get_data(as_text=True)
    assert a.id in page and "12 % saturated pixels: glare likely" in page  # oldest first, hints in words
    assert re.search(r'id="queue-count">2<', page)
    token = csrf_of(page)
    r = c.post("/review/verdict", json={"review_id": a.id, "verdict": "real_fault", "kind": "crack"},
               headers={"X-CSRF-Token": token})
    j = r.get_json()
    assert r.status_code == 200
    assert j["counted"]
    assert j["id"] == b.id
    assert j["stats"]["count"] == 1
    published = app.extensions["station"].published
    assert published[-1] == wire.Verdict(a.id, "real_fault", "crack", "olga", published[-1].time, cfg.station.name,
                                         "line1", "cam1", a.part_id)
    v = store.live_verdicts(a.id)[0]
    assert (v["user"], v["station"], v["verdict"]) == ("olga", cfg.station.name, "real_fault")

    r = c.post("/review/undo", json={}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    assert r.get_json()["id"] == a.id
    assert r.get_json()["stats"]["count"] == 2
    assert published[-1].undone and store.get_review(a.id)["state"] == "pending"
    r = c.post("/review/undo", json={}, headers={"X-CSRF-Token": token})
    assert r.status_code == 409  # nothing left to undo
    assert [e["action"] for e in store.audit_entries(10)][:3] == ["undo", "verdict", "login"]


def test_audit_items_look_exactly_like_uncertain_ones(station):
    app, cfg = station
    store = Store(cfg.db_path)
    (u,) = add_reviews(store, 1, cfg.image_dir, reason="uncertain", band="uncertain", part_id="PX", score=0.512)
    # An audit: a confident PASS (score 0.004, far below the band 0.3-0.7) sampled for a second look.
    (a,) = add_reviews(store, 1, cfg.image_dir, reason="audit", band="uncertain", part_id="PX", t0=0.0,
                       score=0.004, action_taken="HOLD")
    c = app.test_client()
    login(c, *OPERATOR[::2])

    def fragment(rid):
        html = c.get("/review/item").get_json()["html"]
        assert rid in html
        return html

    def shown(html):
        return float(re.search(r'class="score">([0-9.]+)<', html).group(1))

    def blind(html):  # everything but the ids, the capture time and the score's digits
        html = re.sub(r"Captured</dt><dd>[^<]*", "", html)
        return re.sub(r"[0-9a-f-]{36}", "ID", re.sub(r"score\"?>?\s?[0-9.]+", "score N", html))

    audit_html = fragment(a.id)  # captured earlier, so it comes first
    assert "audit" not in audit_html.lower()
    assert "0.004" not in audit_html  # the true score would say "the model is sure"
    assert 0.3 < shown(audit_html) < 0.7  # drawn inside the band, as an uncertain item's lies
    assert fragment(a.id) == audit_html  # the same number on every look
    store.record_verdict(a.id, "not_defect", "glare", "erik")
    uncertain_html = fragment(u.id)
    assert shown(uncertain_html) == 0.512  # an uncertain item shows its own score
    assert blind(uncertain_html) == blind(audit_html)
    c2 = app.test_client()
    login(c2, *ENGINEER[::2])
    assert "0.004" in c2.get(f"/history/{a.id}").get_data(as_text=True)  # engineers see the truth


def test_the_review_screen_says_why_the_model_asked_in_words_with_the_thresholds(station):
    app, cfg = station
    store = Store(cfg.db_path)
    add_reviews(store, 1, cfg.image_dir, score=0.41, model="1.2.0",
                thresholds={"pass_below": 0.30, "reject_above": 0.55},
                quality={"saturated": 0.14, "dark": 0.0, "mean": 120.0, "sharpness": 300.0})
    c = app.test_client()
    login(c, *OPERATOR[::2])
    html = c.get("/review").get_data(as_text=True)
    assert ("Why you see it: score 0.41 in the review band 0.30\u20130.55 of model 1.2.0; "
            "14 % saturated pixels: glare likely") in html
    assert "pass below 0.30, review 0.30\u20130.55, reject from 0.55" in html


def test_export_api_needs_token_and_pages_by_cursor(station):
    app, cfg = station
    store = Store(cfg.db_path)
    hs = add_reviews(store, 3, cfg.image_dir)
    for h in hs[:2]:
        store.record_verdict(h.id, "not_defect", "dust", "olga")
    token = accounts.add_token(store, "trainer")
    c = app.test_client()
    assert c.get("/api/v1/export").status_code == 401
    assert c.get("/api/v1/export", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get(f"/api/v1/images/{hs[0].id}").status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    j = c.get("/api/v1/export?limit=1", headers=auth).get_json()
    assert [i["id"] for i in j["items"]] == [hs[0].id] and j["items"][0]["verdict"] == "not_defect"
    j2 = c.get(f"/api/v1/export?since={j['next_cursor']}", headers=auth).get_json()
    assert [i["id"] for i in j2["items"]] == [hs[1].id]
    assert c.get(f"/api/v1/export?since={j2['next_cursor']}", headers=auth).get_json()["items"] == []
    assert j["items"][0]["image_url"] == f"/api/v1/images/{hs[0].id}"
    img = c.get(j["items"][0]["image_url"], headers=auth)
    assert img.status_code == 200 and img.data[:2] == b"\xff\xd8"
    assert c.get("/api/v1/export?limit=abc", headers=auth).status_code == 400


def test_export_image_urls_never_come_from_the_host_header(station):
    app, cfg = station
    store = Store(cfg.db_path)
    (h,) = add_reviews(store, 1, cfg.image_dir)
    store.record_verdict(h.id, "real_fault", "pit", "olga")
    auth = {"Authorization": f"Bearer {accounts.add_token(store, 'trainer')}", "Host": "evil.example"}
    item = app.test_client().get("/api/v1/export", headers=auth).get_json()["items"][0]
    assert "evil.example" not in item["image_url"]  # a forged Host must not send the trainer elsewhere
    assert item["image_url"] == f"/api/v1/images/{h.id}"  # the trainer joins it to its configured station URL


def test_production_refuses_default_passwords(tmp_path):
    cfg = config_for(tmp_path / "st", station={"production": True}, mqtt={"enabled": False})
    store = Store(cfg.db_path)
    with pytest.raises(WeakSecretError):
        accounts.add_user(store, "admin", "admin", "changeme", production=True)
    accounts.add_user(store, "olaf", "operator", "1234", production=False)  # e.g. left from a test setup
    store.close()
    with pytest.raises(UnsafeConfigError, match="olaf"):
        create_app(cfg)


def test_engineer_screens_and_admin_setting_is_audited(station):
    app, cfg = station
    store = Store(cfg.db_path)
    hs = add_reviews(store, 2, cfg.image_dir, part_id="PART-77")
    store.record_verdict(hs[0].id, "real_fault", "pit", "olga")
    c = app.test_client()
    login(c, *ENGINEER[::2])
    dash = c.get("/dashboard").get_data(as_text=True)
    assert "<svg" in dash
    assert "Verdicts per reviewer" in dash
    assert "Real fault: Pit" in dash and "real_fault pit" not in dash  # the verdict mix in words
    assert "olga" in dash
    hist = c.get("/history?part_id=PART-77&verdict=real_fault").get_data(as_text=True)
    assert hist.count("PART-77</a>") == 1
    assert "Real fault: Pit" in hist and "real_fault" not in hist.split("</form>")[-1]  # words, not codes
    rec = c.get(f"/history/{hs[0].id}").get_data(as_text=True)
    assert "pass_below" in rec
    assert "olga" in rec
    assert "v3" in rec
    token = page_csrf(c, "/admin/")
    assert c.post("/admin/lines", data={"line": "line1", "critical": "1", "csrf_token": token}).status_code == 403
    c2 = app.test_client()
    login(c2, *ADMIN[::2])
    token = page_csrf(c2, "/admin/")
    assert c2.post("/admin/lines", data={"line": "line1", "critical": "1", "csrf_token": token}).status_code == 302
    assert store.audit_entries(1)[0]["action"] == "setting"


def test_history_pages_through_every_match_and_counts_them(station):
    import re

    from station_ui import reports

    app, cfg = station
    store = Store(cfg.db_path)
    n = reports.HISTORY_PAGE * 2 + 7
    hs = add_reviews(store, n, cfg.image_dir, t0=1_000_000.0)
    store.record_verdict(hs[-1].id, "not_defect", "glare", "olga")
    c = app.test_client()
    login(c, *ENGINEER[::2])
    seen = []
    page, pages = 1, None
    while True:
        html = c.get(f"/history?page={page}").get_data(as_text=True)
        seen += re.findall(r'href="/history/([0-9a-f-]{36})"', html)
        pages = pages or int(re.search(r"Page 1 of (\d+)", html).group(1))
        if 'rel="next"' not in html:
            break
        page += 1
    assert pages == 3 and page == 3
    assert f"of {n:,}" in html and f"Reviews {2 * reports.HISTORY_PAGE + 1:,}&ndash;{n:,}" in html
    assert len(seen) == len(set(seen)) == n  # every review once, none lost between pages
    assert seen[0] == hs[-1].id  # newest first
    first = c.get("/history").get_data(as_text=True)
    assert "Not a defect: Glare / reflection" in first and "Open" in first
    filtered = c.get("/history?verdict=not_defect&page=1").get_data(as_text=True)
    assert "Reviews 1&ndash;1 of 1" in filtered and 'rel="next"' not in filtered
    assert c.get("/history?page=0").status_code == 400
    assert c.get("/history?page=x").status_code == 400


def test_chart_labels_are_shortened_whole_and_escaped():
    from station_ui import svg

    chart = str(svg.bar_chart([("Not a defect: Glare / reflection & more", 3)], title="t", label_w=140))
    assert "<title>Not a defect: Glare / reflection &amp; more</title>" in chart  # the full label on hover
    assert "Not a defect: Glare\u2026</text>" in chart  # cut with an ellipsis, never inside an entity
    assert "&am<" not in chart and "&amp</text>" not in chart


def test_an_engineer_rules_on_a_disputed_item_and_the_ruling_counts_and_is_exported(station):
    app, cfg = station
    store = Store(cfg.db_path)
    store.set_line_critical("line1", True, "ada")
    (h,) = add_reviews(store, 1, cfg.image_dir, line="line1", part_id="PART-D")
    store.record_verdict(h.id, "real_fault", "crack", "olga")  # first reviewer: a fault ...
    store.record_verdict(h.id, "not_defect", "glare", "otto")  # ... the second disagrees
    assert store.get_review(h.id)["state"] == "disputed"
    assert h.id not in {r["id"] for r in store.export(0, 100)[0]}  # a dispute teaches nothing yet
    op = app.test_client()
    login(op, *OPERATOR[::2])
    assert op.post(f"/history/{h.id}/rule", data={"verdict": "real_fault", "kind": "crack",
                                                  "csrf_token": page_csrf(op)}).status_code == 403
    c = app.test_client()
    login(c, *ENGINEER[::2])
    dash = c.get("/dashboard").get_data(as_text=True)
    assert "PART-D" in dash and "Rule on it" in dash
    record = c.get(f"/history/{h.id}").get_data(as_text=True)
    assert 'id="ruling"' in record
    token = csrf_of(record)
    r = c.post(f"/history/{h.id}/rule", data={"verdict": "real_fault", "kind": "crack", "csrf_token": token})
    assert r.status_code == 302
    row = store.get_review(h.id)
    assert (row["state"], row["final_verdict"], row["final_kind"]) == ("done", "real_fault", "crack")
    (exported,) = [e for e in store.export(0, 100)[0] if e["id"] == h.id]
    assert exported["verdict_user"] == ENGINEER[0]  # the ruling is the label the trainer gets
    assert store.audit_entries(5, action="ruling")[0]["target"] == h.id
    assert "Ruled: Real fault: Crack" in c.get(f"/history/{h.id}").get_data(as_text=True)
    again = c.post(f"/history/{h.id}/rule", data={"verdict": "not_defect", "kind": "", "csrf_token": token})
    assert again.status_code == 409  # ruled once; not disputed any more
    assert "PART-D" not in c.get("/dashboard").get_data(as_text=True).split('id="disputed"')[1]
    undone = store.undo_last(ENGINEER[0], window_s=600)  # the engineer takes the ruling back
    assert undone.message.undone and store.get_review(h.id)["state"] == "disputed"
