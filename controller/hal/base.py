"""The HAL interface: the only door between the controller and a rig.

The state machine and the safety code see `Hal` and `Sample`, never a backend type. As in
python-can's `BusABC`, the public methods own validation and the typed errors; a backend
implements only the small `_` hooks. Closing twice is harmless; a `Hal` is an async context
manager.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Self

from controller.config.rig import RigConfig
from controller.errors import HalError, SafetyError
from controller.rig import (
    DETECTOR_NAMES,
    PUMP_HARD_MAX,
    PUMP_NAMES,
    SENSOR_NAMES,
    VALVE_POSITIONS,
    FirmwareState,
    PumpReading,
    Reading,
    SafeReason,
    Sample,
)


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    protocol_version: int
    firmware_version: str
    rig_id: str
    tick_ms: int
    sample_period_ms: int


@dataclass(frozen=True, slots=True)
class FirmwareLimits:
    """The firmware's own protective limits (docs/spec.md 5.1), uploaded at start and read back."""

    return_low_mmhg: float
    return_high_mmhg: float
    access_low_mmhg: float
    heartbeat_timeout_ms: int
    pump_max: Mapping[str, float] = field(default_factory=lambda: dict(PUMP_HARD_MAX))

    @classmethod
    def from_rig(cls, rig: RigConfig) -> FirmwareLimits:
        return cls(
            return_low_mmhg=rig.alarms.return_low_mmhg,
            return_high_mmhg=rig.alarms.return_high_mmhg,
            access_low_mmhg=rig.alarms.access_low_mmhg,
            heartbeat_timeout_ms=rig.heartbeat_timeout_ms,
            pump_max={name: rig.pumps.get(name).max_rate for name in PUMP_NAMES},
        )

    def matches(self, other: FirmwareLimits, tol: float = 1e-3) -> bool:
        """True when a read-back equals what was sent (float32 on the wire)."""
        pairs = [
            (self.return_low_mmhg, other.return_low_mmhg),
            (self.return_high_mmhg, other.return_high_mmhg),
            (self.access_low_mmhg, other.access_low_mmhg),
            (self.heartbeat_timeout_ms, other.heartbeat_timeout_ms),
            *((self.pump_max[n], other.pump_max.get(n, math.nan)) for n in PUMP_NAMES),
        ]
        return all(abs(a - b) <= tol for a, b in pairs)


class HalEventKind(StrEnum):
    ENTERED_SAFE = "entered_safe"
    ARMED = "armed"
    LIMITS_CHANGED = "limits_changed"
    RESET = "reset"
    FAULT_INJECTED = "fault_injected"
    FAULT_CLEARED = "fault_cleared"
    LINK_LOST = "link_lost"
    LINK_RESTORED = "link_restored"


@dataclass(frozen=True, slots=True)
class HalEvent:
    kind: HalEventKind
    t_ms: int
    detail: str = ""


def check_pump(name: str, rate: float) -> None:
    if name not in PUMP_NAMES:
        raise HalError(f"unknown pump {name!r}; pumps are {', '.join(PUMP_NAMES)}")
    if not math.isfinite(rate):
        raise HalError(f"pump {name}: rate {rate!r} is not a finite number")


