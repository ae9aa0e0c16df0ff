"""Protocol v3 on the firmware's side of the line (docs/protocol.md): session ownership,
limits below a running rate, a power-on reset that restarts the clock and the totals, and the
lockstep clock's grants.

Frames go through the real codec into the real `FirmwareLink`, with no transport: the
firmware's clock is moved by the test, so nothing here depends on the wall clock.
"""

from __future__ import annotations

from controller.config.rig import RigConfig
from controller.protocol import codec as p
from controller.rig import PUMP_NAMES
from firmware_sim.faults import Faults
from firmware_sim.firmware import Firmware, Limits, Reason, Snapshot
from firmware_sim.link import FirmwareLink
from firmware_sim.physics import Physics

A, B = 0xA0A0A0A0, 0xB0B0B0B0


class Controller:
    """One session's side of the line: numbered frames out, the firmware's frames back."""

    def __init__(self, link: FirmwareLink, session: int) -> None:
        self.link, self.session, self.seq = link, session, 0
        self.decoder = p.Decoder()

    def send(self, msg: p.Message) -> p.Frame | None:
        """One frame in; the firmware's answer, if it gave one."""
        self.seq += 1
        sent: list[bytes] = []
        self.link.send = sent.append
        self.link.receive(p.encode(msg, self.seq, 0, self.session))
        frames = [f for b in sent for f in self.decoder.feed(b)]
        answers = [f for f in frames if f.type in (p.MsgType.ACK, p.MsgType.NAK, p.MsgType.INFO)]
        return answers[-1] if answers else None

    def nak(self, msg: p.Message) -> str | None:
        """The NAK code of the answer, or None for an ACK/INFO."""
        frame = self.send(msg)
        assert frame is not None, f"{msg} was not answered"
        assert frame.session == self.session, "an answer is addressed to its sender"
        return p.NAKS[frame.message.code] if isinstance(frame.message, p.Nak) else None

    def hello(self) -> str | None:
        return self.nak(p.Empty(p.MsgType.HELLO))

    def heartbeat(self) -> None:
        assert self.send(p.Empty(p.MsgType.HEARTBEAT)) is None  # never answered


def rig() -> tuple[Firmware, FirmwareLink]:
    fw = Firmware(Physics(), RigConfig())
    return fw, FirmwareLink(fw, Faults(fw))


def limits_msg(limits: Limits) -> p.LimitsMsg:
    return p.LimitsMsg(
        limits.return_low_mmhg,
        limits.return_high_mmhg,
        limits.access_low_mmhg,
        limits.heartbeat_timeout_ms,
        tuple(limits.pump_max[n] for n in PUMP_NAMES),
    )


def armed_with_blood_flow(fw: Firmware, c: Controller) -> None:
    assert c.hello() is None
    assert c.nak(limits_msg(Limits())) is None
    c.heartbeat()
    assert c.nak(p.Empty(p.MsgType.ARM)) is None
    assert c.nak(p.SetValve(1, 1)) is None
    assert c.nak(p.SetPump(0, 120.0)) is None
    for _ in range(5):
        fw.run_until(fw.t_ms + 100)
        c.heartbeat()
    assert not fw.safe, fw.reason


def test_a_second_controller_cannot_take_an_armed_rig() -> None:
    fw, link = rig()
    a, b = Controller(link, A), Controller(link, B)
    armed_with_blood_flow(fw, a)
    assert b.hello() == "session_busy"
    assert b.nak(p.SetPump(0, 0.0)) == "not_owner"
    assert b.nak(p.Empty(p.MsgType.ENTER_SAFE)) == "not_owner"
    assert fw.commanded["blood"] == 120.0 and not fw.safe  # nothing it sent was executed
    # its heartbeats do not keep the watchdog quiet: only the owner's count
    for _ in range(8):
        fw.run_until(fw.t_ms + 100)
        b.heartbeat()
    assert fw.safe and fw.reason == Reason.HEARTBEAT


def test_once_the_owner_is_gone_and_the_rig_safe_a_new_controller_takes_over() -> None:
    fw, link = rig()
    a, b = Controller(link, A), Controller(link, B)
    armed_with_blood_flow(fw, a)
    fw.run_until(fw.t_ms + 1000)  # A is killed: no heartbeat, the watchdog stops the rig
    assert fw.safe and fw.reason == Reason.HEARTBEAT
    assert b.hello() is None
    assert link.session == B
    # now the old controller is the stranger
    assert a.nak(p.SetPump(0, 100.0)) == "not_owner"
    assert a.hello() is None  # ... and may take the rig back while it is safe
    assert b.nak(p.Empty(p.MsgType.ARM)) == "not_owner"


def test_the_owner_hello_again_is_its_own_session_not_a_takeover() -> None:
    fw, link = rig()
    a = Controller(link, A)
    armed_with_blood_flow(fw, a)
    assert a.hello() is None  # a reconnect: same nonce, armed or not
    assert not fw.safe


def test_before_any_hello_commands_are_answered_no_session() -> None:
    _, link = rig()
    assert Controller(link, A).nak(p.Empty(p.MsgType.ARM)) == "no_session"


def test_limits_below_a_running_rate_are_refused_never_a_silent_stop() -> None:
    fw, link = rig()
    a = Controller(link, A)
    armed_with_blood_flow(fw, a)
    lower = Limits()
    lower.pump_max["blood"] = 100.0
    assert a.nak(limits_msg(lower)) == "limit_below_rate"
    assert fw.commanded["blood"] == 120.0 and not fw.safe
    assert fw.limits.pump_max["blood"] != 100.0  # the old limits hold
    # lowered first, the same limits are accepted
    assert a.nak(p.SetPump(0, 90.0)) is None
    assert a.nak(limits_msg(lower)) is None
    assert fw.limits.pump_max["blood"] == 100.0 and fw.commanded["blood"] == 90.0


def test_a_power_on_reset_restarts_the_clock_the_counter_and_the_totals() -> None:
    fw, link = rig()
    a = Controller(link, A)
    armed_with_blood_flow(fw, a)
    samples: list[Snapshot] = []
    fw.on_sample = samples.append
    for _ in range(20):
        fw.run_until(fw.t_ms + 100)
        a.heartbeat()
    before = samples[-1]
    assert before.t_ms > 2000 and before.totals[0] > 3.0  # 120 mL/min for 2 s and more
    Faults(fw).inject("mcu_reset")
    assert link.session is None  # forgotten, as RAM would
    fw.run_until(fw.t_ms + 300)
    after = samples[-3:]
    assert [s.t_ms for s in after] == [100, 200, 300]
    assert [s.counter for s in after] == [1, 2, 3]
    assert all(t == 0.0 for s in after for t in s.totals)  # safe: nothing moved since
    assert a.nak(p.Empty(p.MsgType.ARM)) == "no_session"
    info = a.send(p.Empty(p.MsgType.HELLO))
    assert info is not None and isinstance(info.message, p.Info)
    assert info.message.t_ms == 300 and info.message.protocol_version == 3


def test_grants_and_heartbeats_from_a_stranger_are_ignored() -> None:
    _, link = rig()
    granted: list[int] = []
    link.on_grant = granted.append
    a, b = Controller(link, A), Controller(link, B)
    assert a.hello() is None
    b.send(p.TimeGrant(5000))
    a.send(p.TimeGrant(100))
    assert granted == [100]
