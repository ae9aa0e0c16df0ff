"""The serial wire protocol (docs/protocol.md), shared by SerialHal and firmware_sim.

A frame is COBS(header + payload + CRC) followed by one 0x00 delimiter, so a receiver that
starts mid-stream or meets garbage resynchronises at the next zero byte. Header and payload
are little-endian; the CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection,
no final xor; check value 0x29B1 for "123456789"), computed by the stdlib's
`binascii.crc_hqx(data, 0xFFFF)`.

`Decoder.feed` takes any chunking of the byte stream and never raises on bad input: every
rejected frame is counted by cause.
"""

from __future__ import annotations

import binascii
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from cobs import cobs

from controller.protocol.wire import (
    EVENTS,
    NAKS,
    PROTOCOL_VERSION,
    REASONS,
    WIRE_PUMPS,
    WIRE_SENSORS,
    WIRE_VALVE_POSITIONS,
    WIRE_VALVES,
)

HEADER = struct.Struct("<BBHHI")  # version, type, seq, ack, session
CRC = struct.Struct("<H")
#: Largest decoded frame (header + payload + CRC); anything longer is garbage.
MAX_FRAME = 256
#: ... and its COBS encoding: one code byte per 254 bytes, plus one.
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1
VALVE_NAMES = WIRE_VALVES
PUMP_NAMES = WIRE_PUMPS
SENSOR_NAMES = WIRE_SENSORS
VALVE_POSITIONS = WIRE_VALVE_POSITIONS
#: the tables a codec user reads by number, from here as from wire.py
__all__ = ["EVENTS", "NAKS", "PROTOCOL_VERSION", "REASONS"]


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    return binascii.crc_hqx(data, 0xFFFF)


class MsgType(IntEnum):
    HELLO = 0x01
    INFO = 0x02
    SET_PUMP = 0x10
    SET_VALVE = 0x11
    SET_LIMITS = 0x12
    GET_LIMITS = 0x13
    LIMITS = 0x14
    ENTER_SAFE = 0x15
    ARM = 0x16
    HEARTBEAT = 0x17
    TIME_GRANT = 0x18
    SAMPLE = 0x20
    EVENT = 0x21
    ACK = 0x30
    NAK = 0x31
    SIM_FAULT = 0x40


class PayloadError(ValueError):
    """A payload that does not match its type's layout."""


def _str(value: str) -> bytes:
    raw = value.encode()[:255]
    return bytes([len(raw)]) + raw


def _read_str(data: bytes, at: int) -> tuple[str, int]:
    if at >= len(data):
        raise PayloadError("string length missing")
    n = data[at]
    end = at + 1 + n
    if end > len(data):
        raise PayloadError("string runs past the payload")
    return data[at + 1 : end].decode(errors="replace"), end


# -- messages -------------------------------------------------------------------------------
#: INFO's clock: 0 follows the wall clock (a real MCU), 1 runs only as far as granted
CLOCK_WALL = 0
CLOCK_LOCKSTEP = 1
INFO_HEAD = struct.Struct("<BHHBI")  # version, tick ms, sample period ms, clock, rig time ms


@dataclass(frozen=True, slots=True)
class Info:
    """The answer to HELLO: who the firmware is, its timing, and its clock (`clock` 1: the
    rig time advances only as far as TIME_GRANT allows; `t_ms`: rig time now)."""

    TYPE: ClassVar[MsgType] = MsgType.INFO
    protocol_version: int
    tick_ms: int
    sample_period_ms: int
    firmware_version: str
    rig_id: str
    clock: int = CLOCK_WALL
    t_ms: int = 0

    def pack(self) -> bytes:
        head = INFO_HEAD.pack(
            self.protocol_version, self.tick_ms, self.sample_period_ms, self.clock, self.t_ms
        )
        return head + _str(self.firmware_version) + _str(self.rig_id)

    @classmethod
    def unpack(cls, data: bytes) -> Info:
        if len(data) < INFO_HEAD.size:
            raise PayloadError(f"INFO is shorter than {INFO_HEAD.size} bytes")
        version, tick, period, clock, t_ms = INFO_HEAD.unpack_from(data)
        fw, at = _read_str(data, INFO_HEAD.size)
        rig, at = _read_str(data, at)
        if at != len(data) or clock > CLOCK_LOCKSTEP:
            raise PayloadError("INFO has trailing bytes or an unknown clock")
        return cls(version, tick, period, fw, rig, clock, t_ms)


