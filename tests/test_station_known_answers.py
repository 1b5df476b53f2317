"""Known-answer items against the real app and a real SQLite file: served among live items looking like
one, answered and undone like one, measuring the reviewer, and never reaching a line or the export."""
from __future__ import annotations

import random
import re

import pytest
from station_support import ENGINEER, OPERATOR, add_reviews, login, make_station, page_csrf

from station_ui import known_answers
from station_ui.store import Store


@pytest.fixture
def station(tmp_path, monkeypatch):
    monkeypatch.setattr(known_answers, "DRAWS", random.Random(7))  # a seeded draw: the same run every time
    return make_station(tmp_path, review={"known_answer_rate": 0.5, "known_answer_min_answers": 3})


def _settle(store, n, image_dir, verdict="real_fault", kind="crack"):
    """n reviews an engineer ruled: their truth is settled."""
    hs = add_reviews(store, n, image_dir, t0=1000.0, line="line1")
    for h in hs:
        store.record_verdict(h.id, verdict, kind, ENGINEER[0])
    return hs


def _post(c, token, path, body):
    return c.post(path, json=body, headers={"X-CSRF-Token": token})


def _shown(html):
    return re.search(r'data-id="([0-9a-f-]{36})"', html).group(1)


def _fields(html):  # what the reviewer reads, without the ids, times and numbers that differ per item
    html = re.sub(r"[0-9a-f-]{36}", "ID", html)
    html = re.sub(r"Captured</dt><dd>[^<]*", "", html)
    html = re.sub(r"[Pp]art P[0-9a-f]+", "part P", html)
    return re.sub(r"score\"?>?\s?[0-9.]+", "score N", html)


def test_known_answers_look_live_measure_the_reviewer_and_never_leave_the_station(station):
    app, cfg = station
    store = Store(cfg.db_path)
    settled = _settle(store, 6, cfg.image_dir)  # truth: real fault
    live = add_reviews(store, 30, cfg.image_dir, t0=5000.0, line="line1")
    verdicts_before = store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
    c = app.test_client()
    login(c, *OPERATOR[::2])
    token = page_csrf(c)
    live_ids, settled_ids = {h.id for h in live}, {h.id for h in settled}
    seen_ka, seen_live = [], []
    item = c.get("/review/item").get_json()
    while item["id"] is not None:  # the whole queue, until every settled review was served once
        rid = item["id"]
        count = item["stats"]["count"]
        if rid in live_ids:
            seen_live.append((rid, item["html"]))
            r = _post(c, token, "/review/verdict", {"review_id": rid, "verdict": "real_fault", "kind": ""}).get_json()
        else:
            assert rid not in settled_ids  # a fresh id, not the settled review's own
            assert c.get("/review/item").get_json()["id"] == rid  # it stays the next item until answered
            img = c.get(f"/images/{rid}.jpg")
            assert img.status_code == 200 and img.data[:2] == b"\xff\xd8"  # the settled review's frame
            seen_ka.append((rid, item["html"]))
            # Answer two right (real fault) and the rest wrong.
            verdict = "real_fault" if len(seen_ka) <= 2 else "not_defect"
            r = _post(c, token, "/review/verdict", {"review_id": rid, "verdict": verdict, "kind": ""}).get_json()
        assert r["ok"] and r["counted"] and r["state"] == "done", r  # the same answer either way
        assert r["stats"]["count"] == count - 1 or r["id"] != rid  # the queue counts it like any item
        item = {"id": r["id"], "html": r["html"], "stats": r["stats"]}
    assert len(seen_ka) == len(settled) and len(seen_live) == len(live)  # each settled review once
    # Drawn as a live item is: the same fields and words, the score inside the review band.
    assert _fields(seen_ka[0][1]) == _fields(seen_live[0][1])
    for _, html in seen_ka:
        score = float(re.search(r'class="score">([0-9.]+)<', html).group(1))
        assert 0.3 < score < 0.7 and "Why you see it: score" in html
    # Never a verdict: nothing for the verdict topic, the lines, the export or training.
    assert store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] - verdicts_before == len(seen_live)
    exported = {row["id"] for row in store.export(0, 1000)[0]}
    assert not exported & {rid for rid, _ in seen_ka}
    # The reviewer is measured: 2 of 6 right, flagged below 90 % after 3 answers.
    olga = next(f for f in known_answers.figures(store, 0.9, 3) if f.user == OPERATOR[0])
    assert (olga.user, olga.answered, olga.correct, olga.flagged) == (OPERATOR[0], 6, 2, True)
    eng = app.test_client()
    login(eng, *ENGINEER[::2])
    dash = eng.get("/dashboard").get_data(as_text=True)
    assert 'class="flagged"' in dash and "check their recent verdicts" in dash


