"""The station store: migrations upgrade old files in place, verdict rules, concurrency, audit."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlite_utils import Database
from station_support import add_reviews, make_header

from station_ui import migrations
from station_ui.errors import AlreadyDecided, StoreError, UndoRefused
from station_ui.store import Store


def test_v1_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "station.db"
    old = Database(str(path))
    migrations.migrations.apply(old, stop_before="m002_two_person_queue_tokens")
    assert migrations.schema_version(old) == 1
    h = make_header()
    old["reviews"].insert({"id": h.id, "part_id": h.part_id, "line": h.line, "camera": h.camera,
                           "captured_at": h.captured_at, "model": h.model, "score": h.score, "band": h.band,
                           "action_taken": h.action_taken, "reason": h.reason, "image_path": "x.jpg",
                           "received_at": h.captured_at})
    decided = make_header()
    old["reviews"].insert({"id": decided.id, "part_id": "P2", "line": "line1", "camera": "cam1", "captured_at": 1.0,
                           "model": "v1", "score": 0.5, "band": "uncertain", "action_taken": "HOLD",
                           "reason": "uncertain", "image_path": "y.jpg", "received_at": 1.0, "state": "done"})
    old["verdicts"].insert({"review_id": decided.id, "verdict": "not_defect", "kind": "glare", "user": "ann",
                            "station": "s1", "time": 2.0})
    old.conn.commit()
    old.conn.close()

    store = Store(path)
    assert migrations.schema_version(store.db) == len(migrations.names())
    assert store.get_review(h.id)["part_id"] == h.part_id  # data kept
    assert store.queue_stats().count == 1  # the pending v1 row is in the queue, the decided one is not
    items, cursor = store.export(0)
    assert [r["id"] for r in items] == [decided.id]
    assert items[0]["final_kind"] == "glare"
    assert cursor > 0
    store.close()
    Store(path).close()  # opening again applies nothing twice


def test_verdict_counts_once_and_undo(tmp_path):
    store = Store(tmp_path / "s.db", station="st1")
    (h,) = add_reviews(store, 1, tmp_path / "img")
    out = store.record_verdict(h.id, "real_fault", "crack", "ann", now=100.0)
    assert out.counted
    assert out.message.verdict == "real_fault"
    assert out.message.station == "st1"
    with pytest.raises(AlreadyDecided):
        store.record_verdict(h.id, "not_defect", "glare", "bob", now=101.0)
    with pytest.raises(UndoRefused):
        store.undo_last("ann", window_s=10, now=111.0)  # too late
    undo = store.undo_last("ann", window_s=10, now=105.0)
    assert undo.message.undone and store.get_review(h.id)["state"] == "pending"
    assert store.record_verdict(h.id, "not_defect", "glare", "bob", now=106.0).counted
    actions = [r["action"] for r in store.audit_entries()]
    assert actions[:3] == ["verdict", "undo", "verdict"]


def test_bad_verdict_input_is_named(tmp_path):
    store = Store(tmp_path / "s.db")
    (h,) = add_reviews(store, 1, tmp_path / "img")
    with pytest.raises(StoreError, match="'scratchy'"):
        store.record_verdict(h.id, "real_fault", "scratchy", "ann")
    with pytest.raises(StoreError, match="'crack' is not one of"):
        store.record_verdict(h.id, "not_defect", "crack", "ann")  # a fault's kind for "not a defect"


def test_not_a_defect_can_be_ruled_in_one_tap_without_a_kind(tmp_path):
    store = Store(tmp_path / "s.db")
    (h,) = add_reviews(store, 1, tmp_path / "img")
    outcome = store.record_verdict(h.id, "not_defect", "", "ann")
    assert outcome.counted and outcome.message.kind == ""
    assert store.get_review(h.id)["final_verdict"] == "not_defect"


def test_audit_log_is_append_only(tmp_path):
    store = Store(tmp_path / "s.db")
    store.audit("ann", "login")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("DELETE FROM audit_log")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("UPDATE audit_log SET user = 'x'")


def test_two_person_rule_on_critical_line(tmp_path):
    store = Store(tmp_path / "s.db")
    store.set_line_critical("line1", True, "admin")
    a, b = add_reviews(store, 2, tmp_path / "img")
    first = store.record_verdict(a.id, "real_fault", "pit", "ann")
    assert not first.counted
    assert first.message is None
    assert first.state == "awaiting_confirm"
    assert store.queue_stats(user="ann").count == 1  # ann does not see her own item again
    assert store.queue_stats(user="bob").count == 2
    with pytest.raises(AlreadyDecided, match="second reviewer"):
        store.record_verdict(a.id, "real_fault", "pit", "ann")
    second = store.record_verdict(a.id, "real_fault", "", "bob")
    assert second.counted and second.message.kind == "pit"
    store.record_verdict(b.id, "real_fault", "pit", "ann")
    assert store.record_verdict(b.id, "not_defect", "glare", "bob").state == "disputed"
    assert store.get_review(b.id)["final_verdict"] is None


def test_ten_concurrent_verdicts_exactly_one_counts(tmp_path):
    path = tmp_path / "s.db"
    setup = Store(path)
    (h,) = add_reviews(setup, 1, tmp_path / "img")
    setup.close()
    start = threading.Barrier(10)
    results: list[str] = []
    lock = threading.Lock()

    def vote(i: int) -> None:
        s = Store(path, migrate=False)
        start.wait()
        try:
            s.record_verdict(h.id, "not_defect", "dust", f"user{i}")
            r = "counted"
        except AlreadyDecided:
            r = "refused"
        except Exception as exc:  # e.g. "database is locked" would land here and fail the test
            r = f"error: {exc}"
        finally:
            s.close()
        with lock:
            results.append(r)

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["counted"] + ["refused"] * 9
    check = Store(path)
    assert len(check.live_verdicts(h.id)) == 1
    assert len(check.audit_entries(action="verdict")) == 1


def test_the_queue_count_the_database_keeps_follows_every_open_and_close(tmp_path):
    store = Store(tmp_path / "s.db")
    store.set_line_critical("L1", True, "ada")
    a = add_reviews(store, 4, tmp_path / "img", line="L1", camera="c1")
    b = add_reviews(store, 3, tmp_path / "img", line="L2", camera="c2")

    def counted(line=None, camera=None):
        where, args = store._queue_where(line, camera, None)
        truth = store.conn.execute(f"SELECT count(*) FROM reviews WHERE {where}", args).fetchone()[0]
        kept = store.queue_stats(line, camera).count
        assert kept == truth, (line, camera, kept, truth)
        return kept

    assert (counted(), counted("L1"), counted(camera="c2"), counted("L1", "c2")) == (7, 4, 3, 0)
    store.record_verdict(b[0].id, "not_defect", "glare", "ann")  # closes
    store.record_verdict(a[0].id, "real_fault", "crack", "ann")  # critical: stays open for a second reviewer
    assert (counted(), counted("L2")) == (6, 2)
    store.record_verdict(a[0].id, "not_defect", "", "bob")  # disagreement: disputed, closed
    assert counted("L1") == 3
    store.rule_dispute(a[0].id, "real_fault", "crack", "erik")
    assert counted() == 5
    (c,) = add_reviews(store, 1, tmp_path / "img", line="L1", camera="c1")
    store.record_verdict(c.id, "not_defect", "dust", "cy")
    store.undo_last("cy", window_s=3600)  # undone: open again
    assert counted("L1") == 4
    store.record_verdict(c.id, "not_defect", "dust", "cy")
    store.undo_last("erik", window_s=3600)  # the ruling back: disputed again, still closed
    store.conn.execute("DELETE FROM verdicts WHERE review_id = ?", (b[1].id,))
    with store.write() as conn:
        conn.execute("DELETE FROM reviews WHERE id = ?", (b[1].id,))  # a removed open review leaves the count
    assert (counted(), counted("L2"), counted("L1")) == (4, 1, 3)
