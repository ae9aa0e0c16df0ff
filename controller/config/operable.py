"""Rules that make a valid rig file a rig that works: it passes self-test and priming.

Each rule was found by running rigs at the corners of the model's bounds through self-test
and priming on the simulated rig (tests/unit/test_rig_sweep.py keeps those corners): every
value was within its own bounds, yet together they faulted before a patient was connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.config._fields import RuleViolation
from controller.config.rig import SELF_TEST_RATE
from controller.rig import PUMP_NAMES

if TYPE_CHECKING:
    from controller.config.rig import RigConfig

#: What each chamber of the double-chamber bag holds (as the interlocks take it).
CHAMBER_ML = 2000.0
#: The simulated patient's MAP must read well inside the MAP sensor's range (noise, fluid).
MAP_MARGIN_MMHG = 10.0


def timing(rig: RigConfig) -> list[RuleViolation]:
    """The controller heartbeats once per sample: at the slower of its own cycle and the
    firmware's sample period. A watchdog shorter than two of those trips on the first
    command (sample 500 ms, heartbeat 100 ms validated and failed the self-test)."""
    bad = []
    cycle = max(rig.control_period_ms, rig.sample_period_ms)
    if rig.heartbeat_timeout_ms < 2 * cycle:
        slower = "control_period_ms" if cycle == rig.control_period_ms else "sample_period_ms"
        bad.append(
            RuleViolation(
                "heartbeat_timeout_ms",
                rig.heartbeat_timeout_ms,
                "one late controller cycle would trip the firmware watchdog",
                f"at least 2 x {slower} = {2 * cycle}",
            )
        )
    if rig.sample_period_ms < rig.firmware_tick_ms:
        bad.append(
            RuleViolation(
                "sample_period_ms",
                rig.sample_period_ms,
                "the firmware cannot sample faster than it ticks",
                f"at least firmware_tick_ms = {rig.firmware_tick_ms}",
            )
        )
    elif rig.sample_period_ms % rig.firmware_tick_ms:
        # the simulated firmware waited forever for a sample between two ticks
        below = rig.sample_period_ms - rig.sample_period_ms % rig.firmware_tick_ms
        bad.append(
            RuleViolation(
                "sample_period_ms",
                rig.sample_period_ms,
                "the firmware samples on its ticks",
                f"a multiple of firmware_tick_ms {rig.firmware_tick_ms}, e.g. {below}"
                f" or {below + rig.firmware_tick_ms}",
            )
        )
    if rig.link_lost_ms < 2 * rig.sample_period_ms:
        bad.append(
            RuleViolation(
                "link_lost_ms",
                rig.link_lost_ms,
                "one late sample would be taken for a lost link",
                f"at least 2 x sample_period_ms = {2 * rig.sample_period_ms}",
            )
        )
    return bad


def pumps(rig: RigConfig) -> list[RuleViolation]:
    """Each pump is run at its self-test rate to check its encoder; a pump limited below
    that rate cannot be tested (the firmware refuses the command)."""
    return [
        RuleViolation(
            f"pumps.{name}.max_rate",
            rig.pumps.get(name).max_rate,
            f"below the self-test rate of the {name} pump",
            f"at least {SELF_TEST_RATE[name]:g}",
        )
        for name in PUMP_NAMES
        if rig.pumps.get(name).max_rate < SELF_TEST_RATE[name]
    ]


def sensors(rig: RigConfig) -> list[RuleViolation]:
    """A reading outside its sensor's range is a sensor fault, not a value: each range must
    hold the alarm limits (so a limit is reached before the reading is called implausible)
    and what the rig holds at rest (empty and full bags, the patient's MAP)."""
    s, a, sim = rig.sensors, rig.alarms, rig.sim
    bad = []
    if not s.pressure.low < a.access_low_mmhg:
        bad.append(
            RuleViolation(
                "sensors.pressure.low",
                s.pressure.low,
                "readings down to the access limit alarms.access_low_mmhg would count as faults",
                f"below {a.access_low_mmhg:g}",
            )
        )
    if not s.pressure.high > a.return_high_mmhg:
        bad.append(
            RuleViolation(
                "sensors.pressure.high",
                s.pressure.high,
                "readings up to the return limit alarms.return_high_mmhg would count as faults",
                f"above {a.return_high_mmhg:g}",
            )
        )
    if not s.scale.low < 0:
        bad.append(
            RuleViolation(
                "sensors.scale.low",
                s.scale.low,
                "an empty bag reads 0 g and would count as a fault",
                "below 0",
            )
        )
    largest = max(
        (sim.substitution_bag_ml, "sim.substitution_bag_ml"),
        (sim.waste_bag_capacity_ml, "sim.waste_bag_capacity_ml"),
        (CHAMBER_ML, "a chamber of the double-chamber bag"),
    )
    if s.scale.high < largest[0]:
        bad.append(
            RuleViolation(
                "sensors.scale.high",
                s.scale.high,
                f"a full bag ({largest[1]} {largest[0]:g} mL) would read as a faulty scale",
                f"at least {largest[0]:g}",
            )
        )
    if not s.plasma_temp.low < a.plasma_temp_low_c:
        bad.append(
            RuleViolation(
                "sensors.plasma_temp.low",
                s.plasma_temp.low,
                "plasma too cold (alarms.plasma_temp_low_c) would read as a faulty sensor",
                f"below {a.plasma_temp_low_c:g}",
            )
        )
    if not s.plasma_temp.high > a.plasma_temp_cutoff_c:
        bad.append(
            RuleViolation(
                "sensors.plasma_temp.high",
                s.plasma_temp.high,
                "plasma at the cutoff (alarms.plasma_temp_cutoff_c) would read as a faulty sensor",
                f"above {a.plasma_temp_cutoff_c:g}",
            )
        )
    if not s.map.low < a.map_low_mmhg:
        bad.append(
            RuleViolation(
                "sensors.map.low",
                s.map.low,
                "a MAP below its limit (alarms.map_low_mmhg) would read as a faulty monitor",
                f"below {a.map_low_mmhg:g}",
            )
        )
    elif not s.map.low <= sim.map_baseline_mmhg - MAP_MARGIN_MMHG:
        bad.append(
            RuleViolation(
                "sensors.map.low",
                s.map.low,
                f"the patient's MAP (sim.map_baseline_mmhg {sim.map_baseline_mmhg:g})"
                " would read as a faulty monitor",
                f"at most {sim.map_baseline_mmhg - MAP_MARGIN_MMHG:g}",
            )
        )
    if not s.map.high >= sim.map_baseline_mmhg + MAP_MARGIN_MMHG:
        bad.append(
            RuleViolation(
                "sensors.map.high",
                s.map.high,
                f"the patient's MAP (sim.map_baseline_mmhg {sim.map_baseline_mmhg:g})"
                " would read as a faulty monitor",
                f"at least {sim.map_baseline_mmhg + MAP_MARGIN_MMHG:g}",
            )
        )
    return bad
