"""The firmware's side of the serial protocol: frames in, commands executed once, frames out.

Transport-free (the server feeds it bytes from a pty, a socket or a device) so it is the same
code in every test. Sequencing (docs/protocol.md, "duplicates"): within a session a command
is executed only if its sequence number is newer than the last executed one; the same number
again is a retry whose lost answer is sent again without executing anything; an older number
is a stale frame (delayed on the line) and is ignored. A new HELLO session nonce (controller
restart) or a power-on reset starts over.

Ownership (protocol v3): one session owns the firmware. A HELLO with another nonce takes over
only while the firmware is safe (never armed, or stopped by its watchdog: the old controller
is gone); while it is armed the HELLO is refused (`session_busy`). Any other session's
commands get `not_owner`, and its heartbeats and time grants are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from controller.protocol import codec as p
from controller.rig import PUMP_NAMES, SENSOR_NAMES, VALVE_POSITIONS
from firmware_sim.faults import Faults
from firmware_sim.firmware import FIRMWARE_VERSION, Firmware, FirmwareEvent, Limits, Snapshot

COMMANDS = frozenset(
    {
        p.MsgType.HELLO,
        p.MsgType.SET_PUMP,
        p.MsgType.SET_VALVE,
        p.MsgType.SET_LIMITS,
        p.MsgType.GET_LIMITS,
        p.MsgType.ENTER_SAFE,
        p.MsgType.ARM,
        p.MsgType.SIM_FAULT,
    }
)
#: frames a controller sends that are neither answered nor sequenced
UNANSWERED = frozenset({p.MsgType.HEARTBEAT, p.MsgType.TIME_GRANT})


def sample_message(s: Snapshot) -> p.SampleMsg:
    return p.SampleMsg(
        t_ms=s.t_ms,
        counter=s.counter,
        safe=s.safe,
        reason=p.REASONS.index(s.reason),
        air=s.air_return,
        leak=s.blood_leak,
        collect=s.valves["plasma_route"] == "collect",
        clamp_open=s.valves["venous_clamp"] == "open",
        valid=tuple(s.valid[n] for n in SENSOR_NAMES),
        commanded=s.commanded,
        measured=s.measured,
        sensors=tuple(s.sensors[n] for n in SENSOR_NAMES),
        totals=s.totals,
    )


def limits_message(limits: Limits, cls: type[p.LimitsMsg] = p.LimitsReply) -> p.LimitsMsg:
    return cls(
        limits.return_low_mmhg,
        limits.return_high_mmhg,
        limits.access_low_mmhg,
        limits.heartbeat_timeout_ms,
        tuple(limits.pump_max[n] for n in PUMP_NAMES),
    )


@dataclass(frozen=True, slots=True)
class HelloSeen:
    """A HELLO arrived (for `FirmwareLink.observer`): its session nonce, the one the
    firmware had before it (None: no session yet, or forgotten by a power-on reset), and
    the NAK code if it was refused (`session_busy`: another session has the rig armed)."""

    t_ms: int
    session: int
    previous: int | None
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class ForeignFrame:
    """A well-formed frame of another protocol version arrived (a controller too old or
    too new): dropped, and told once per version."""

    version: int


class FirmwareLink:
    def __init__(
        self, firmware: Firmware, faults: Faults, send: Callable[[bytes], None] | None = None
    ) -> None:
        self.firmware = firmware
        self.faults = faults
        self.decoder = p.Decoder()
        #: frames from the controller lost to a command-loss fault
        self.lost = 0
        #: where outgoing frames go (the transport's write); None drops them (no listener)
        self.send = send
        self.session: int | None = None
        self.last_seq: int | None = None
        self.last_reply: bytes | None = None
        self.executed = 0  # commands executed (not retries): for tests
        self.tx_seq = 0
        #: called with a TIME_GRANT's `until_ms` (firmware clock) from the owning session;
        #: a wall-clock firmware has none and ignores grants
        self.on_grant: Callable[[int], None] | None = None
        #: called on each frame from the owning session (a lockstep clock waits while its
        #: controller talks to it, and runs on its own only once it has fallen silent)
        self.on_owner: Callable[[], None] | None = None
        #: the clock INFO reports (p.CLOCK_WALL or p.CLOCK_LOCKSTEP)
        self.clock = p.CLOCK_WALL
        #: told of each firmware event and each HELLO (`alsctl firmware-sim`'s console)
        self.observer: Callable[[FirmwareEvent | HelloSeen | ForeignFrame], None] | None = None
        self._told_version: int | None = None
        firmware.on_sample = self._on_sample
        firmware.on_event = self._on_event

    # -- outgoing -----------------------------------------------------------------------
    def _out(self, msg: p.Message, ack: int | None = None, session: int | None = None) -> bytes:
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        ack = (self.last_seq or 0) if ack is None else ack
        return p.encode(msg, self.tx_seq, ack, (self.session or 0) if session is None else session)

    def _emit(self, frame: bytes) -> None:
        if self.send is not None and not self.firmware.mute:
            self.send(frame)

    def _on_sample(self, s: Snapshot) -> None:
        self._emit(self._out(sample_message(s)))

    def _on_event(self, e: FirmwareEvent) -> None:
        if e.code == "reset":  # a power-on reset forgets the session, as RAM would
            self.session = self.last_seq = None
            self.last_reply = None
        if self.observer is not None:
            self.observer(e)
        self._emit(self._out(p.EventMsg(e.t_ms, p.EVENTS.index(e.code), e.detail)))

    # -- incoming -----------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        frames = self.decoder.feed(data)
        foreign = self.decoder.foreign_version
        if foreign is not None and foreign != self._told_version:
            self._told_version = foreign
            if self.observer is not None:
                self.observer(ForeignFrame(foreign))
        for frame in frames:
            if self.firmware.command_lost():  # a fault: lost (or its CRC failed) on the line
                self.lost += 1
                continue
            reply = self.handle(frame)
            if reply is not None:
                self._emit(reply)

    def handle(self, frame: p.Frame) -> bytes | None:
        fw = self.firmware
        if frame.type in UNANSWERED:
            if self.session is None or frame.session != self.session:
                return None  # only the owner keeps the firmware alive or its clock going
            if self.on_owner is not None:
                self.on_owner()
            if frame.type is p.MsgType.HEARTBEAT:
                fw.heartbeat()
            elif self.on_grant is not None:
                fw_grant = cast(p.TimeGrant, frame.message)
                self.on_grant(fw_grant.until_ms)
            return None
        if frame.type not in COMMANDS:
            return None  # not for the firmware (an echo of its own frames, say)
        if frame.type is p.MsgType.HELLO:
            seen = HelloSeen(fw.clock_ms, frame.session, self.session)
            if frame.session != self.session:
                if self.session is not None and not fw.safe:
                    # armed for another controller, whose watchdog has not expired: alive
                    if self.observer is not None:
                        self.observer(dataclasses.replace(seen, refused="session_busy"))
                    return self._nak("session_busy", frame)
                self.session = frame.session
                self.last_seq = None
            if self.observer is not None:
                self.observer(seen)
        if self.session is None:
            return self._nak("no_session", frame)
        if frame.session != self.session:
            return self._nak("not_owner", frame)
        if self.on_owner is not None:
            self.on_owner()
        if self.last_seq is not None:
            ahead = (frame.seq - self.last_seq) & 0xFFFF
            if ahead == 0:
                return self.last_reply  # a retry: answer again, execute nothing
            if ahead >= 0x8000:
                return None  # stale: an old frame delayed on the line
        reply = self._out(self._execute(frame), ack=frame.seq)
        self.last_seq = frame.seq
        self.last_reply = reply
        self.executed += 1
        return reply

    def _nak(self, code: str, frame: p.Frame) -> bytes:
        """A refusal outside any session's sequence: addressed to the frame's sender."""
        return self._out(p.Nak(p.NAKS.index(code)), ack=frame.seq, session=frame.session)

    def _execute(self, frame: p.Frame) -> p.Message:
        """The casts below hold: the codec decodes each frame type to its one message class
        (`codec._DECODERS`)."""
        fw = self.firmware
        msg = frame.message
        nak: str | None = None
        match frame.type:
            case p.MsgType.HELLO:
                return p.Info(
                    p.PROTOCOL_VERSION,
                    fw.tick_ms,
                    fw.sample_period_ms,
                    FIRMWARE_VERSION,
                    fw.rig_id,
                    self.clock,
                    fw.clock_ms,
                )
            case p.MsgType.SET_PUMP:
                pump = cast(p.SetPump, msg)
                if pump.pump >= len(PUMP_NAMES):
                    nak = "unknown_id"
                else:
                    nak = fw.set_pump(PUMP_NAMES[pump.pump], pump.rate)
            case p.MsgType.SET_VALVE:
                valve = cast(p.SetValve, msg)
                names = tuple(VALVE_POSITIONS)
                if valve.valve >= len(names):
                    nak = "unknown_id"
                else:
                    name = names[valve.valve]
                    positions = VALVE_POSITIONS[name]
                    if valve.position >= len(positions):
                        nak = "out_of_range"
                    else:
                        nak = fw.set_valve(name, positions[valve.position])
            case p.MsgType.SET_LIMITS:
                m = cast(p.LimitsMsg, msg)
                nak = fw.set_limits(
                    Limits(
                        return_low_mmhg=m.return_low_mmhg,
                        return_high_mmhg=m.return_high_mmhg,
                        access_low_mmhg=m.access_low_mmhg,
                        heartbeat_timeout_ms=m.heartbeat_timeout_ms,
                        pump_max=dict(zip(PUMP_NAMES, m.pump_max, strict=True)),
                    )
                )
            case p.MsgType.GET_LIMITS:
                return limits_message(fw.limits)
            case p.MsgType.ENTER_SAFE:
                fw.enter_safe()
            case p.MsgType.ARM:
                nak = fw.arm()
            case p.MsgType.SIM_FAULT:
                fault = cast(p.SimFault, msg)
                try:
                    if fault.op == 1:
                        self.faults.inject(fault.name, **fault.params)
                    else:
                        self.faults.clear(fault.name)
                except ValueError:
                    nak = "bad_payload"
        if nak is not None:
            return p.Nak(p.NAKS.index(nak))
        return p.Empty(p.MsgType.ACK)
