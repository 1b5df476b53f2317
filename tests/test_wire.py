"""The wire contract: envelope round trip and refusal of malformed payloads."""
import struct
import uuid

import pytest

from qcloop import wire
from qcloop.errors import WireError

JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"


def header(**over):
    base = dict(id=wire.new_review_id(), part_id="p-1", line="L1", camera="cam1", captured_at=1.7e9,
                model="v1", score=0.5, band="uncertain", action_taken="HOLD", reason="uncertain",
                quality={"saturated": 0.12})
    base.update(over)
    return wire.ReviewHeader(**base)


def test_envelope_round_trip_keeps_header_and_image():
    h = header()
    got, img = wire.decode_review(wire.encode_review(h, JPEG))
    assert got == h and img == JPEG


def test_envelope_starts_with_big_endian_header_length():
    payload = wire.encode_review(header(), JPEG)
    (n,) = struct.unpack(">I", payload[:4])
    assert payload[4 + n:] == JPEG


@pytest.mark.parametrize("payload, message", [
    (b"", "shorter"),
    (struct.pack(">I", 999) + b"{}", "does not fit"),
    (struct.pack(">I", 2) + b"{}" + JPEG, "lacks"),
    (struct.pack(">I", 3) + b"{x}" + JPEG, "not valid JSON"),
])
def test_malformed_envelopes_are_refused_with_a_reason(payload, message):
    with pytest.raises(WireError, match=message):
        wire.decode_review(payload)


def test_truncated_jpeg_is_refused():
    payload = wire.encode_review(header(), JPEG)[:-5]
    with pytest.raises(WireError, match="truncated JPEG"):
        wire.decode_review(payload)


def test_oversized_envelope_is_refused():
    with pytest.raises(WireError, match="over the limit"):
        wire.decode_review(wire.encode_review(header(), JPEG), max_bytes=50)


@pytest.mark.parametrize("field, value", [("score", 1.5), ("score", "high"), ("reason", "whim"), ("id", "nope"),
                                          ("part_id", "")])
def test_bad_header_fields_are_named(field, value):
    with pytest.raises(WireError, match=field if field != "score" or value != 1.5 else "score"):
        wire.encode_review(header(**{field: value}), JPEG)


def test_topics_carry_line_and_camera_and_refuse_wildcards():
    t = wire.Topics()
    assert t.review("L1", "cam1") == "qc/v1/L1/cam1/review"
    assert t.parse_review_topic("qc/v1/L1/cam1/review") == ("L1", "cam1")
    with pytest.raises(WireError):
        t.review("L/1", "cam1")


def test_verdict_decode_refuses_unknown_verdict():
    with pytest.raises(WireError, match="'verdict' must be one of 'real_fault', 'not_defect'"):
        wire.Verdict.decode(b'{"review_id":"%s","verdict":"maybe","kind":"","user":"u","time":1}' % _ID)


_ID = str(uuid.uuid4()).encode()


@pytest.mark.parametrize("payload, message", [
    (b'{"review_id": 7, "time": "soon", "undone": "no"}', "field 'review_id' must be a string, got 7"),
    (b'{"review_id": "r1", "verdict": "real_fault", "kind": "", "user": "u", "time": 1}', "must be a UUID"),
    (b'{"review_id": "%s", "verdict": "real_fault", "kind": "", "user": "u", "time": "soon"}' % _ID,
     "field 'time' must be a number, got 'soon'"),
    (b'{"review_id": "%s", "verdict": "real_fault", "kind": "", "user": "u", "time": 1, "undone": "no"}' % _ID,
     "field 'undone' must be true or false"),
    (b'{"review_id": "%s", "verdict": "real_fault", "kind": "", "user": "u", "time": NaN}' % _ID, "not valid JSON"),
    (b'{"review_id": "%s", "verdict": "real_fault", "user": "u", "time": 1}' % _ID, "field 'kind' is missing"),
])
def test_verdict_decode_checks_every_field(payload, message):
    with pytest.raises(WireError, match=message):
        wire.Verdict.decode(payload)


def test_verdict_ids_are_normalised():
    rid = uuid.uuid4()
    v = wire.Verdict.decode(wire.Verdict(str(rid).upper(), "not_defect", "glare", "u", 1.0).encode())
    assert v.review_id == str(rid)


@pytest.mark.parametrize("payload, message", [
    (b'{"state":"running","parts":"lots"}', "field 'parts' must be an integer, got 'lots'"),
    (b'{"state":"dancing"}', "field 'state' must be one of"),
    (b'{"state":"running","parts":-1}', "field 'parts' must be in"),
    (b'{"state":"running","by_model":{"1.0":{"parts":true}}}', "field 'by_model.1.0.parts' must be an integer"),
    (b'{"state":"running","alarms":{"late":3}}', "field 'alarms.late' must be a string"),
    (b'[1, 2]', "must be a JSON object"),
])
def test_edge_status_decode_refuses_malformed_fields(payload, message):
    with pytest.raises(WireError, match=message):
        wire.EdgeStatus.decode(payload)


def test_every_json_message_round_trips_and_refuses_nan_on_encode():
    messages = [
        wire.ReviewAck(str(uuid.uuid4()), True, "s1"),
        wire.Verdict(str(uuid.uuid4()), "real_fault", "pit", "olga", 1.7e9, undone=True),
        wire.ModelAnnouncement("1.2.0", "http://t/m.json", "ab" * 32, "sig", "shadow"),
        wire.RetrainRequest("erik", 1.7e9, line="L1"),
        wire.PartResult("p1", 1.7e9, None, "REJECT", "none", "1.0.0", 3.5, "late"),
        wire.EdgeStatus("running", line="L1", camera="c1", model="1.0", parts=5, outbox_depth=2,
                        by_model={"1.0": wire.ModelCounts(5, {"PASS": 5}, {"audit": 1})}, alarms={"late": "x"}),
    ]
    for m in messages:
        assert type(m).decode(m.encode()) == m
    with pytest.raises(WireError, match="cannot encode"):
        wire.PartResult("p1", float("nan"), 0.5, "PASS", "pass", "1.0.0", 1.0).encode()