def test_a_known_answer_is_undone_like_a_verdict_and_shown_again(station):
    app, cfg = station
    store = Store(cfg.db_path)
    _settle(store, 3, cfg.image_dir, verdict="not_defect", kind="glare")
    add_reviews(store, 20, cfg.image_dir, t0=5000.0, line="line1")
    c = app.test_client()
    login(c, *OPERATOR[::2])
    token = page_csrf(c)
    item = c.get("/review/item").get_json()
    while not known_answers.is_known_answer(store, item["id"]):
        item = _post(c, token, "/review/verdict", {"review_id": item["id"], "verdict": "real_fault"}).get_json()
    ka = item["id"]
    r = _post(c, token, "/review/verdict", {"review_id": ka, "verdict": "not_defect", "kind": "glare"}).get_json()
    answered = "SELECT answered_at FROM known_answers WHERE id = ?"
    assert r["ok"] and store.conn.execute(answered, (ka,)).fetchone()[0] is not None
    undone = _post(c, token, "/review/undo", {}).get_json()
    assert undone["ok"] and undone["id"] == ka and ka in undone["html"]  # back, as the next item
    assert known_answers.pending(store, OPERATOR[0])["id"] == ka
    assert _post(c, token, "/review/verdict", {"review_id": ka, "verdict": "not_defect", "kind": "glare"}).get_json()["ok"]
    assert next(f for f in known_answers.figures(store, 0.9, 3) if f.user == OPERATOR[0]).correct == 1
    assert _post(c, token, "/review/verdict", {"review_id": ka, "verdict": "not_defect", "kind": ""}).status_code == 409


def test_no_known_answer_without_a_live_item_a_settled_source_or_for_the_one_who_ruled_it(tmp_path):
    app, cfg = make_station(tmp_path, review={"known_answer_rate": 0.5})
    store = Store(cfg.db_path)
    always = random.Random(0)
    always.random = lambda: 0.0  # a draw that always says "serve one"
    add_reviews(store, 1, cfg.image_dir, t0=5000.0)
    assert known_answers.maybe_serve(store, OPERATOR[0], None, 0.5, rng=always) is None  # nothing waits
    live_head = store.next_items(OPERATOR[0])[0]
    assert known_answers.maybe_serve(store, OPERATOR[0], live_head, 0.5, rng=always) is None  # nothing settled
    (own,) = add_reviews(store, 1, cfg.image_dir, t0=100.0)
    store.record_verdict(own.id, "real_fault", "pit", OPERATOR[0])  # an operator's verdict is not settled truth
    assert known_answers.maybe_serve(store, ENGINEER[0], live_head, 0.5, rng=always) is None
    (ruled,) = add_reviews(store, 1, cfg.image_dir, t0=200.0)
    store.record_verdict(ruled.id, "not_defect", "dust", ENGINEER[0])
    assert known_answers.maybe_serve(store, ENGINEER[0], live_head, 0.5, rng=always) is None  # they ruled it
    assert known_answers.maybe_serve(store, OPERATOR[0], live_head, 0.0, rng=always) is None  # rate 0: off
    ka = known_answers.maybe_serve(store, OPERATOR[0], live_head, 0.5, rng=always)
    assert ka["source_id"] == ruled.id and ka["truth"] == "not_defect" and ka["truth_kind"] == "dust"
    assert ka["shown_at"] < live_head["captured_at"]  # it stands just before the live item it is shown ahead of