@dataclass(frozen=True, slots=True)
class TimeGrant:
    """Controller -> firmware, lockstep clock only: run the rig clock up to `until_ms`
    (rig time since power-on). Not acknowledged: the samples it lets out are the answer."""

    TYPE: ClassVar[MsgType] = MsgType.TIME_GRANT
    until_ms: int

    def pack(self) -> bytes:
        return struct.pack("<I", self.until_ms)

    @classmethod
    def unpack(cls, data: bytes) -> TimeGrant:
        return cls(*_exact("<I", data))


@dataclass(frozen=True, slots=True)
class SetPump:
    TYPE: ClassVar[MsgType] = MsgType.SET_PUMP
    pump: int
    rate: float

    def pack(self) -> bytes:
        return struct.pack("<Bf", self.pump, self.rate)

    @classmethod
    def unpack(cls, data: bytes) -> SetPump:
        return cls(*_exact("<Bf", data))


@dataclass(frozen=True, slots=True)
class SetValve:
    TYPE: ClassVar[MsgType] = MsgType.SET_VALVE
    valve: int
    position: int

    def pack(self) -> bytes:
        return struct.pack("<BB", self.valve, self.position)

    @classmethod
    def unpack(cls, data: bytes) -> SetValve:
        return cls(*_exact("<BB", data))


LIMITS_LAYOUT = "<fffH" + "f" * len(PUMP_NAMES)


@dataclass(frozen=True, slots=True)
class LimitsMsg:
    """SET_LIMITS (controller -> firmware) and LIMITS (the read-back) share one layout."""

    TYPE: ClassVar[MsgType] = MsgType.SET_LIMITS
    return_low_mmhg: float
    return_high_mmhg: float
    access_low_mmhg: float
    heartbeat_timeout_ms: int
    pump_max: tuple[float, ...]

    def pack(self) -> bytes:
        return struct.pack(
            LIMITS_LAYOUT,
            self.return_low_mmhg,
            self.return_high_mmhg,
            self.access_low_mmhg,
            self.heartbeat_timeout_ms,
            *self.pump_max,
        )

    @classmethod
    def unpack(cls, data: bytes) -> LimitsMsg:
        v = _exact(LIMITS_LAYOUT, data)
        return cls(v[0], v[1], v[2], v[3], tuple(v[4:]))


@dataclass(frozen=True, slots=True)
class LimitsReply(LimitsMsg):
    TYPE: ClassVar[MsgType] = MsgType.LIMITS


@dataclass(frozen=True, slots=True)
class Empty:
    """HELLO, GET_LIMITS, ENTER_SAFE, ARM, HEARTBEAT, ACK: no payload."""

    TYPE: MsgType

    def pack(self) -> bytes:
        return b""


SAMPLE_HEAD = struct.Struct("<IIBBBBH")
SAMPLE_FLOATS = struct.Struct("<" + "f" * (2 * len(PUMP_NAMES) + len(SENSOR_NAMES)))
#: cumulative encoder volume of each pump since power-on (mL, f64: exact to a count for days)
SAMPLE_TOTALS = struct.Struct("<" + "d" * len(PUMP_NAMES))
SAMPLE_SIZE = SAMPLE_HEAD.size + SAMPLE_FLOATS.size + SAMPLE_TOTALS.size


