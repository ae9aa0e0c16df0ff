"""`alsctl firmware-sim` as a process, as an operator starts it: the port on stdout first
(scripts read it), then a line on stderr per connection, HELLO, arm, limits, fault, safe
state and reset; `--quiet` keeps only the port; a warning when `--speed` leaves the
heartbeat timeout under 100 ms of wall time.

Real parts: the process, TCP, the wire protocol spoken by a small client here. Not on the
wall clock: each step awaits the firmware's answer (an EVENT frame) or the line, and the
commands that must land together (a heartbeat then ARM) go in one write, handled at one
rig time.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sys
from pathlib import Path

from controller.config.loading import to_yaml
from controller.config.rig import RigConfig
from controller.protocol import codec as p
from controller.rig import PUMP_HARD_MAX, PUMP_NAMES

WAIT_S = 30.0  # generous: a Python process starting on a busy machine
SESSION = 0x5EED0001
STAMP = re.compile(r"^\[ *\d+\.\d s\] ")


class Client:
    """A controller reduced to frames: numbered commands out, EVENT frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = p.Decoder()
        self.frames: collections.deque[p.Frame] = collections.deque()  # received, not yet looked at
        self.seq = 0

    def send(self, *msgs: p.Message) -> None:
        """All in one write: the firmware handles them at one rig time."""
        out = b""
        for msg in msgs:
            self.seq += 1
            out += p.encode(msg, self.seq, 0, SESSION)
        self.writer.write(out)

    async def event(self, code: str) -> p.EventMsg:
        """The next EVENT frame with this code (samples and answers pass by)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                while self.frames:
                    m = self.frames.popleft().message
                    if isinstance(m, p.EventMsg) and p.EVENTS[m.code] == code:
                        return m
                data = await self.reader.read(4096)
                assert data, "firmware-sim closed the connection"
                self.frames.extend(self.decoder.feed(data))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


LIMITS = p.LimitsMsg(
    20.0, 250.0, -200.0, 500, tuple(150.0 if n == "blood" else PUMP_HARD_MAX[n] for n in PUMP_NAMES)
)


async def drive(client: Client) -> None:
    """HELLO, limits, arm, two faults (air: safe), both cleared, a power-on reset, HELLO.

    Arming and the air go in one write: the air is there at the first tick after arming,
    long before a heartbeat is missed, whatever the speed and however busy the machine."""
    heartbeat, arm = p.Empty(p.MsgType.HEARTBEAT), p.Empty(p.MsgType.ARM)
    client.send(
        p.Empty(p.MsgType.HELLO),
        LIMITS,
        heartbeat,
        arm,
        p.SimFault(1, "pump_stall", {"pump": "blood"}),
        p.SimFault(1, "air_bubble"),
    )
    await client.event("entered_safe")
    client.send(p.SimFault(0, "air_bubble"), p.SimFault(0, "pump_stall"))
    await client.event("fault_cleared")
    await client.event("fault_cleared")
    client.send(p.SimFault(1, "mcu_reset"))
    await client.event("reset")
    # the controller's answer to a forgotten session: HELLO again, its nonce unchanged
    client.send(p.Empty(p.MsgType.HELLO))


class FirmwareSim:
    def __init__(self, proc: asyncio.subprocess.Process, port_line: str, header: str) -> None:
        self.proc, self.port_line, self.header = proc, port_line, header
        #: every stderr line read so far
        self.seen: list[str] = []

    async def line(self, text: str) -> str:
        """The next stderr line containing `text`."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                raw = await self.proc.stderr.readline()
                assert raw, f"firmware-sim ended before saying {text!r}"
                line = raw.decode().rstrip("\n")
                self.seen.append(line)
                if text in line:
                    return line

    async def connect(self) -> Client:
        host, port = self.port_line.removeprefix("socket://").rsplit(":", 1)
        return Client(*await asyncio.open_connection(host, int(port)))

    async def stop(self) -> tuple[str, list[str]]:
        """Stop it; what it wrote on stdout after the port, and every stderr line."""
        self.proc.terminate()
        out, err = await self.proc.communicate()
        return out.decode(), self.seen + err.decode().splitlines()


async def _start(tmp_path: Path, *args: str) -> FirmwareSim:
    rig_file = tmp_path / "rig.yaml"
    rig_file.write_text(to_yaml(RigConfig()))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "controller", "firmware-sim", "--rig", str(rig_file)),
        *("--tcp", "127.0.0.1:0", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT_S):
        header = (await proc.stdout.readline()).decode().strip()
        port_line = (await proc.stdout.readline()).decode().strip()
    return FirmwareSim(proc, port_line, header)


async def test_it_says_what_the_firmware_sees_and_does(tmp_path: Path) -> None:
    sim = await _start(tmp_path)
    try:
        # what scripts read: a comment, then the port, on stdout
        assert sim.header.startswith("# simulated firmware, real time")
        assert re.fullmatch(r"socket://127\.0\.0\.1:\d+", sim.port_line)
        client = await sim.connect()
        connected = await sim.line("controller connected")
        await drive(client)
        lines = [connected]
        for text in (
            "HELLO",
            "limits:",
            "armed",
            "fault injected: pump_stall",
            "fault injected: air_bubble",
            "safe state:",
            "fault cleared: air_bubble",
            "fault cleared: pump_stall",
            "power-on reset",
            "fault injected: mcu_reset",
            "HELLO",
        ):
            lines.append(await sim.line(text))
        await client.close()
        lines.append(await sim.line("controller disconnected"))
    finally:
        out, err = await sim.stop()
    assert out == ""  # nothing after the port on stdout
    # real time: the heartbeat timeout is 500 ms of wall time, no warning; each line stamped
    assert [line for line in err if not STAMP.match(line)] == []
    for line in lines:
        assert STAMP.match(line), line
    words = [STAMP.sub("", line) for line in lines]
    assert words[0].startswith("controller connected (TCP 127.0.0.1:")
    assert words[1] == "HELLO session 5eed0001: new session"
    assert words[2] == (
        "limits: return 20..250 mmHg, access >= -200 mmHg, heartbeat 500 ms,"
        " pump max blood 150 mL/min"
    )
    assert words[3] == "armed"
    assert words[4] == "fault injected: pump_stall (pump=blood)"
    assert words[5] == "fault injected: air_bubble"
    assert words[6] == "safe state: air in the return line (air)"
    assert words[7] == "fault cleared: air_bubble"
    assert words[8] == "fault cleared: pump_stall (pump=blood)"
    assert words[9] == "power-on reset: safe (boot), default limits, session forgotten"
    assert words[10] == "fault injected: mcu_reset"
    assert words[11] == "HELLO session 5eed0001: new session"  # the old one was forgotten
    assert words[12].startswith("controller disconnected (TCP 127.0.0.1:")


async def test_quiet_prints_the_port_only_and_a_fast_speed_is_warned_about(
    tmp_path: Path,
) -> None:
    sim = await _start(tmp_path, "--quiet", "--speed", "10")
    try:
        assert sim.header.startswith("# simulated firmware, 10x real time")
        assert re.fullmatch(r"socket://127\.0\.0\.1:\d+", sim.port_line)
        client = await sim.connect()
        await drive(client)  # every kind of line, had it not been quiet
        await client.close()
    finally:
        out, err = await sim.stop()
    assert out == ""
    assert err == [
        "warning: at --speed 10 the rig's 500 ms heartbeat timeout is 50 ms of wall time: a"
        " controller that stalls that long (a busy CPU, a garbage collection) looks dead to"
        " the firmware, which goes safe (heartbeat). Use --speed 5 or lower for a run that"
        " must not see that."
    ]
