"""The serial link in protocol v3, end to end: the real SerialHal and the real simulated
firmware over a real pseudo-terminal (or TCP), in this process.

- On the lockstep clock a controller that stalls stops the rig's clock with it; only when it
  has been silent for LOCKSTEP_IDLE_S of wall time (dead) does the rig run on, and its
  watchdog stop the pumps. The stalls here are `asyncio.sleep`s on purpose: a stall is what
  is tested, and the firmware's side keeps running in the same event loop.
- A second controller is refused a rig another session has armed, with a clear error.
- A firmware that speaks another protocol version is named as such, not a silent timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from cobs import cobs

from controller.config.rig import RigConfig
from controller.errors import LinkError
from controller.hal import serial as serial_hal
from controller.hal.base import FirmwareLimits
from controller.hal.serial import SerialHal, SessionBusy
from controller.protocol import codec as p
from controller.rig import FirmwareState, SafeReason, Sample
from firmware_sim import server as fw_server
from firmware_sim.server import FirmwareServer

RIG = RigConfig(rig_id="lockstep-01", backend="serial")


@contextlib.asynccontextmanager
async def serial_rig(
    clock: str, speed: float = 10.0
) -> AsyncIterator[tuple[FirmwareServer, SerialHal]]:
    server = FirmwareServer(RIG, speed=speed, clock=clock)
    path = server.serve_pty()
    server.start_clock()
    hal = SerialHal(RIG, port=path)
    try:
        await hal.connect()
        yield server, hal
    finally:
        await hal.close()
        await server.close()


async def arm_with_blood_flow(hal: SerialHal) -> Sample:
    await hal.upload_limits(FirmwareLimits.from_rig(RIG))
    await hal.heartbeat()
    await hal.arm()
    await hal.set_valve("venous_clamp", "open")
    await hal.set_pump("blood", 120.0)
    for _ in range(5):
        sample = await hal.next_sample()
        await hal.heartbeat()
    assert sample.state is FirmwareState.RUNNING
    return sample


async def test_a_stalled_controller_stops_the_rig_clock_with_it() -> None:
    async with serial_rig("lockstep") as (server, hal):
        assert hal._lockstep  # INFO said so
        before = await arm_with_blood_flow(hal)
        # 1 s of wall time without a grant: at 10x it would be 10 s of rig time, ten
        # heartbeat timeouts; here the rig's clock waits for the controller
        await asyncio.sleep(1.0)
        after = await hal.next_sample()
        assert after.t_ms == before.t_ms + RIG.sample_period_ms
        assert after.state is FirmwareState.RUNNING
        assert not server.firmware.safe


async def test_on_the_wall_clock_the_same_stall_is_a_heartbeat_loss() -> None:
    async with serial_rig("wall") as (server, hal):
        assert not hal._lockstep
        await arm_with_blood_flow(hal)
        await asyncio.sleep(1.0)  # 10 s of rig time at 10x, the watchdog is 0.5 s
        assert server.firmware.safe and server.firmware.reason == SafeReason.HEARTBEAT


async def test_a_dead_controller_is_still_caught_by_the_watchdog() -> None:
    async with serial_rig("lockstep") as (server, hal):
        await arm_with_blood_flow(hal)
        # silent for longer than LOCKSTEP_IDLE_S: the rig runs on its own, the watchdog acts
        await asyncio.sleep(fw_server.LOCKSTEP_IDLE_S + 0.5)
        assert server.firmware.safe and server.firmware.reason == SafeReason.HEARTBEAT
        # and the controller, back, reads it from the samples in order
        async with asyncio.timeout(10):
            while (sample := await hal.next_sample()).state is FirmwareState.RUNNING:
                pass
        assert sample.safe_reason is SafeReason.HEARTBEAT


async def test_a_second_controller_is_refused_a_rig_another_session_armed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serial_hal, "SESSION_BUSY_WAIT_S", 0.3)
    async with serial_rig("lockstep") as (server, first):
        await arm_with_blood_flow(first)
        # the first controller holds the rig; nobody grants, so its clock stands still
        second = SerialHal(RIG, port=first.url, reconnect=False)
        with pytest.raises(SessionBusy, match="another controller's session"):
            await second.connect()
        await second.close()
        assert not server.firmware.safe and server.firmware.commanded["blood"] == 120.0
        assert server.link.session == first._session


def _v2_info(seq: int) -> bytes:
    """An INFO frame as a version-2 firmware sends it (6-byte header, no session)."""
    body = bytes([2, p.MsgType.INFO, seq, 0, 1, 0]) + bytes([2, 10, 0, 100, 0, 0, 0])
    return cobs.encode(body + p.CRC.pack(p.crc16(body))) + b"\x00"


async def test_a_firmware_speaking_version_2_is_named_not_a_silent_timeout() -> None:
    master, slave = os.openpty()
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)

    def answer() -> None:  # whatever comes, a version-2 INFO goes back
        with contextlib.suppress(OSError):
            os.read(master, 4096)
            os.write(master, _v2_info(1))

    loop.add_reader(master, answer)
    hal = SerialHal(RIG, port=os.ttyname(slave), reconnect=False)
    try:
        with pytest.raises(LinkError, match="speaks protocol version 2, this controller speaks 3"):
            await hal.connect()
    finally:
        await hal.close()
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)