@dataclass(frozen=True, slots=True)
class SampleMsg:
    TYPE: ClassVar[MsgType] = MsgType.SAMPLE
    t_ms: int
    counter: int
    safe: bool
    reason: int
    air: bool
    leak: bool
    collect: bool
    clamp_open: bool
    valid: tuple[bool, ...]
    commanded: tuple[float, ...]
    measured: tuple[float, ...]
    sensors: tuple[float, ...]
    totals: tuple[float, ...] = (0.0,) * len(PUMP_NAMES)

    def pack(self) -> bytes:
        valid = sum(1 << i for i, ok in enumerate(self.valid) if ok)
        head = SAMPLE_HEAD.pack(
            self.t_ms,
            self.counter,
            1 if self.safe else 0,
            self.reason,
            (1 if self.air else 0) | (2 if self.leak else 0),
            (1 if self.collect else 0) | (2 if self.clamp_open else 0),
            valid,
        )
        return (
            head
            + SAMPLE_FLOATS.pack(*self.commanded, *self.measured, *self.sensors)
            + SAMPLE_TOTALS.pack(*self.totals)
        )

    @classmethod
    def unpack(cls, data: bytes) -> SampleMsg:
        if len(data) != SAMPLE_SIZE:
            raise PayloadError(f"SAMPLE must be {SAMPLE_SIZE} bytes")
        t, counter, safe, reason, det, valves, valid = SAMPLE_HEAD.unpack_from(data)
        floats = SAMPLE_FLOATS.unpack_from(data, SAMPLE_HEAD.size)
        totals = SAMPLE_TOTALS.unpack_from(data, SAMPLE_HEAD.size + SAMPLE_FLOATS.size)
        n = len(PUMP_NAMES)
        if reason >= len(REASONS) or safe > 1:
            raise PayloadError("SAMPLE state or reason out of range")
        return cls(
            t_ms=t,
            counter=counter,
            safe=bool(safe),
            reason=reason,
            air=bool(det & 1),
            leak=bool(det & 2),
            collect=bool(valves & 1),
            clamp_open=bool(valves & 2),
            valid=tuple(bool(valid >> i & 1) for i in range(len(SENSOR_NAMES))),
            commanded=floats[:n],
            measured=floats[n : 2 * n],
            sensors=floats[2 * n :],
            totals=totals,
        )


@dataclass(frozen=True, slots=True)
class EventMsg:
    TYPE: ClassVar[MsgType] = MsgType.EVENT
    t_ms: int
    code: int
    detail: str = ""

    def pack(self) -> bytes:
        return struct.pack("<IB", self.t_ms, self.code) + _str(self.detail)

    @classmethod
    def unpack(cls, data: bytes) -> EventMsg:
        if len(data) < 6:
            raise PayloadError("EVENT is shorter than 6 bytes")
        t, code = struct.unpack_from("<IB", data)
        detail, at = _read_str(data, 5)
        if at != len(data) or code >= len(EVENTS):
            raise PayloadError("EVENT code out of range or trailing bytes")
        return cls(t, code, detail)


@dataclass(frozen=True, slots=True)
class Nak:
    TYPE: ClassVar[MsgType] = MsgType.NAK
    code: int

    def pack(self) -> bytes:
        return bytes([self.code])

    @classmethod
    def unpack(cls, data: bytes) -> Nak:
        (code,) = _exact("<B", data)
        return cls(code)


@dataclass(frozen=True, slots=True)
class SimFault:
    """Simulator only: inject (op 1) or clear (op 0) a named fault; params as JSON."""

    TYPE: ClassVar[MsgType] = MsgType.SIM_FAULT
    op: int
    name: str
    params: dict[str, object] = field(default_factory=dict)

    def pack(self) -> bytes:
        return bytes([self.op]) + _str(self.name) + _str(json.dumps(self.params))

    @classmethod
    def unpack(cls, data: bytes) -> SimFault:
        if not data:
            raise PayloadError("SIM_FAULT is empty")
        name, at = _read_str(data, 1)
        params, at = _read_str(data, at)
        try:
            decoded = json.loads(params or "{}")
        except ValueError as exc:
            raise PayloadError("SIM_FAULT params are not JSON") from exc
        if at != len(data) or not isinstance(decoded, dict):
            raise PayloadError("SIM_FAULT params must be a JSON object")
        return cls(data[0], name, decoded)


def _exact(layout: str, data: bytes) -> tuple[Any, ...]:
    if len(data) != struct.calcsize(layout):
        raise PayloadError(f"payload must be {struct.calcsize(layout)} bytes, got {len(data)}")
    return struct.unpack(layout, data)


Message = (
    Info
    | SetPump
    | SetValve
    | LimitsMsg
    | Empty
    | TimeGrant
    | SampleMsg
    | EventMsg
    | Nak
    | SimFault
)

