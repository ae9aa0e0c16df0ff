"""The simulated rig microcontroller: fixed tick, command checking, protective system.

It knows the wire protocol's vocabulary and its own limits, never the controller's internals
(docs/architecture.md rule 4). Its protective system runs every tick, independent of the controller:
air, return pressure outside its window, access below its limit, blood leak, an implausible
return or access sensor, and heartbeat loss each put it in the safe state within one tick.
Leaving the safe state needs an explicit arm once the cause is gone.

The tick is kept cheap (a few comparisons) because six hours of rig time is 2.16 million
ticks; the physics is integrated every `physics_period_ms` (and up to the very tick of any
actuator change), and all values the protective system reads are refreshed then and whenever
a fault changes them; ticks where nothing can change are skipped (see `run_until`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from operator import and_, le, mul, sub, truediv
from typing import Any, Final

from controller.config.rig import RigConfig
from controller.rig import (
    PRESSURE_NAMES,
    PUMP_HARD_MAX,
    PUMP_NAMES,
    SCALE_NAMES,
    SENSOR_NAMES,
    VALVE_POSITIONS,
    FirmwareState,
    PumpReading,
    Reading,
    SafeReason,
    Sample,
)
from firmware_sim.physics import ENCODER_ML, Physics

FIRMWARE_VERSION = "fwsim-0.1.0"
#: Below this commanded blood flow the pressure windows are not checked (a stopped or
#: just-starting blood pump gives no return pressure to speak of).
BLOOD_FLOWING_ML_MIN = 20.0
#: Each pump's flow unit per mL/min (heparin, the last, is in mL/h)
_FLOW_UNIT = (1.0,) * (len(PUMP_NAMES) - 1) + (60.0,)
#: `tuple.__new__(NamedTupleClass, (a, b))` builds the named tuple from C, with no frame
_new_tuple = tuple.__new__


class Nak:
    """Refusal codes (names as in docs/protocol.md)."""

    OUT_OF_RANGE: Final = "out_of_range"
    UNKNOWN_ID: Final = "unknown_id"
    IN_SAFE_STATE: Final = "in_safe_state"
    CAUSE_PRESENT: Final = "cause_present"
    BAD_LIMITS: Final = "bad_limits"
    LIMIT_BELOW_RATE: Final = "limit_below_rate"


#: Safe-state reasons: the rig's own names (docs/protocol.md), one list for both sides
Reason = SafeReason


@dataclass(slots=True)
class Limits:
    return_low_mmhg: float = 10.0
    return_high_mmhg: float = 300.0
    access_low_mmhg: float = -250.0
    heartbeat_timeout_ms: int = 500
    pump_max: dict[str, float] = field(default_factory=lambda: dict(PUMP_HARD_MAX))

    def problem(self) -> str | None:
        """Why these limits cannot be accepted, or None."""
        values = (self.return_low_mmhg, self.return_high_mmhg, self.access_low_mmhg)
        if not all(math.isfinite(v) for v in values):
            return "a limit is not a finite number"
        if not 0 < self.return_low_mmhg < self.return_high_mmhg <= 600:
            return "return window must satisfy 0 < low < high <= 600 mmHg"
        if not -400 <= self.access_low_mmhg < 0:
            return "access limit must be in -400..0 mmHg"
        if not 50 <= self.heartbeat_timeout_ms <= 5000:
            return "heartbeat timeout must be 50..5000 ms"
        for name in PUMP_NAMES:
            top = self.pump_max.get(name, math.nan)
            if not 0 <= top <= PUMP_HARD_MAX[name]:
                return f"pump {name} maximum must be 0..{PUMP_HARD_MAX[name]:g}"
        return None


@dataclass(slots=True)
class Snapshot:
    """What one SAMPLE message carries; built only at the sample rate."""

    t_ms: int
    counter: int
    commanded: tuple[float, ...]
    measured: tuple[float, ...]
    sensors: dict[str, float]
    valid: dict[str, bool]
    air_return: bool
    blood_leak: bool
    valves: dict[str, str]
    safe: bool
    reason: str
    #: cumulative encoder volume of each pump since power-on (mL)
    totals: tuple[float, ...] = ()


@dataclass(slots=True)
class FirmwareEvent:
    t_ms: int
    code: str
    detail: str = ""
    #: a fault's parameters (fault_injected, fault_cleared): for the simulator's console,
    #: not sent on the wire (the EVENT message carries `detail` only)
    params: dict[str, Any] = field(default_factory=dict)


class Firmware:
    """One simulated MCU. Commands return None when accepted or a `Nak` code."""

    def __init__(
        self,
        physics: Physics | None = None,
        rig: RigConfig | None = None,
        physics_period_ms: int | None = None,
    ) -> None:
        """Every argument has a default so that `copy.deepcopy` works once compiled (mypyc
        builds the copy with `Firmware()`, then sets its state; tools/build_native.py)."""
        rig = rig or RigConfig()
        self.physics = physics if physics is not None else Physics()
        self.rig_id = rig.rig_id
        self.tick_ms = rig.firmware_tick_ms
        self.sample_period_ms = rig.sample_period_ms
        period = physics_period_ms or min(100, rig.sample_period_ms)
        self.physics_period_ms = max(1, round(period / self.tick_ms)) * self.tick_ms
        self._ranges = {
            **{n: (rig.sensors.pressure.low, rig.sensors.pressure.high) for n in PRESSURE_NAMES},
            **{n: (rig.sensors.scale.low, rig.sensors.scale.high) for n in SCALE_NAMES},
            "plasma_temp": (rig.sensors.plasma_temp.low, rig.sensors.plasma_temp.high),
            "map": (rig.sensors.map.low, rig.sensors.map.high),
        }
        #: the ranges in SENSOR_NAMES order; with a bound at infinity a reading compared
        #: with it could be infinite and still inside: `_valid` judges those one by one
        self._range_list = [self._ranges[n] for n in SENSOR_NAMES]
        self._lows = [lo for lo, _hi in self._range_list]
        self._highs = [hi for _lo, hi in self._range_list]
        self._open_ranges = not all(math.isfinite(b) for r in self._range_list for b in r)
        #: listeners called with each Snapshot / FirmwareEvent as it is produced
        self.on_sample: Callable[[Snapshot], None] | None = None
        #: a listener in the controller's process (SimHal) takes each sample as the
        #: controller's `Sample`, built once, instead of a Snapshot to be converted
        self.on_rig_sample: Callable[[Sample], None] | None = None
        self.on_event: Callable[[FirmwareEvent], None] | None = None
        #: sensor faults: name -> frozen value (stuck), or in the missing / out-of-range sets
        self.stuck: dict[str, float] = {}
        self.missing: set[str] = set()
        self.out_of_range: set[str] = set()
        #: the controller_silence fault: heartbeats are not heard while set
        self.deaf = False
        #: fraction of the controller's commands lost on their way in (a bad line, a noisy
        #: cable): each one is dropped, or corrupted so its CRC fails, never half-executed
        self.command_loss = 0.0
        self.corrupt_commands = False
        self._loss_rng = random.Random(rig.sim.seed + 7)
        #: the link_down fault: nothing the firmware sends reaches the controller
        self.mute = False
        #: scheduled work (faults); called when t_ms reaches `wake_ms`
        self.wake_ms = math.inf
        self.on_wake: Callable[[int], None] | None = None
        #: the simulation's own time (ms): physics and scheduled faults run on it, and it
        #: never goes back. The firmware's clock, which samples and events carry, restarts
        #: at a power-on reset: it is `t_ms - boot_ms` (see `clock_ms`).
        self.t_ms = 0
        self.boot_ms = 0
        self._physics_ms = 0
        self._boot()

    # -- life cycle -------------------------------------------------------------------
    def _boot(self) -> None:
        self.limits = Limits()
        self.limits_uploaded = False
        self.commanded = dict.fromkeys(PUMP_NAMES, 0.0)
        self.valves = {"plasma_route": "waste", "venous_clamp": "closed"}
        self._flush()
        for name in PUMP_NAMES:
            self.physics.set_pump(name, 0.0)
        for name, pos in self.valves.items():
            self.physics.set_valve(name, pos)
        self.safe = True
        self.reason = Reason.BOOT
        self.last_heartbeat_ms: int | None = None
        self.counter = 0
        self.boot_ms = self.t_ms
        self._counts: tuple[int, ...] = (0,) * len(PUMP_NAMES)
        self._counts_ms = self.t_ms
        self._encoders()  # encoder counters restart from the rotors' positions now
        #: the counts at power-on: the totals a SAMPLE carries count from here, from zero
        self._counts0 = self._counts
        self.next_sample_ms = self.t_ms + self.sample_period_ms
        self._next_physics_ms = self.t_ms + self.physics_period_ms
        self._check_ms = math.inf
        self._refresh()

    @property
    def clock_ms(self) -> int:
        """The firmware's clock: ms since its last power-on (what samples and events carry)."""
        return self.t_ms - self.boot_ms

    def reset(self) -> None:
        """Power-on reset (the mcu_reset fault): everything forgotten, safe, limits gone;
        its clock, sample counter and encoder totals start again from zero, as RAM would
        (docs/protocol.md). The simulation's time goes on."""
        self._boot()
        self.emit("reset", "power-on reset")

    # -- time ---------------------------------------------------------------------------
    def run_until(self, t_ms: int) -> None:
        """Advance rig time to `t_ms` (rounded down to a whole tick).

        Only ticks where something can happen are visited: a physics step, a sample, a
        scheduled fault, the heartbeat deadline, or the tick after a command or fault
        changed what the protective system reads. Every other tick would find exactly the
        same values, so skipping it changes no outcome and keeps 6 h of rig time cheap.
        """
        tick = self.tick_ms
        end = t_ms - t_ms % tick
        physics = self.physics
        period = self.physics_period_ms
        while True:
            hb = self._heartbeat_check_ms()
            nxt = min(self._next_physics_ms, self.next_sample_ms, self.wake_ms, self._check_ms, hb)
            if nxt > end:
                break
            # a whole ms: each deadline is an int tick, or math.inf for none (never <= end)
            now = int(nxt)
            self.t_ms = now
            if now >= self.wake_ms and self.on_wake is not None:
                self.on_wake(now)
            if now >= self._next_physics_ms:
                physics.step((now - self._physics_ms) / 1000.0)
                self._physics_ms = now
                self._next_physics_ms = now + period
                self._refresh()
            self._check_ms = math.inf
            if not self.safe:
                self._protect()
            if now >= self.next_sample_ms:
                self.next_sample_ms += self.sample_period_ms
                self._sample()
        if end > self.t_ms:
            self.t_ms = end

    def tick(self) -> None:
        self.run_until(self.t_ms + self.tick_ms)

    def _heartbeat_check_ms(self) -> float:
        """The first tick at which a silent controller has exceeded the timeout."""
        if self.safe:
            return math.inf
        if self.last_heartbeat_ms is None:
            return self.t_ms + self.tick_ms
        deadline = self.last_heartbeat_ms + self.limits.heartbeat_timeout_ms
        return deadline - deadline % self.tick_ms + self.tick_ms

    def _flush(self) -> None:
        """Integrate the physics up to now before an actuator changes, so flows change
        at the exact tick they were commanded."""
        if self.t_ms > self._physics_ms:
            self.physics.step((self.t_ms - self._physics_ms) / 1000.0)
            self._physics_ms = self.t_ms

    def _changed(self) -> None:
        """Something the protective system reads may have changed: check at the next tick."""
        self.physics.update_pressures()
        self._refresh()
        self._check_ms = min(self._check_ms, self.t_ms + self.tick_ms)

    # -- protective system ------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-read what the protective system checks (after physics or a fault)."""
        p = self.physics
        self._air = p.air_return
        self._leak = p.blood_leak
        if self.stuck or self.missing or self.out_of_range:
            self._p_return = self._reading("return", p.pressure("return"))
            self._p_access = self._reading("access", p.pressure("access"))
        else:  # no sensor fault: the readings are the pressures (after every physics step)
            self._p_return = p.pressure("return")
            self._p_access = p.pressure("access")

    def sensors_changed(self) -> None:
        """Faults call this so the next tick already sees their effect."""
        self._flush()
        self._changed()

    def _protect(self) -> None:
        if self._air:
            self.go_safe(Reason.AIR)
        elif self._leak:
            self.go_safe(Reason.BLOOD_LEAK)
        elif (
            self.last_heartbeat_ms is None
            or self.t_ms - self.last_heartbeat_ms > self.limits.heartbeat_timeout_ms
        ):
            self.go_safe(Reason.HEARTBEAT)
        elif self.commanded["blood"] >= BLOOD_FLOWING_ML_MIN:
            p_ret, p_acc = self._p_return, self._p_access
            lim = self.limits
            if not (self._valid("return", p_ret) and self._valid("access", p_acc)):
                self.go_safe(Reason.SENSOR)
            elif p_ret < lim.return_low_mmhg:
                self.go_safe(Reason.RETURN_LOW)
            elif p_ret > lim.return_high_mmhg:
                self.go_safe(Reason.RETURN_HIGH)
            elif p_acc < lim.access_low_mmhg:
                self.go_safe(Reason.ACCESS_LOW)

    def cause_present(self) -> str | None:
        """The reason the firmware may not leave the safe state now, if any."""
        if not self.limits_uploaded:
            return "limits not uploaded"
        if self._air:
            return Reason.AIR
        if self._leak:
            return Reason.BLOOD_LEAK
        if self.last_heartbeat_ms is None or (
            self.t_ms - self.last_heartbeat_ms > self.limits.heartbeat_timeout_ms
        ):
            return Reason.HEARTBEAT
        if not (self._valid("return", self._p_return) and self._valid("access", self._p_access)):
            return Reason.SENSOR
        return None

    def go_safe(self, reason: SafeReason) -> None:
        """All pumps and heparin stopped, venous clamp closed, within this tick."""
        self._flush()
        for name in PUMP_NAMES:
            self.commanded[name] = 0.0
            self.physics.set_pump(name, 0.0)
        self.valves["venous_clamp"] = "closed"
        self.physics.set_valve("venous_clamp", "closed")
        self._changed()
        if not self.safe:
            self.safe = True
            self.reason = reason
            self.emit("entered_safe", reason)

    # -- sensors ----------------------------------------------------------------------
    def _reading(self, name: str, value: float) -> float:
        if name in self.stuck:
            return self.stuck[name]
        if name in self.missing:
            return math.nan
        if name in self.out_of_range:
            return self._ranges[name][1] + 500.0
        return value

    def _valid(self, name: str, value: float) -> bool:
        lo, hi = self._ranges[name]
        return math.isfinite(value) and lo <= value <= hi

    def raw_sensor(self, name: str) -> float:
        p = self.physics
        if name in PRESSURE_NAMES:
            return p.pressure_sample(name)
        if name in SCALE_NAMES:
            return p.scale_g(name)
        return p.temp_sample() if name == "plasma_temp" else p.map_sample()

    def _encoders(self) -> tuple[float, ...]:
        """Flows from encoder counts since the last sample (mL/min; heparin mL/h).

        Counts are cumulative, so the error of one sample is taken back by the next: the
        sum of measured flow x interval equals the rotor's volume to one count, however
        long the run. That is what lets the controller account volumes to the millilitre.

        Runs on every sample: the arithmetic is `map` over the pumps (no Python frame per
        pump), the very operations in the same order: floor(rotor / resolution), then
        (count - previous) x resolution / minutes x unit (x 1.0 is exact).
        """
        self._flush()
        counts = tuple(map(math.floor, map(truediv, self.physics.rotor_ml, ENCODER_ML)))
        prev, self._counts = self._counts, counts
        dt_min = (self.t_ms - self._counts_ms) / 60000.0
        self._counts_ms = self.t_ms
        if dt_min <= 0.0:
            return (0.0,) * len(counts)
        moved = map(mul, map(sub, counts, prev), ENCODER_ML)
        return tuple(map(mul, map(truediv, moved, repeat(dt_min)), _FLOW_UNIT))

    def _readings(self) -> tuple[list[float], list[bool]]:
        """Every sensor's reading and whether it is vouched for, in SENSOR_NAMES order."""
        if self.stuck or self.missing or self.out_of_range or self._open_ranges:
            values = [self._reading(n, self.raw_sensor(n)) for n in SENSOR_NAMES]
            return values, [self._valid(n, v) for n, v in zip(SENSOR_NAMES, values, strict=True)]
        # no sensor fault: the same readings, judged against finite ranges at once
        # (lo <= v and v <= hi, as `lo <= v <= hi`; a NaN fails both)
        values = self.physics.readings()
        return values, list(map(and_, map(le, self._lows, values), map(le, values, self._highs)))

    def _sample(self) -> None:
        self.counter += 1
        measured = self._encoders()
        if self.mute or (self.on_sample is None and self.on_rig_sample is None):
            return
        values, valid = self._readings()
        if self.on_rig_sample is not None:
            self.on_rig_sample(self._rig_sample(measured, values, valid))
        if self.on_sample is None:
            return
        self.on_sample(
            Snapshot(
                t_ms=self.t_ms - self.boot_ms,
                counter=self.counter,
                commanded=tuple(self.commanded[n] for n in PUMP_NAMES),
                measured=measured,
                sensors=dict(zip(SENSOR_NAMES, values, strict=True)),
                valid=dict(zip(SENSOR_NAMES, valid, strict=True)),
                air_return=self._air,
                blood_leak=self._leak,
                # where the valves are (their position sensors), not where they were sent:
                # a stuck valve shows as a command the rig did not follow
                valves={
                    "plasma_route": "collect" if self.physics.valve_collect else "waste",
                    "venous_clamp": "open" if self.physics.valve_open else "closed",
                },
                safe=self.safe,
                reason=self.reason,
                totals=self._totals(),
            )
        )

    def _totals(self) -> tuple[float, ...]:
        """Each pump's encoder volume since power-on (mL): counts since the last boot."""
        return tuple(map(mul, map(sub, self._counts, self._counts0), ENCODER_ML))

    def _rig_sample(
        self, measured: tuple[float, ...], values: list[float], valid: list[bool]
    ) -> Sample:
        """The sample as the controller's `Sample`, built at once for a HAL in this process
        (SimHal): the figures a `Snapshot` carries, with no Snapshot between them. It is
        built ten times a second of rig time, thousands of times a second at full speed,
        so its 23 readings are made by `map` in C (`tuple.__new__` of the named tuple, no
        Python frame each); the result equals, field by field, what the serial link's
        `Snapshot` becomes on the controller's side."""
        physics = self.physics
        # strict=False: each of these has one entry per pump or sensor by construction, and
        # the check would cost a tenth of the building
        commanded = self.commanded.values()
        pumps = map(_new_tuple, repeat(PumpReading), zip(commanded, measured, strict=False))
        readings = map(_new_tuple, repeat(Reading), zip(values, valid, strict=False))
        return Sample(
            t_ms=self.t_ms - self.boot_ms,
            seq=self.counter,
            pumps=dict(zip(PUMP_NAMES, pumps, strict=False)),
            sensors=dict(zip(SENSOR_NAMES, readings, strict=False)),
            detectors={"air_return": self._air, "blood_leak": self._leak},
            # where the valves are (their position sensors), not where they were sent
            valves={
                "plasma_route": "collect" if physics.valve_collect else "waste",
                "venous_clamp": "open" if physics.valve_open else "closed",
            },
            state=FirmwareState.SAFE if self.safe else FirmwareState.RUNNING,
            safe_reason=self.reason,
            totals_ml=dict(zip(PUMP_NAMES, self._totals(), strict=False)),
        )

    def emit(self, code: str, detail: str = "", params: dict[str, Any] | None = None) -> None:
        """Report an event (entered_safe, armed, reset, ...) to whoever listens."""
        if self.on_event is not None:
            self.on_event(FirmwareEvent(self.t_ms - self.boot_ms, code, detail, dict(params or {})))

    # -- commands -----------------------------------------------------------------------
    def set_pump(self, name: str, rate: float) -> str | None:
        if name not in self.commanded:
            return Nak.UNKNOWN_ID
        if not (math.isfinite(rate) and 0.0 <= rate <= self.limits.pump_max[name]):
            return Nak.OUT_OF_RANGE
        if self.safe and rate > 0.0:
            return Nak.IN_SAFE_STATE
        self._flush()
        self.commanded[name] = rate
        self.physics.set_pump(name, rate)
        self._changed()
        return None

    def set_valve(self, name: str, position: str) -> str | None:
        if name not in VALVE_POSITIONS:
            return Nak.UNKNOWN_ID
        if position not in VALVE_POSITIONS[name]:
            return Nak.OUT_OF_RANGE
        if self.safe and name == "venous_clamp" and position == "open":
            return Nak.IN_SAFE_STATE
        self._flush()
        self.valves[name] = position
        self.physics.set_valve(name, position)
        self._changed()
        return None

    def set_limits(self, limits: Limits) -> str | None:
        """Refused when a maximum is below that pump's running rate: the firmware never
        stops a pump on its own while it says it is running (docs/protocol.md)."""
        if limits.problem() is not None:
            return Nak.BAD_LIMITS
        if any(rate > limits.pump_max[name] for name, rate in self.commanded.items()):
            return Nak.LIMIT_BELOW_RATE
        self._flush()
        self.limits = limits
        self.limits_uploaded = True
        self._changed()
        self.emit("limits_changed")
        return None

    def enter_safe(self) -> None:
        if self.safe:
            self.go_safe(self.reason)
        else:
            self.go_safe(Reason.COMMAND)

    def arm(self) -> str | None:
        if not self.safe:
            return None
        if self.cause_present() is not None:
            return Nak.CAUSE_PRESENT
        self.safe = False
        self.reason = Reason.NONE
        self._changed()
        self.emit("armed")
        return None

    def command_lost(self) -> bool:
        """Whether the next command from the controller is lost on its way in."""
        return self.command_loss > 0.0 and self._loss_rng.random() < self.command_loss

    def heartbeat(self) -> None:
        if not self.deaf:
            self.last_heartbeat_ms = self.t_ms
