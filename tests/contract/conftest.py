"""The rig under contract test, on every backend (ARCHITECTURE rule 2).

A test gets a connected `Hal` and an `inject(fault, **params)` function; it must not touch
anything backend-specific. The serial backend joins the `backend` parameter list when it
exists; its `inject` will go through the simulator's side channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from controller.config.rig import RigConfig
from controller.hal import open_hal
from controller.hal.base import FirmwareLimits, Hal, Sample

BACKENDS = ["sim"]


@dataclass
class Rig:
    hal: Hal
    inject: Callable[..., None]
    clear: Callable[[str], None]
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


@pytest.fixture(params=BACKENDS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    config = RigConfig(rig_id="contract-01", backend=request.param)
    hal = open_hal(request.param, config)
    await hal.connect()
    faults: Any = hal.faults  # type: ignore[attr-defined]
    try:
        yield Rig(hal, faults.inject, faults.clear, config)
    finally:
        await hal.close()
