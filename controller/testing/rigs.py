"""The two rigs a test can drive: the simulated rig in this process, and the same simulated
firmware behind a real serial link (a pseudo-terminal, protocol v3, the lockstep clock).

Both are async context managers yielding a connected `HalRig`, so a test (or a script)
uses them with or without pytest; the plugin's `sim_hal` and `serial_pair` fixtures are
these, closed after the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.hal.serial import SerialHal
from controller.hal.sim import SimHal
from controller.testing.faults import Injector
from controller.testing.hal_rig import HalRig
from firmware_sim.server import FirmwareServer


class SerialRig(HalRig):
    """A `HalRig` whose HAL is `SerialHal` on a pseudo-terminal; the firmware's side is
    `server` (`alsctl firmware-sim`'s own server, in this process, on the lockstep clock)."""

    def __init__(self, hal: SerialHal, config: RigConfig, server: FirmwareServer) -> None:
        super().__init__(hal, config, Injector(server.faults))
        self.server = server
        #: the pty's path: what `alsctl run --port` would be given
        self.port = hal.url


@contextlib.asynccontextmanager
async def sim_rig(
    config: RigConfig,
    prescription: Prescription | None = None,
    scenario: Scenario | None = None,
) -> AsyncIterator[HalRig]:
    """The simulated rig, connected: the firmware in this process on a virtual clock that
    moves only as samples are read (about 10,000 x real time)."""
    hal = SimHal(config, prescription=prescription, scenario=scenario)
    await hal.connect()
    try:
        yield HalRig(hal, config, Injector(hal.faults))
    finally:
        await hal.close()


@contextlib.asynccontextmanager
async def serial_pair(
    config: RigConfig,
    prescription: Prescription | None = None,
    scenario: Scenario | None = None,
    *,
    speed: float = 1.0,
) -> AsyncIterator[SerialRig]:
    """The simulated firmware on a new pty, on the lockstep clock, and `SerialHal`
    connected to it: the real framing, CRC, acknowledgements, session and time grants.

    The rig's clock advances only as far as the HAL grants (one sample period per sample
    read), so the link runs as fast as the two sides exchange frames (a few hundred x real
    time) and a busy machine changes nothing. Held without a grant for 2 s of wall time
    (a breakpoint), the firmware takes the controller for dead and runs on at `speed` x
    real time: its watchdog then stops the pumps, as on a bench."""
    server = FirmwareServer(config, prescription, scenario, speed=speed, clock="lockstep")
    try:
        path = server.serve_pty()
        server.start_clock()
        rig = config.model_copy(
            update={"backend": "serial", "serial": config.serial.model_copy(update={"url": path})}
        )
        hal = SerialHal(rig, port=path)
        await hal.connect()
        try:
            yield SerialRig(hal, rig, server)
        finally:
            await hal.close()
    finally:
        await server.close()
