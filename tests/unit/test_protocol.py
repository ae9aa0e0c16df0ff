"""The wire protocol: documented vectors, resynchronisation, rejection, fuzzing."""

from __future__ import annotations

import math
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.protocol import codec as p
from controller.protocol.vectors import SESSION, VECTORS, markdown, worked_example

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def same(a: p.Message, b: p.Message) -> bool:
    """Equal, NaN included (the SAMPLE vector carries a missing sensor)."""
    return type(a) is type(b) and a.pack() == b.pack()


def test_crc_is_ccitt_false_with_its_check_value() -> None:
    assert p.crc16(b"123456789") == 0x29B1


def test_every_vector_in_the_document_decodes_to_its_message() -> None:
    text = DOC.read_text()
    assert markdown() in text, "run `python -m controller.protocol.vectors` and update the doc"
    assert worked_example() in text, "the worked CRC example: regenerate it as above"
    found = re.findall(r"`((?:[0-9a-f]{2})+00)`", text)
    assert len(found) == len(VECTORS)
    for hex_frame, (title, msg, seq, ack) in zip(found, VECTORS, strict=True):
        frames = p.Decoder().feed(bytes.fromhex(hex_frame))
        assert len(frames) == 1, title
        frame = frames[0]
        assert (frame.type, frame.seq, frame.ack, frame.session) == (msg.TYPE, seq, ack, SESSION)
        assert same(frame.message, msg), title
    assert {m.TYPE for _, m, _, _ in VECTORS} == set(p.MsgType)


def test_a_frame_of_another_version_is_refused_and_its_version_remembered() -> None:
    """A version-2 peer (6-byte header) is told apart from noise: the controller can say
    which version the firmware speaks instead of timing out in silence."""
    from cobs import cobs

    body = bytes([2, p.MsgType.INFO, 7, 0, 1, 0]) + b"payload"
    v2 = cobs.encode(body + p.CRC.pack(p.crc16(body))) + b"\x00"
    d = p.Decoder()
    assert d.feed(v2) == []
    assert d.rejected == {"version": 1}
    assert d.foreign_version == 2


def test_the_sample_vector_keeps_a_missing_sensor_as_nan() -> None:
    sample = next(m for _, m, _, _ in VECTORS if isinstance(m, p.SampleMsg))
    frame = p.Decoder().feed(p.encode(sample, 1))[0]
    assert math.isnan(frame.message.sensors[-1])  # type: ignore[union-attr]
    assert frame.message.valid[-1] is False  # type: ignore[union-attr]


STREAM = b"".join(p.encode(m, s, a) for _, m, s, a in VECTORS)


def test_any_chunking_gives_the_same_frames() -> None:
    whole = p.Decoder().feed(STREAM)
    assert len(whole) == len(VECTORS)
    byte_by_byte = p.Decoder()
    frames = [f for b in STREAM for f in byte_by_byte.feed(bytes([b]))]
    assert [f.seq for f in frames] == [f.seq for f in whole]
    for size in (2, 7, 64):
        d = p.Decoder()
        chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
        assert len([f for c in chunks for f in d.feed(c)]) == len(VECTORS)


def test_it_resynchronises_after_garbage_and_counts_what_it_dropped() -> None:
    d = p.Decoder()
    good = p.encode(p.SetPump(0, 100.0), 9)
    noise = bytes(range(1, 255)) * 3  # longer than any frame, no delimiter
    frames = d.feed(b"\x13\x37garbage\x00" + good + noise + b"\x00" + good)
    assert [f.seq for f in frames] == [9, 9]
    assert d.rejected.get("length") == 1  # the over-long run
    assert sum(d.rejected.values()) == 2  # and the short garbage
    # garbage glued to the front of a frame costs that frame, and only that one
    glued = p.Decoder().feed(b"\x13\x37" + good + good)
    assert [f.seq for f in glued] == [9]


def test_bad_crc_unknown_type_and_bad_payload_are_rejected() -> None:
    from cobs import cobs

    def raw(body: bytes) -> bytes:
        return cobs.encode(body + p.CRC.pack(p.crc16(body))) + b"\x00"

    v = p.PROTOCOL_VERSION
    good = p.HEADER.pack(v, p.MsgType.SET_PUMP, 1, 0, 5) + p.SetPump(0, 50.0).pack()
    bad_crc = cobs.encode(good + b"\x00\x00") + b"\x00"
    unknown = raw(p.HEADER.pack(v, 0x7E, 1, 0, 5))
    short = raw(p.HEADER.pack(v, p.MsgType.SET_PUMP, 1, 0, 5) + b"\x00")
    version = raw(p.HEADER.pack(v + 1, p.MsgType.ARM, 1, 0, 5))
    d = p.Decoder()
    assert d.feed(bad_crc + unknown + short + version + raw(good))[0].seq == 1
    assert d.rejected == {"crc": 1, "unknown_type": 1, "payload": 1, "version": 1}


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 64), max_size=8))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    d = p.Decoder()
    at = 0
    for cut in [*cuts, len(data)]:
        for frame in d.feed(data[at : at + cut]):
            assert isinstance(frame.type, p.MsgType)
        at += cut
    d.feed(data[at:])


@settings(max_examples=10_000, deadline=None)
@given(
    st.sampled_from(VECTORS),
    st.integers(0, 10_000),
    st.integers(1, 255),
)
def test_fuzz_a_mutated_frame_is_never_accepted_as_something_else(
    vector: tuple[str, p.Message, int, int], where: int, xor: int
) -> None:
    _, msg, seq, ack = vector
    frame = bytearray(p.encode(msg, seq, ack))
    i = where % (len(frame) - 1)  # not the delimiter
    frame[i] ^= xor
    d = p.Decoder()
    accepted = d.feed(bytes(frame) + p.encode(msg, seq, ack))
    # whatever the damage, the intact copy behind it is always decoded
    assert accepted and same(accepted[-1].message, msg)
    if len(accepted) > 1:
        # a damaged frame gets through only if its own CRC still checks (a collision)
        from cobs import cobs

        body = cobs.decode(bytes(frame[: frame.index(0)]))
        assert p.crc16(body[:-2]) == p.CRC.unpack(body[-2:])[0]


def test_the_wire_tables_and_the_rig_layout_agree() -> None:
    """The wire order is frozen in controller/protocol/wire.py; the rig's names live in
    controller/rig. Reordering one without the other would renumber pumps on the wire."""
    from controller import rig
    from controller.protocol import wire

    assert wire.WIRE_PUMPS == rig.PUMP_NAMES
    assert wire.WIRE_SENSORS == rig.SENSOR_NAMES
    assert tuple(rig.VALVE_POSITIONS) == wire.WIRE_VALVES
    assert wire.WIRE_VALVE_POSITIONS == rig.VALVE_POSITIONS
    assert tuple(r.value for r in rig.SafeReason) == wire.REASONS
    assert tuple(r.value for r in rig.Refusal) == wire.NAKS
    assert tuple(e.value for e in rig.FirmwareEvent) == wire.EVENTS


def test_the_protocol_version_is_defined_once() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    defined = [
        str(path.relative_to(root))
        for folder in ("controller", "firmware_sim")
        for path in (root / folder).rglob("*.py")
        if "PROTOCOL_VERSION = " in path.read_text()
    ]
    assert defined == ["controller/protocol/wire.py"]