def check_valve(name: str, position: str) -> None:
    allowed = VALVE_POSITIONS.get(name)
    if allowed is None:
        raise HalError(f"unknown valve {name!r}; valves are {', '.join(VALVE_POSITIONS)}")
    if position not in allowed:
        raise HalError(f"valve {name}: position {position!r} is not one of {allowed}")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, declared by it rather than guessed from its type."""

    #: uploaded limits are read back, so a mismatch can refuse to go on
    limits_readback: bool = True
    #: the rig goes safe by itself when the controller's heartbeats stop
    watchdog: bool = True
    #: samples carry each pump's cumulative encoder volume (what a resume accounts from)
    encoder_totals: bool = True
    #: the rig outlives the controller's process (a resume can continue a session)
    outlives_controller: bool = True
    #: faults can be injected into it (a simulated rig)
    fault_injection: bool = False


class Hal(ABC):
    """A rig seen from the controller. Commands raise `CommandRefused` on a NAK."""

    backend: str = "abstract"
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def from_config(cls, rig: RigConfig, **overrides: Any) -> Self:
        """The one way a backend is built (registry.open_hal): the rig file, plus what the
        command line overrides (a port, a pace, a scenario for a simulated rig)."""
        # each backend's __init__ takes the rig and arguments of its own, unknown here
        backend: Callable[..., Self] = cls
        return backend(rig, **overrides)

    def __init__(self) -> None:
        self._events: list[HalEvent] = []
        self._open = False
        self._info: FirmwareInfo | None = None
        #: when set, every sample waits for this event first: a test holds the rig's clock
        #: between its own awaits (controller.testing), so what it asserts on and what it
        #: requests happen at one known sample. None in every real run: nothing waits.
        self.gate: asyncio.Event | None = None

    # -- life cycle ---------------------------------------------------------------------
    async def connect(self) -> FirmwareInfo:
        if self._open:
            raise HalError(f"{self.backend} HAL is already connected")
        info = await self._connect()
        self._open = True
        self._info = info
        return info

    @property
    def info(self) -> FirmwareInfo:
        """What the firmware said about itself at connect (versions, tick, rig id)."""
        if self._info is None:
            raise HalError(f"{self.backend} HAL is not connected")
        return self._info

    @property
    def clock_origin_ms(self) -> int | None:
        """The firmware's clock when this HAL connected, when the backend knows it (the
        simulated rig starts its clock with the session); None: take the first sample's.
        Session time, what people see, is rig time since then."""
        return None

    def _require_open(self) -> None:
        if not self._open:
            raise HalError(f"{self.backend} HAL is not connected; call connect() first")

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- data -------------------------------------------------------------------------
    async def next_sample(self) -> Sample:
        """The next sample the firmware sends (in simulation, time advances to it)."""
        self._require_open()
        gate = self.gate
        if gate is not None and not gate.is_set():
            await gate.wait()  # held by a test: neither the rig's clock nor the loop moves
        return await self._next_sample()

    async def samples(self) -> AsyncIterator[Sample]:
        while True:
            yield await self.next_sample()

    def drain_events(self) -> list[HalEvent]:
        """Firmware and link events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # -- commands ---------------------------------------------------------------------
    async def set_pump(self, name: str, rate: float) -> None:
        self._require_open()
        check_pump(name, rate)
        await self._set_pump(name, float(rate))

    async def set_valve(self, name: str, position: str) -> None:
        self._require_open()
        check_valve(name, position)
        await self._set_valve(name, position)

    async def set_limits(self, limits: FirmwareLimits) -> None:
        self._require_open()
        await self._set_limits(limits)

    async def get_limits(self) -> FirmwareLimits:
        self._require_open()
        return await self._get_limits()

    async def upload_limits(self, limits: FirmwareLimits) -> FirmwareLimits:
        """Send the limits and read them back; a mismatch refuses to go on."""
        await self.set_limits(limits)
        back = await self.get_limits()
        if not limits.matches(back):
            raise SafetyError(f"firmware limits read back differ: sent {limits}, got {back}")
        return back

    async def enter_safe(self) -> None:
        self._require_open()
        await self._enter_safe()

    async def arm(self) -> None:
        """Leave the safe state; refused (CommandRefused) while a cause is present."""
        self._require_open()
        await self._arm()

    async def heartbeat(self) -> None:
        self._require_open()
        await self._heartbeat()

    # -- backend hooks ----------------------------------------------------------------
    @abstractmethod
    async def _connect(self) -> FirmwareInfo: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _next_sample(self) -> Sample: ...

    @abstractmethod
    async def _set_pump(self, name: str, rate: float) -> None: ...

    @abstractmethod
    async def _set_valve(self, name: str, position: str) -> None: ...

    @abstractmethod
    async def _set_limits(self, limits: FirmwareLimits) -> None: ...

    @abstractmethod
    async def _get_limits(self) -> FirmwareLimits: ...

    @abstractmethod
    async def _enter_safe(self) -> None: ...

    @abstractmethod
    async def _arm(self) -> None: ...

    @abstractmethod
    async def _heartbeat(self) -> None: ...


__all__ = [
    "DETECTOR_NAMES",
    "PUMP_NAMES",
    "SENSOR_NAMES",
    "Capabilities",
    "FirmwareInfo",
    "FirmwareLimits",
    "FirmwareState",
    "Hal",
    "HalEvent",
    "HalEventKind",
    "PumpReading",
    "Reading",
    "SafeReason",
    "Sample",
]
