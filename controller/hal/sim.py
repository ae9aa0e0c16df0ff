"""SimHal: the simulated firmware in-process, on a virtual clock.

Same semantics as the serial link (docs/architecture.md rule 2): a command is checked and answered
at once and acts from the next tick; samples come at the firmware's sample rate. Time is the
firmware's: `next_sample` advances it, so at `speed=None` six hours run in seconds, and at
`speed=N` the HAL paces itself to N x real time.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from dataclasses import dataclass

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.errors import CommandRefused, HalError, LinkTimeout
from controller.hal.base import (
    Capabilities,
    FirmwareInfo,
    FirmwareLimits,
    Hal,
    HalEvent,
    HalEventKind,
)
from controller.protocol import PROTOCOL_VERSION
from controller.rig import Sample
from firmware_sim.faults import Faults
from firmware_sim.firmware import (
    FIRMWARE_VERSION,
    Firmware,
    FirmwareEvent,
    Limits,
)
from firmware_sim.physics import Physics, physics_for


def event_from_firmware(e: FirmwareEvent) -> HalEvent:
    return HalEvent(HalEventKind(e.code), e.t_ms, e.detail)


def limits_to_firmware(limits: FirmwareLimits) -> Limits:
    return Limits(
        return_low_mmhg=limits.return_low_mmhg,
        return_high_mmhg=limits.return_high_mmhg,
        access_low_mmhg=limits.access_low_mmhg,
        heartbeat_timeout_ms=int(limits.heartbeat_timeout_ms),
        pump_max=dict(limits.pump_max),
    )


def limits_from_firmware(limits: Limits) -> FirmwareLimits:
    return FirmwareLimits(
        return_low_mmhg=limits.return_low_mmhg,
        return_high_mmhg=limits.return_high_mmhg,
        access_low_mmhg=limits.access_low_mmhg,
        heartbeat_timeout_ms=limits.heartbeat_timeout_ms,
        pump_max=dict(limits.pump_max),
    )


#: At full speed, the event loop runs other tasks at least this often (wall time).
YIELD_EVERY_S = 0.02


#: As the serial backend: a command is sent once and retried this often before it fails.
COMMAND_RETRIES = 3


@dataclass(frozen=True, slots=True)
class SimSnapshot:
    """The simulated rig at one instant: circuit, patient, and the firmware with its clock,
    limits, setpoints, safe state and random streams. A SimHal started from it continues
    exactly there (tests start mid-treatment from one instead of paying for self-test and
    priming again). Never shared: each start works on its own copy."""

    firmware: Firmware
    #: the firmware's clock when the session began (its session time is measured from it)
    origin_ms: int


class SimHal(Hal):
    """The simulated rig. `speed=None` runs as fast as possible."""

    backend = "sim"
    #: a rig in this process: it ends with it, and takes faults
    capabilities = Capabilities(outlives_controller=False, fault_injection=True)

    def __init__(
        self,
        rig: RigConfig | None = None,
        *,
        prescription: Prescription | None = None,
        scenario: Scenario | None = None,
        speed: float | None = None,
        physics: Physics | None = None,
        snapshot: SimSnapshot | None = None,
    ) -> None:
        super().__init__()
        if speed is not None and speed <= 0:
            raise HalError(f"speed must be positive or None (as fast as possible), got {speed}")
        self.rig = rig or RigConfig()
        self.speed = speed
        if snapshot is not None:
            self.firmware = copy.deepcopy(snapshot.firmware)
            self.physics = self.firmware.physics
        else:
            self.physics = physics or physics_for(self.rig, prescription)
            self.firmware = Firmware(self.physics, self.rig)
        #: the session's origin on the firmware's clock (a snapshot's session goes on)
        self._origin_ms: int | None = snapshot.origin_ms if snapshot is not None else None
        self.faults = Faults(self.firmware, scenario)
        self._samples: deque[Sample] = deque()
        # each sample built once, as the controller's `Sample` (no Snapshot to convert)
        self.firmware.on_rig_sample = self._samples.append
        self.firmware.on_event = lambda e: self._events.append(event_from_firmware(e))
        self._real_start = 0.0
        self._rig_start_ms = 0
        self._last_sample_ms = 0
        self._yield_at = 0.0

    async def _connect(self) -> FirmwareInfo:
        loop = asyncio.get_running_loop()
        self._real_start = loop.time()
        self._rig_start_ms = self.firmware.t_ms
        if self._origin_ms is None:
            self._origin_ms = self.firmware.t_ms
        self._last_sample_ms = self.firmware.clock_ms
        return FirmwareInfo(
            protocol_version=PROTOCOL_VERSION,
            firmware_version=FIRMWARE_VERSION,
            rig_id=self.firmware.rig_id,
            tick_ms=self.firmware.tick_ms,
            sample_period_ms=self.firmware.sample_period_ms,
        )

    @property
    def clock_origin_ms(self) -> int | None:
        return self._origin_ms

    def snapshot(self) -> SimSnapshot:
        """The rig as it stands, between two samples (see SimSnapshot)."""
        fw = self.firmware
        hooks = fw.on_sample, fw.on_rig_sample, fw.on_event, fw.on_wake
        # this HAL's, not the copy's
        fw.on_sample = fw.on_rig_sample = fw.on_event = fw.on_wake = None
        try:
            frozen = copy.deepcopy(fw)
        finally:
            fw.on_sample, fw.on_rig_sample, fw.on_event, fw.on_wake = hooks
        origin = self._origin_ms if self._origin_ms is not None else fw.t_ms
        return SimSnapshot(frozen, origin)

    async def _close(self) -> None:
        self._samples.clear()

    async def _next_sample(self) -> Sample:
        fw = self.firmware
        while not self._samples:
            fw.run_until(fw.next_sample_ms)
            # on the firmware's clock, as the samples' times (it restarts at a power-on reset)
            if fw.clock_ms - self._last_sample_ms >= self.rig.link_lost_ms:
                self._last_sample_ms = fw.clock_ms  # the next silence is timed from here
                raise LinkTimeout(
                    f"link lost: no sample for {self.rig.link_lost_ms} ms of rig time"
                )
        self._last_sample_ms = self._samples[0].t_ms
        sample = self._samples.popleft()
        if self.speed is None:
            # as fast as possible, yet other tasks (MQTT, a console) get their turn. Not on
            # every sample: each turn of the loop gives up the GIL in select(), and a thread
            # (the journal's writer) waiting for it is starved by such frequent hand-backs,
            # as CPython forces a switch only after a full switch interval without one.
            loop = asyncio.get_running_loop()
            if loop.time() >= self._yield_at:
                await asyncio.sleep(0)
                self._yield_at = loop.time() + YIELD_EVERY_S
        else:
            loop = asyncio.get_running_loop()
            # paced on the simulation's time, which a power-on reset does not restart
            await asyncio.sleep(max(0.0, self.due(sample.t_ms + fw.boot_ms) - loop.time()))
        return sample

    def due(self, t_ms: int) -> float:
        """The loop time a paced sample is due (bench/mqtt_load.py measures lateness)."""
        return self._real_start + (t_ms - self._rig_start_ms) / 1000.0 / (self.speed or 1.0)

    def _answer(self, command: str, nak: str | None) -> None:
        if nak is not None:
            raise CommandRefused(command, nak)

    def _deliver(self, command: str) -> None:
        """A command over the simulated line: lost as the firmware's `command_loss` says
        (a fault), tried as often as the serial backend tries, a LinkTimeout when every
        try is lost; never half-executed."""
        for _ in range(1 + COMMAND_RETRIES):
            if not self.firmware.command_lost():
                return
        raise LinkTimeout(f"{command}: no answer after {1 + COMMAND_RETRIES} tries")

    async def _set_pump(self, name: str, rate: float) -> None:
        command = f"set_pump {name}={rate:g}"
        self._deliver(command)
        self._answer(command, self.firmware.set_pump(name, rate))

    async def _set_valve(self, name: str, position: str) -> None:
        command = f"set_valve {name}={position}"
        self._deliver(command)
        self._answer(command, self.firmware.set_valve(name, position))

    async def _set_limits(self, limits: FirmwareLimits) -> None:
        self._deliver("set_limits")
        self._answer("set_limits", self.firmware.set_limits(limits_to_firmware(limits)))

    async def _get_limits(self) -> FirmwareLimits:
        self._deliver("get_limits")
        return limits_from_firmware(self.firmware.limits)

    async def _enter_safe(self) -> None:
        self._deliver("enter_safe")
        self.firmware.enter_safe()

    async def _arm(self) -> None:
        self._deliver("arm")
        self._answer("arm", self.firmware.arm())

    async def _heartbeat(self) -> None:
        if not self.firmware.command_lost():  # unacknowledged: a lost one is just lost
            self.firmware.heartbeat()
