"""A rig driven at the HAL by a test, as a controller would drive it, without the controller.

For tests of the rig's own safety (the firmware's protective system, its watchdog, its
refusals) and of a HAL backend: the test commands pumps and valves itself and reads samples.
Reading a sample is what moves the rig's clock (virtual on the simulated rig, granted on a
lockstep serial link), and a heartbeat goes out every `HEARTBEAT_MS` of rig time while the
test reads, unless it says not to: a test never races a wall clock.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.config.rig import RigConfig
from controller.hal.base import FirmwareLimits, Hal
from controller.rig import Sample
from controller.testing.errors import UntilTimeout
from controller.testing.faults import Injector

#: A controller heartbeats the firmware at least this often (rig ms); its watchdog is 500.
HEARTBEAT_MS = 200


class HalRig:
    """A connected HAL with the simulated firmware's faults at hand.

    `hal` is the backend itself (`SimHal`, or `SerialHal` on a serial pair), for anything
    the helpers below do not cover."""

    def __init__(self, hal: Hal, config: RigConfig, faults: Injector) -> None:
        self.hal = hal
        self.config = config
        self.faults = faults
        self._sample: Sample | None = None
        self._last_heartbeat_ms: int | None = None

    @property
    def sample(self) -> Sample:
        """The latest sample read."""
        if self._sample is None:
            raise AssertionError("no sample read yet: call next_sample(), arm() or until()")
        return self._sample

    async def next_sample(self, *, heartbeat: bool = True) -> Sample:
        """The next sample; a heartbeat follows when one is due (`heartbeat=False`: the
        controller falls silent, and the firmware's watchdog has its say)."""
        sample = await self.hal.next_sample()
        self._sample = sample
        last = self._last_heartbeat_ms
        if heartbeat and (last is None or sample.t_ms - last >= HEARTBEAT_MS or sample.t_ms < last):
            await self.hal.heartbeat()
            self._last_heartbeat_ms = sample.t_ms
        return sample

    async def arm(self, *, blood_ml_min: float | None = 120.0) -> Sample:
        """What a controller does before a treatment: upload the rig's limits (read back),
        heartbeat, arm, open the venous clamp and start the blood pump (None: pumps stay
        still). Returns the first sample after."""
        await self.hal.upload_limits(FirmwareLimits.from_rig(self.config))
        await self.hal.heartbeat()
        await self.hal.arm()
        await self.hal.set_valve("venous_clamp", "open")
        if blood_ml_min is not None:
            await self.hal.set_pump("blood", blood_ml_min)
        return await self.next_sample()

    async def run_for(self, seconds: float, *, heartbeat: bool = True) -> list[Sample]:
        """Every sample over the next `seconds` of rig time."""
        first = await self.next_sample(heartbeat=heartbeat)
        samples = [first]
        while samples[-1].t_ms - first.t_ms < seconds * 1000:
            samples.append(await self.next_sample(heartbeat=heartbeat))
        return samples

    async def until(
        self,
        condition: Callable[[Sample], bool] | None = None,
        *,
        safe: bool | None = None,
        within_s: float,
        heartbeat: bool = True,
    ) -> Sample:
        """The first sample (from the next one on) where `condition` holds, and `safe`
        matches the firmware's state when given; within `within_s` of rig time from the
        latest sample, else UntilTimeout naming the last sample's state."""
        if condition is None and safe is None:
            raise TypeError("until() needs a condition or safe=")

        def met(s: Sample) -> bool:
            return (safe is None or s.safe == safe) and (condition is None or condition(s))

        before = self._sample
        sample = await self.next_sample(heartbeat=heartbeat)
        # counted from the sample the test holds, as a run's wait counts from its view
        deadline = (before or sample).t_ms + within_s * 1000
        while not met(sample):
            if sample.t_ms >= deadline:
                raise UntilTimeout(
                    f"not within {within_s:g} s of rig time (at {sample.t_s:g} s the firmware"
                    f" is {sample.state}, reason {sample.safe_reason})"
                )
            sample = await self.next_sample(heartbeat=heartbeat)
        return sample
