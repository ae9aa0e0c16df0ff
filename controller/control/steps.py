"""Self-test and priming (docs/spec.md section 4) as functions over the HAL and the actuator.

Each step drives the rig through `Cycle`, the loop's own cycle (a sample read, accounted,
heartbeated, published), so a step never holds the firmware's watchdog off and a display sees
every sample of it. A failure raises `StepFailed` naming the part, and the loop ends in the
safe state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.config.prescription import Prescription
from controller.config.rig import SELF_TEST_RATE, RigConfig
from controller.control.actuator import Actuator
from controller.errors import AlsError, CommandRefused
from controller.fsm import plan
from controller.fsm.phases import Setpoints
from controller.hal.base import FirmwareLimits, Hal
from controller.protocol import PROTOCOL_VERSION
from controller.rig import DETECTOR_NAMES, PRESSURE_NAMES, PUMP_NAMES, SENSOR_NAMES, Sample

ENCODER_TOLERANCE = 0.10
VALVE_SETTLE_S = 0.5
#: A pressure reading further than this from zero at rest does not zero.
ZERO_TOLERANCE_MMHG = 50.0

#: One cycle of the loop: the next sample, already accounted and published.
Cycle = Callable[[], Awaitable[Sample]]


class StepFailed(AlsError):
    """A self-test or priming step failed; the message names the part."""


async def wait(
    cycle: Cycle, seconds: float, check: Callable[[Sample], None] | None = None
) -> Sample:
    """Let `seconds` of rig time pass, cycling; `check` may raise on every sample."""
    sample = await cycle()
    end = sample.t_ms + int(seconds * 1000)
    while sample.t_ms < end:
        sample = await cycle()
        if check is not None:
            check(sample)
    return sample


async def valve_settles(cycle: Cycle, name: str, position: str) -> str:
    """The position the valve reports within VALVE_SETTLE_S of rig time.

    Over a serial line the next sample may have left the firmware before the command
    arrived, and a real clamp takes tens of milliseconds to move: one stale sample is not a
    failed clamp, a clamp that has not moved after the settle time is.
    """
    sample = await cycle()
    end = sample.t_ms + int(VALVE_SETTLE_S * 1000)
    while sample.valves[name] != position and sample.t_ms < end:
        sample = await cycle()
    return sample.valves[name]


async def load_limits(hal: Hal, limits: FirmwareLimits) -> None:
    """Upload the firmware's own limits and read them back; a mismatch refuses."""
    try:
        await hal.upload_limits(limits)
    except (CommandRefused, AlsError) as exc:
        raise StepFailed(f"firmware limits: {exc}") from exc


def protocol_mismatch(hal: Hal) -> str | None:
    version = hal.info.protocol_version
    if version == PROTOCOL_VERSION:
        return None
    return f"firmware speaks protocol {version}, controller {PROTOCOL_VERSION}"


async def self_test(
    hal: Hal, actuator: Actuator, cycle: Cycle, limits: FirmwareLimits
) -> dict[str, float]:
    """Link, limits, sensors, detectors, pressure zero, arm, clamp and every pump's encoder.
    Returns each pressure sensor's reading at rest (its zero)."""
    mismatch = protocol_mismatch(hal)
    if mismatch is not None:
        raise StepFailed(f"link: {mismatch}")
    await load_limits(hal, limits)
    sample = await cycle()
    for name in SENSOR_NAMES:
        reading = sample.sensors[name]
        if not reading.valid:
            raise StepFailed(f"sensor {name}: reading {reading.value:g} is not plausible")
    for name in DETECTOR_NAMES:
        if sample.detectors[name]:
            raise StepFailed(f"detector {name}: reports an alarm at rest")
    zero: dict[str, float] = {}
    for name in PRESSURE_NAMES:
        value = sample.sensors[name].value
        if abs(value) > ZERO_TOLERANCE_MMHG:
            raise StepFailed(f"pressure sensor {name}: {value:.0f} mmHg at rest, cannot zero")
        zero[name] = value
    try:
        await actuator.arm(limits, after_reset=False)
    except CommandRefused as exc:
        raise StepFailed(f"firmware refuses to arm: {exc.code}") from exc
    for position in ("open", "closed"):
        await actuator.set_valve("venous_clamp", position)
        seen = await valve_settles(cycle, "venous_clamp", position)
        if seen != position:
            raise StepFailed(f"venous clamp: commanded {position}, reports {seen}")
    for name in PUMP_NAMES:
        await _pump_check(actuator, cycle, name)
    return zero


async def _pump_check(actuator: Actuator, cycle: Cycle, name: str) -> None:
    rate = SELF_TEST_RATE[name]
    if name == "blood":
        await actuator.set_valve("venous_clamp", "open")
    await actuator.set_pump(name, rate)
    sample = await wait(cycle, plan.SELF_TEST_PUMP_S)
    measured = sample.pumps[name].measured
    await actuator.set_pump(name, 0.0)
    if name == "blood":
        await actuator.set_valve("venous_clamp", "closed")
    if sample.safe:
        raise StepFailed(f"pump {name}: firmware went safe ({sample.safe_reason})")
    if abs(measured - rate) > ENCODER_TOLERANCE * rate:
        raise StepFailed(f"pump {name}: commanded {rate:g}, encoder reads {measured:.1f}")


async def prime(rig: RigConfig, rx: Prescription, actuator: Actuator, cycle: Cycle) -> None:
    """Saline through the blood side (and the loop when the mode has one), no air."""

    def no_air(sample: Sample) -> None:
        if sample.detectors["air_return"]:
            raise StepFailed("priming: air detected in the return line")
        if sample.safe:
            raise StepFailed(f"priming: firmware went safe ({sample.safe_reason})")

    target = plan.PRIME_BLOOD_SIDE_ML
    loop_target = plan.PRIME_LOOP_ML if rx.has_loop else 0.0
    # a rig whose pumps are slower than the priming flow primes at their maximum (the
    # firmware refuses more); the loop runs until it holds its own volume too
    blood = min(plan.PRIME_FLOW_ML_MIN, rig.pumps.blood.max_rate)
    pumps = dict.fromkeys(PUMP_NAMES, 0.0)
    pumps["blood"] = blood
    if loop_target:
        pumps["loop"] = min(blood * loop_target / target, rig.pumps.loop.max_rate)
    await actuator.command(Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"}))
    primed = looped = 0.0
    sample = await cycle()
    while primed < target or looped < loop_target:
        last = sample.t_ms
        sample = await cycle()
        no_air(sample)
        primed += sample.pumps["blood"].measured * (sample.t_ms - last) / 60000.0
        looped += sample.pumps["loop"].measured * (sample.t_ms - last) / 60000.0
    await actuator.stop_all()
