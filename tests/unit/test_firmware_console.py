"""`alsctl firmware-sim` says what it does: the lines of firmware_sim/console_log.py.

Real parts: the `FirmwareServer` in this process on a real pty and real TCP, its clock not
started, so rig time moves only when a test says (nothing here depends on the wall clock).
The `alsctl firmware-sim` process itself is tests/integration/test_firmware_sim_cli.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator

import pytest

from controller.config.rig import RigConfig
from controller.protocol import codec as p
from controller.rig import PUMP_HARD_MAX, PUMP_NAMES, SafeReason
from firmware_sim.console_log import (
    MIN_HEARTBEAT_BUDGET_MS,
    describe,
    heartbeat_budget_warning,
    limits_words,
    safe_reason_words,
    stamp,
)
from firmware_sim.firmware import FirmwareEvent, Limits
from firmware_sim.link import ForeignFrame, HelloSeen
from firmware_sim.server import FirmwareServer

WAIT_S = 10.0  # generous: each line comes within a loop iteration of its cause


class Lines:
    """A `log` for the server: the lines it wrote, and a way to await one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._more = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._more.set()

    async def wait_for(self, text: str, after: int = 0) -> str:
        """The first line from index `after` on that contains `text`."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                self._more.clear()
                await self._more.wait()


@pytest.fixture
async def server() -> AsyncIterator[tuple[FirmwareServer, Lines]]:
    lines = Lines()
    srv = FirmwareServer(RigConfig(), log=lines)
    try:
        yield srv, lines
    finally:
        await srv.close()


# -- the speed warning --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("speed", "timeout_ms", "warned"),
    [
        (1.0, 500, False),
        (5.0, 500, False),  # 100 ms of wall time: at the threshold, not under it
        (5.01, 500, True),
        (40.0, 500, True),
        (1.0, 100, False),
        (1.25, 100, True),
        (10.0, 1000, False),
    ],
)
def test_the_speed_warning_is_given_under_100_ms_of_wall_time_per_heartbeat_timeout(
    speed: float, timeout_ms: int, warned: bool
) -> None:
    warning = heartbeat_budget_warning(speed, timeout_ms)
    assert (warning is not None) == warned
    assert (timeout_ms / speed < MIN_HEARTBEAT_BUDGET_MS) == warned
    if warning is not None:
        assert f"--speed {speed:g}" in warning
        assert "looks dead" in warning and "goes safe" in warning
        assert f"--speed {timeout_ms / MIN_HEARTBEAT_BUDGET_MS:g} or lower" in warning


def test_the_warning_says_how_long_a_stall_may_be() -> None:
    warning = heartbeat_budget_warning(40.0, 500)
    assert warning is not None and "500 ms heartbeat timeout is 12.5 ms of wall time" in warning


# -- words ----------------------------------------------------------------------------------
def test_every_safe_reason_has_words_a_bench_engineer_reads() -> None:
    limits = Limits()
    for reason in SafeReason:
        if reason is SafeReason.NONE:
            continue
        words = safe_reason_words(reason, limits)
        assert words != reason.value and "_" not in words, reason
    assert safe_reason_words(SafeReason.AIR, limits) == "air in the return line"
    assert "300 mmHg" in safe_reason_words(SafeReason.RETURN_HIGH, limits)
    line = describe(FirmwareEvent(0, "entered_safe", SafeReason.HEARTBEAT), limits)
    assert line == "safe state: controller heartbeat lost (none for 500 ms) (heartbeat)"


def test_limits_are_short_naming_only_the_pumps_held_under_their_hard_maximum() -> None:
    limits = Limits()
    assert limits_words(limits) == (
        "limits: return 10..300 mmHg, access >= -250 mmHg, heartbeat 500 ms,"
        " pumps up to their hard maxima"
    )
    limits.pump_max = {**PUMP_HARD_MAX, "blood": 200.0, "heparin": 5.0}
    assert limits_words(limits).endswith("pump max blood 200 mL/min, heparin 5 mL/h")
    assert len(PUMP_NAMES) == 8


def test_rig_time_stamps_the_line() -> None:
    assert stamp(12_345) == "[  12.3 s]"
    assert stamp(0) == "[   0.0 s]"


# -- a pty --------------------------------------------------------------------------------
def _hello(session: int, seq: int) -> bytes:
    return p.encode(p.Empty(p.MsgType.HELLO), seq, 0, session)


async def test_on_a_pty_the_first_bytes_after_silence_are_a_controller_connecting(
    server: tuple[FirmwareServer, Lines],
) -> None:
    srv, lines = server
    path = srv.serve_pty()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, _hello(0x1A2B3C4D, 1))
        connected = await lines.wait_for("controller connected")
        assert connected == f"[   0.0 s] controller connected (first bytes on {path})"
        hello = await lines.wait_for("HELLO")
        assert hello == "[   0.0 s] HELLO session 1a2b3c4d: new session"

        # the same controller again, within the heartbeat timeout: no new connection
        srv.firmware.run_until(200)
        n = len(lines.lines)
        os.write(fd, _hello(0x1A2B3C4D, 2))
        again = await lines.wait_for("HELLO", after=n)
        assert again == (
            "[   0.2 s] HELLO session 1a2b3c4d: same session (the same controller, back)"
        )
        assert not any("connected" in line for line in lines.lines[n:])

        # silent for longer than the heartbeat timeout, then a restarted controller
        srv.firmware.run_until(3_200)
        n = len(lines.lines)
        os.write(fd, _hello(0x0BADCAFE, 1))
        back = await lines.wait_for("controller connected", after=n)
        assert back == f"[   3.2 s] controller connected (bytes on {path} after 3.0 s of silence)"
        new = await lines.wait_for("HELLO", after=n)
        assert new == (
            "[   3.2 s] HELLO session 0badcafe: new session, replaces 1a2b3c4d"
            " (a restarted controller)"
        )
    finally:
        os.close(fd)


# -- TCP ----------------------------------------------------------------------------------
async def test_tcp_clients_are_told_connecting_replacing_and_leaving(
    server: tuple[FirmwareServer, Lines],
) -> None:
    srv, lines = server
    port = await srv.serve_tcp("127.0.0.1", 0)
    _, first = await asyncio.open_connection("127.0.0.1", port)
    line = await lines.wait_for("controller connected")
    here = first.get_extra_info("sockname")
    assert line == f"[   0.0 s] controller connected (TCP 127.0.0.1:{here[1]})"

    n = len(lines.lines)
    _, second = await asyncio.open_connection("127.0.0.1", port)
    other = second.get_extra_info("sockname")[1]
    replaced = await lines.wait_for("controller connected", after=n)
    assert replaced.endswith(f"(TCP 127.0.0.1:{other}, replaces the previous one)")

    for writer, local in ((first, here[1]), (second, other)):
        n = len(lines.lines)
        writer.close()
        await writer.wait_closed()
        left = await lines.wait_for("disconnected", after=n)
        assert left.endswith(f"controller disconnected (TCP 127.0.0.1:{local})")


async def test_without_a_log_the_server_says_nothing() -> None:
    srv = FirmwareServer(RigConfig())
    try:
        assert srv.console is None and srv.link.observer is None
    finally:
        await srv.close()


def test_lines_start_with_rig_time() -> None:
    assert re.fullmatch(r"\[ *\d+\.\d s\]", stamp(86_400_000))


def test_a_refused_hello_and_a_foreign_version_are_said_in_words() -> None:
    """Ownership (protocol v3): a second controller's HELLO while the rig is armed is
    refused, and a controller speaking another protocol version is named, not ignored."""
    limits = Limits()
    refused = describe(HelloSeen(0, 0xB0B0B0B0, 0xA0A0A0A0, refused="session_busy"), limits)
    assert refused == (
        "HELLO session b0b0b0b0: refused (session_busy), session a0a0a0a0 has the rig armed"
    )
    foreign = describe(ForeignFrame(2), limits)
    assert foreign is not None and "protocol version 2 dropped: this firmware speaks 3" in foreign
