"""The outbox keeps reviews durable until acknowledged, evicts audits first, and cleans up after crashes."""
import pytest

from edge.errors import OutboxFullError
from edge.outbox import Outbox
from qcloop import wire

JPEG = b"\xff\xd8" + b"\x11" * 1000 + b"\xff\xd9"


def header(reason="uncertain", part="p"):
    return wire.ReviewHeader(id=wire.new_review_id(), part_id=part, line="L1", camera="c1", captured_at=1.7e9,
                             model="1.0.0", score=0.5, band="uncertain", action_taken="HOLD", reason=reason)


def test_put_then_due_then_ack_removes_row_and_file(tmp_path):
    box = Outbox(tmp_path)
    h = header()
    box.put(h, JPEG)
    (item,) = box.due(resend_after_s=10, limit=10)
    assert item.header == h and item.path.read_bytes() == JPEG
    assert wire.decode_review(box.envelope(item)) == (h, JPEG)
    assert box.ack(h.id) is True
    assert box.depth() == 0
    assert not item.path.exists()
    assert box.bytes == 0
    assert box.ack(h.id) is False


def test_sent_items_are_not_due_until_the_resend_window_passes(tmp_path):
    box = Outbox(tmp_path)
    h = header()
    box.put(h, JPEG)
    box.mark_sent([h.id], now=1000.0)
    assert box.due(resend_after_s=10, limit=10, now=1005.0) == []
    assert box.in_flight(10, now=1005.0) == 1
    assert [p.id for p in box.due(resend_after_s=10, limit=10, now=1011.0)] == [h.id]


def test_reviews_survive_a_reopen(tmp_path):
    box = Outbox(tmp_path)
    ids = []
    for i in range(5):
        h = header(part=f"p{i}")
        box.put(h, JPEG)
        ids.append(h.id)
    box.mark_sent(ids[:2])
    box.close()  # as after a restart: unacknowledged items are all still there
    again = Outbox(tmp_path)
    again.reset_sent()
    assert [p.id for p in again.due(10, 100)] == ids
    assert again.bytes == 5 * len(JPEG)


def test_orphan_files_from_a_crash_are_removed(tmp_path):
    box = Outbox(tmp_path)
    box.put(header(), JPEG)
    box.close()
    (tmp_path / "images" / "half-written.jpg.tmp").write_bytes(b"\xff\xd8")
    (tmp_path / "images" / "no-row.jpg").write_bytes(JPEG)
    Outbox(tmp_path)
    assert sorted(p.suffix for p in (tmp_path / "images").iterdir()) == [".jpg"]


def test_byte_limit_evicts_oldest_audits_first_then_refuses(tmp_path):
    box = Outbox(tmp_path, max_bytes=1024 * 1024)
    big = b"\xff\xd8" + b"\x00" * (300 * 1024) + b"\xff\xd9"
    a1, a2, u1 = header("audit", "a1"), header("audit", "a2"), header("uncertain", "u1")
    for h in (a1, a2, u1):
        box.put(h, big)
    u2 = header("uncertain", "u2")
    box.put(u2, big)  # needs room: the oldest audit goes
    assert box.ids() == {a2.id, u1.id, u2.id} and box.evicted == 1
    box.put(header("fail-safe", "f1"), big)  # the next audit goes
    assert a2.id not in box.ids() and box.evicted == 2
    with pytest.raises(OutboxFullError, match="no audit item left"):
        box.put(header("uncertain", "u3"), big)
    assert box.depth() == 3  # nothing already stored was lost
