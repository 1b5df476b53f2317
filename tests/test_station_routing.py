"""Routing against the real app and a real SQLite file: held parts in the loop first, then the engineers'
rules by priority, then the oldest; a rule can ask for two reviewers; bad rules are refused by name."""
from __future__ import annotations

import pytest
from station_support import ENGINEER, OPERATOR, add_reviews, login, make_station, page_csrf

from station_ui import routing
from station_ui.errors import StoreError
from station_ui.store import Store


def _queue(store, **kw):
    return [r["part_id"] for r in store.next_items(limit=20, **kw)]


def test_the_queue_serves_held_parts_in_the_loop_then_rules_by_priority_then_the_oldest(tmp_path):
    app, cfg = make_station(tmp_path)
    store = Store(cfg.db_path)
    c = app.test_client()
    login(c, *ENGINEER[::2])
    token = page_csrf(c, "/admin/")
    assert c.post("/admin/routing", data={"line": "line2", "min_score": "0.5", "priority": "50", "reviewers": "1",
                                          "csrf_token": token}).status_code == 302
    assert c.post("/admin/routing", data={"reason": "fail-safe", "priority": "20", "csrf_token": token}).status_code == 302
    store.set_line_mode("line3", "in-the-loop", 30, "REJECT", "erik")
    add_reviews(store, 1, cfg.image_dir, t0=100.0, line="line1", part_id="OLD-1", score=0.6)
    add_reviews(store, 1, cfg.image_dir, t0=200.0, line="line2", part_id="L2-LOW", score=0.4)
    add_reviews(store, 1, cfg.image_dir, t0=300.0, line="line2", part_id="L2-HIGH", score=0.6)
    add_reviews(store, 1, cfg.image_dir, t0=400.0, line="line1", part_id="FAILSAFE", reason="fail-safe", score=None,
                action_taken="REJECT")
    add_reviews(store, 1, cfg.image_dir, t0=500.0, line="line3", part_id="HELD", score=0.5, action_taken="HOLD")
    add_reviews(store, 1, cfg.image_dir, t0=600.0, line="line3", part_id="AUDIT", reason="audit", score=0.1,
                action_taken="PASS")
    assert _queue(store) == ["HELD", "L2-HIGH", "FAILSAFE", "OLD-1", "L2-LOW", "AUDIT"]
    assert _queue(store, line="line2") == ["L2-HIGH", "L2-LOW"]
    assert store.queue_stats().oldest_captured_at == 100.0  # the age shown is still the oldest item's
    op = app.test_client()
    login(op, *OPERATOR[::2])
    assert 'Part HELD' in op.get("/review").get_data(as_text=True)  # what the reviewer sees first
    admin = c.get("/admin/").get_data(as_text=True)
    assert "line line2, score 0.5-1: priority 50" in admin and "any line sent as fail-safe: priority 20" in admin
    assert {e["target"] for e in store.audit_entries(10, action="setting")} >= {"routing-rule:1", "routing-rule:2"}
    assert c.post("/admin/routing/1/remove", data={"csrf_token": token}).status_code == 302
    assert [r.id for r in store.routing_rules()] == [2]
    assert c.post("/admin/routing/1/remove", data={"csrf_token": token}).status_code == 404


def test_a_rule_can_ask_two_reviewers_for_anything_it_matches(tmp_path):
    store = Store(tmp_path / "s.db")
    store.add_routing_rule(routing.Rule(line="line2", reviewers=2), "erik")
    (two,) = add_reviews(store, 1, tmp_path / "img", line="line2")
    (one,) = add_reviews(store, 1, tmp_path / "img", line="line1")
    assert store.record_verdict(one.id, "not_defect", "glare", "olga").counted
    first = store.record_verdict(two.id, "not_defect", "glare", "olga")  # even "not a defect" waits for a second
    assert not first.counted and first.state == "awaiting_confirm"
    assert store.next_items("olga") == []  # not to the same reviewer ...
    assert store.record_verdict(two.id, "not_defect", "", "otto").counted  # ... a different one confirms it


@pytest.mark.parametrize("form, field", [
    ({"priority": "500"}, "priority"), ({"priority": "x"}, "priority"), ({"reviewers": "3"}, "reviewers"),
    ({"min_score": "1.5"}, "min_score"), ({"min_score": "0.8", "max_score": "0.2"}, "min_score"),
    ({"reason": "bored"}, "reason"), ({"line": "a/b"}, "line"),
])
def test_bad_rules_are_refused_naming_the_field(tmp_path, form, field):
    with pytest.raises(StoreError, match=field):
        routing.rule_from_form(form)
    app, cfg = make_station(tmp_path)
    c = app.test_client()
    login(c, *ENGINEER[::2])
    r = c.post("/admin/routing", data={**form, "csrf_token": page_csrf(c, "/admin/")})
    assert r.status_code == 400 and field in r.get_data(as_text=True)
    assert Store(cfg.db_path).routing_rules() == []