def test_pace_and_drift_per_day_and_hour_of_the_shift(tmp_path):
    store = Store(tmp_path / "s.db")
    import time as _time

    day1 = _time.mktime((2026, 12, 1, 8, 0, 0, 0, 0, -1))  # 08:00 local on two days
    day2 = day1 + 86400
    hs = add_reviews(store, 8, tmp_path / "img", t0=1.0)
    for i, h in enumerate(hs[:4]):  # four verdicts 30 s apart on day 1, then a break
        store.record_verdict(h.id, "not_defect", "glare", "olga", now=day1 + 30 * i)
    store.record_verdict(hs[4].id, "not_defect", "", "olga", now=day2)
    source = add_reviews(store, 1, tmp_path / "img", t0=2.0)[0]
    store.record_verdict(source.id, "real_fault", "crack", ENGINEER[0], now=day1 - 10)
    with store.write() as conn:  # known answers answered: day 1 hour 1 right, hour 3 wrong; day 2 right
        for n, (t, verdict) in enumerate([(day1 + 600, "real_fault"), (day1 + 2.5 * 3600, "not_defect"),
                                          (day2 + 60, "real_fault")]):
            conn.execute("INSERT INTO known_answers (id, source_id, user, served_at, shown_at, truth, lean, verdict,"
                         " answered_at) VALUES (?,?,?,?,?,?,?,?,?)",
                         (f"ka-{n}", source.id, "olga", t - 5, t - 5, "real_fault", "not_defect", verdict, t))
    olga = next(f for f in known_answers.figures(store, 0.9, 3) if f.user == "olga")
    assert olga.verdicts == 5 and olga.median_s == 30.0  # the break and the next day are not the pace
    assert [(d[5:], n, right) for d, n, right in olga.by_day] == [("12-01", 2, 1), ("12-02", 1, 1)]
    assert olga.by_shift_hour == ((1, 2, 2), (3, 1, 0))  # tired in the third hour
    assert (olga.wrong_lean, olga.followed_wrong_lean) == (3, 1)


def test_a_second_look_sends_a_reviewers_recent_verdicts_to_another_reviewer(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    hs = add_reviews(store, 3, cfg.image_dir)
    for h in hs[:2]:
        store.record_verdict(h.id, "not_defect", "glare", OPERATOR[0])
    store.record_verdict(hs[2].id, "real_fault", "pit", "otto")
    eng = app.test_client()
    login(eng, *ENGINEER[::2])
    dash = eng.get("/dashboard").get_data(as_text=True)
    assert "Second look at 2" in dash
    r = eng.post("/dashboard/second-look", data={"user": OPERATOR[0], "window": "24h",
                                                 "csrf_token": page_csrf(eng, "/dashboard")})
    assert r.status_code == 302
    assert [store.get_review(h.id)["state"] for h in hs] == ["awaiting_confirm", "awaiting_confirm", "done"]
    assert {h.id for h in hs[:2]}.isdisjoint(e["id"] for e in store.export(0, 100)[0])  # labels withdrawn
    assert store.next_items(OPERATOR[0]) == []  # not back to the same reviewer ...
    assert {r["id"] for r in store.next_items("otto", limit=10)} == {h.id for h in hs[:2]}  # ... to another one
    assert store.record_verdict(hs[0].id, "not_defect", "", "otto").counted  # agreeing: counted again
    assert store.record_verdict(hs[1].id, "real_fault", "", "otto").state == "disputed"  # else an engineer rules
    assert store.audit_entries(5, action="second-look")[0]["target"] == f"user:{OPERATOR[0]}"
