"""The rig under contract test, on every backend (docs/architecture.md rule 2).

A test gets a connected `Hal` and async `inject(fault, **params)` / `clear(fault)`; it must
not touch anything backend-specific. On `serial` the firmware is `alsctl firmware-sim` in
another process on a pseudo-terminal, and faults go through the simulator's SIM_FAULT
message; on `sim` they are called directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.config.rig import RigConfig
from controller.hal import open_hal
from controller.hal.base import FirmwareLimits, Hal
from controller.rig import Sample
from tests.sim_process import firmware_sim_process

BACKENDS = ["sim", "serial"]
RIG_ID = "contract-01"


@dataclass
class Rig:
    hal: Hal
    inject: Callable[..., Awaitable[None]]
    clear: Callable[[str], Awaitable[None]]
    config: RigConfig

    async def run_for(self, ms: int, heartbeat: bool = True) -> list[Sample]:
        """Read samples for `ms` of rig time, heartbeating every 200 ms as a controller does."""
        samples = [await self.hal.next_sample()]
        last_hb = samples[0].t_ms
        end = samples[0].t_ms + ms
        while samples[-1].t_ms < end:
            sample = await self.hal.next_sample()
            samples.append(sample)
            if heartbeat and sample.t_ms - last_hb >= 200:
                await self.hal.heartbeat()
                last_hb = sample.t_ms
        return samples

    async def arm_with_blood_flow(self, blood: float = 120.0) -> None:
        await self.hal.upload_limits(FirmwareLimits.from_rig(self.config))
        await self.hal.heartbeat()
        await self.hal.arm()
        await self.hal.set_valve("venous_clamp", "open")
        await self.hal.set_pump("blood", blood)
        await self.run_for(500)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every built-in backend, and any named with --hal-backend. Tests that inject faults
    (marked `faults`) run where faults can be injected: the simulated rig, and the serial
    backend against `alsctl firmware-sim`."""
    if "rig" not in metafunc.fixturenames:
        return
    names = BACKENDS + list(metafunc.config.getoption("hal_backend"))
    if metafunc.definition.get_closest_marker("faults") is not None:
        names = [n for n in names if n in BACKENDS]
    metafunc.parametrize("rig", names, indirect=True)


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    config = RigConfig(rig_id=RIG_ID, backend=request.param)
    with contextlib.ExitStack() as stack:
        if request.param == "serial":
            # the wall clock at 1x, as a real MCU: the watchdog's own wall-clock run
            port = stack.enter_context(firmware_sim_process(tmp_path, config, clock="wall"))
            config = config.model_copy(
                update={"serial": config.serial.model_copy(update={"url": port})}
            )
        hal = open_hal(request.param, config)
        await hal.connect()
        try:
            yield Rig(hal, *_fault_hooks(hal), config)
        finally:
            await hal.close()


def _fault_hooks(
    hal: Any,
) -> tuple[Callable[..., Awaitable[None]], Callable[[str], Awaitable[None]]]:
    if hal.backend == "sim":

        async def inject(fault: str, **params: Any) -> None:
            hal.faults.inject(fault, **params)

        async def clear(fault: str) -> None:
            hal.faults.clear(fault)

        return inject, clear

    async def inject_remote(fault: str, **params: Any) -> None:
        await hal.sim_fault(fault, params)

    async def clear_remote(fault: str) -> None:
        await hal.sim_fault(fault, clear=True)

    return inject_remote, clear_remote