_EMPTY = frozenset(
    {
        MsgType.HELLO,
        MsgType.GET_LIMITS,
        MsgType.ENTER_SAFE,
        MsgType.ARM,
        MsgType.HEARTBEAT,
        MsgType.ACK,
    }
)
_DECODERS: dict[MsgType, Callable[[bytes], Message]] = {
    MsgType.TIME_GRANT: TimeGrant.unpack,
    MsgType.INFO: Info.unpack,
    MsgType.SET_PUMP: SetPump.unpack,
    MsgType.SET_VALVE: SetValve.unpack,
    MsgType.SET_LIMITS: LimitsMsg.unpack,
    MsgType.LIMITS: LimitsReply.unpack,
    MsgType.SAMPLE: SampleMsg.unpack,
    MsgType.EVENT: EventMsg.unpack,
    MsgType.NAK: Nak.unpack,
    MsgType.SIM_FAULT: SimFault.unpack,
}


def message_type(msg: Message) -> MsgType:
    return msg.TYPE


# -- frames -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Frame:
    type: MsgType
    seq: int
    ack: int
    message: Message
    #: the controller's session nonce (HELLO's, or the owner's on firmware frames; 0: none)
    session: int = 0


def encode(msg: Message, seq: int, ack: int = 0, session: int = 0) -> bytes:
    """One complete frame on the wire, delimiter included."""
    body = (
        HEADER.pack(PROTOCOL_VERSION, msg.TYPE, seq & 0xFFFF, ack & 0xFFFF, session & 0xFFFFFFFF)
        + msg.pack()
    )
    return cobs.encode(body + CRC.pack(crc16(body))) + b"\x00"


def decode_body(raw: bytes) -> Frame:
    """A frame's bytes between delimiters -> Frame; raises FrameError with the cause."""
    if len(raw) > MAX_ENCODED:
        raise FrameError("length")
    try:
        body = cobs.decode(raw)
    except cobs.DecodeError as exc:
        raise FrameError("cobs") from exc
    if len(body) < 1 + CRC.size or len(body) > MAX_FRAME:
        raise FrameError("length")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if crc16(body[: -CRC.size]) != crc:
        raise FrameError("crc")
    # the version byte comes first in every version of the protocol, whatever follows it
    if body[0] != PROTOCOL_VERSION:
        raise FrameError("version", version=body[0])
    if len(body) < HEADER.size + CRC.size:
        raise FrameError("length")
    _, mtype, seq, ack, session = HEADER.unpack_from(body)
    try:
        kind = MsgType(mtype)
    except ValueError as exc:
        raise FrameError("unknown_type") from exc
    payload = body[HEADER.size : -CRC.size]
    try:
        if kind in _EMPTY:
            if payload:
                raise PayloadError("this type has no payload")
            message: Message = Empty(kind)
        else:
            message = _DECODERS[kind](payload)
    except (PayloadError, struct.error, UnicodeError) as exc:
        raise FrameError("payload") from exc
    return Frame(kind, seq, ack, message, session)


class FrameError(ValueError):
    """Why a frame was rejected: cobs, length, crc, version, unknown_type, payload."""

    def __init__(self, cause: str, version: int | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        #: for `version`: the version byte of a frame whose CRC was good
        self.version = version


@dataclass(slots=True)
class Decoder:
    """Incremental: feed any chunks, get whole valid frames; bad input is counted, not raised."""

    buffer: bytearray = field(default_factory=bytearray)
    frames: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    #: the version byte of the last well-formed frame of another protocol version: a peer
    #: that speaks another version is told apart from noise
    foreign_version: int | None = None
    _skipping: bool = False

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        *complete, tail = bytes(data).split(b"\x00")
        for part in complete:  # each is followed by a delimiter
            if self._skipping:  # the end of an over-long run of garbage
                self._skipping = False
                self._count("length")
            elif self.buffer or part:  # back-to-back delimiters are an idle line
                self._one(bytes(self.buffer) + part, out)
            self.buffer.clear()
        if not self._skipping:
            self.buffer += tail
            if len(self.buffer) > MAX_ENCODED:
                self.buffer.clear()
                self._skipping = True
        return out

    def _one(self, raw: bytes, out: list[Frame]) -> None:
        try:
            out.append(decode_body(raw))
            self.frames += 1
        except FrameError as exc:
            if exc.version is not None:
                self.foreign_version = exc.version
            self._count(exc.cause)

    def _count(self, cause: str) -> None:
        self.rejected[cause] = self.rejected.get(cause, 0) + 1


def nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value
