"""The wire contract: envelope round trip and refusal of malformed payloads."""
import struct

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
    (struct.pack(">I", 3) + b"{x}" + JPEG, "not valid UTF-8 JSON"),
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
    with pytest.raises(WireError, match="verdict must be"):
        wire.Verdict.decode(b'{"review_id":"x","verdict":"maybe"}')
