"""Test vectors of docs/protocol.md: one frame per message type, with its decoded form.

`python -m controller.protocol.vectors` prints the markdown table that the document embeds; a test
decodes every hex string found in the document and checks it against this list.
"""

from __future__ import annotations

from controller.protocol import codec as p

NAN = float("nan")

#: the session nonce every vector carries in its header (a controller's HELLO, the firmware's
#: frames to its owner)
SESSION = 0x12345678

VECTORS: list[tuple[str, p.Message, int, int]] = [
    ("HELLO (session 0x12345678 in the header)", p.Empty(p.MsgType.HELLO), 1, 0),
    (
        "INFO v3, tick 10 ms, samples 100 ms, wall clock, rig time 1000 ms",
        p.Info(3, 10, 100, "fwsim-0.1.0", "rig-01", p.CLOCK_WALL, 1000),
        7,
        1,
    ),
    (
        "INFO v3 ... lockstep clock, rig time 0",
        p.Info(3, 10, 100, "fwsim-0.1.0", "rig-01", p.CLOCK_LOCKSTEP, 0),
        7,
        1,
    ),
    ("SET_PUMP blood (0) 120.0 mL/min", p.SetPump(0, 120.0), 2, 0),
    ("SET_VALVE venous_clamp (1) open (1)", p.SetValve(1, 1), 3, 0),
    (
        "SET_LIMITS 10 / 300 / -250 mmHg, 500 ms, spec.md pump maxima",
        p.LimitsMsg(10.0, 300.0, -250.0, 500, (250.0, 60.0, 60.0, 300.0, 100.0, 100.0, 60.0, 20.0)),
        4,
        0,
    ),
    ("GET_LIMITS", p.Empty(p.MsgType.GET_LIMITS), 5, 0),
    (
        "LIMITS (answer to seq 5)",
        p.LimitsReply(
            10.0, 300.0, -250.0, 500, (250.0, 60.0, 60.0, 300.0, 100.0, 100.0, 60.0, 20.0)
        ),
        8,
        5,
    ),
    ("ENTER_SAFE", p.Empty(p.MsgType.ENTER_SAFE), 6, 0),
    ("ARM", p.Empty(p.MsgType.ARM), 7, 0),
    ("HEARTBEAT", p.Empty(p.MsgType.HEARTBEAT), 7, 0),
    ("TIME_GRANT until 1100 ms (lockstep only)", p.TimeGrant(1100), 7, 0),
    (
        "SAMPLE t=1000 ms, running, blood 120 (2 mL so far), clamp open, map missing",
        p.SampleMsg(
            t_ms=1000,
            counter=10,
            safe=False,
            reason=0,
            air=False,
            leak=False,
            collect=False,
            clamp_open=True,
            valid=(True,) * 14 + (False,),
            commanded=(120.0, 0, 0, 0, 0, 0, 0, 0),
            measured=(120.0, 0, 0, 0, 0, 0, 0, 0),
            # pressures, then scales, plasma_temp and map (missing)
            sensors=(
                *(-123.0, 132.0, 79.5, 90.0, 5.0, 5.0, 5.0, 5.0),
                *(5000.0, 0.0, 5000.0, 0.0, 0.0),
                *(37.0, NAN),
            ),
            # encoder volumes since power-on: the blood pump has moved 2 mL
            totals=(2.0, 0, 0, 0, 0, 0, 0, 0),
        ),
        9,
        7,
    ),
    ("EVENT t=1010 ms entered_safe, detail 'air'", p.EventMsg(1010, 1, "air"), 10, 7),
    ("ACK of seq 2", p.Empty(p.MsgType.ACK), 11, 2),
    ("NAK of seq 2: out_of_range (1)", p.Nak(1), 12, 2),
    ("NAK of seq 2: not_owner (10)", p.Nak(10), 13, 2),
    (
        "SIM_FAULT inject air_bubble (simulator only)",
        p.SimFault(1, "air_bubble", {}),
        14,
        0,
    ),
]


def markdown() -> str:
    lines = [
        "| message | seq | ack | frame on the wire (hex, delimiter included) |",
        "|---|---|---|---|",
    ]
    for title, msg, seq, ack in VECTORS:
        frame = p.encode(msg, seq, ack, SESSION).hex()
        lines.append(f"| {title} | {seq} | {ack} | `{frame}` |")
    return "\n".join(lines) + "\n"


def worked_example() -> str:
    """The CRC and COBS steps of the HELLO vector, computed here so the document cannot
    drift from the code."""
    _, msg, seq, ack = VECTORS[0]
    body = p.HEADER.pack(p.PROTOCOL_VERSION, msg.TYPE, seq, ack, SESSION) + msg.pack()
    crc = p.crc16(body)
    block = body + p.CRC.pack(crc)
    encoded = p.encode(msg, seq, ack, SESSION)

    def spaced(data: bytes) -> str:
        return " ".join(f"{b:02x}" for b in data)

    return (
        f"Worked CRC example: the HELLO above is the {len(body)}-byte header"
        f" `{spaced(body)}` (version {p.PROTOCOL_VERSION}, type 0x01, seq {seq}, ack {ack},"
        f" session 0x{SESSION:08x}) with no payload; CRC-16/CCITT-FALSE of it is"
        f" 0x{crc:04X}, appended little-endian as `{spaced(block[-2:])}`; COBS turns the"
        f" {len(block)} bytes into `{spaced(encoded[:-1])}`, and `00` ends the frame.\n"
    )


if __name__ == "__main__":
    print(markdown())
    print(worked_example(), end="")
