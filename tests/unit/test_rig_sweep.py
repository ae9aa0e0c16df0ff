"""Every rig file that validates passes self-test and priming on the simulated rig.

The corners below were found by running rigs at (and between) the bounds of every rig field
through self-test and priming (`run_treatment` on the simulated rig, all at once): each was
valid alone, and faulted before a patient was connected. Each is now either refused by a
rule naming the field (`controller.config.operable`, tighter bounds) or made to work (the
controller primes at the rig's pump maxima; a simulated level of 0 is no division by zero).
The corners that remain valid run here, with every shipped rig.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controller.app import RunOptions, run_treatment
from controller.config import Prescription, RigConfig
from controller.config.loading import load_prescription, load_rig, validate
from controller.config.rig import SELF_TEST_RATE
from controller.errors import ConfigError
from controller.rig import PUMP_NAMES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config/rigs").glob("*.yaml"))
LI_ALS = load_prescription(ROOT / "config/prescriptions/li_als.yaml")
PE = load_prescription(ROOT / "config/prescriptions/pe.yaml")

#: id -> (rig file content, the prescription whose priming it runs)
CORNERS: dict[str, tuple[dict[str, Any], Prescription]] = {
    "slowest-timing": (
        {
            "firmware_tick_ms": 50,
            "sample_period_ms": 500,
            "control_period_ms": 500,
            "heartbeat_timeout_ms": 1000,
            "link_lost_ms": 1000,
        },
        LI_ALS,
    ),
    "fastest-timing": (
        {
            "firmware_tick_ms": 1,
            "sample_period_ms": 10,
            "control_period_ms": 20,
            "heartbeat_timeout_ms": 100,
            "link_lost_ms": 100,
        },
        PE,
    ),
    "slow-samples-fast-controller": (
        {
            "sample_period_ms": 500,
            "control_period_ms": 20,
            "heartbeat_timeout_ms": 1000,
            "link_lost_ms": 1000,
        },
        PE,
    ),
    # a blood pump below the priming flow primes at its maximum
    "pumps-at-self-test-rates": (
        {"pumps": {name: {"max_rate": SELF_TEST_RATE[name]} for name in PUMP_NAMES}},
        PE,
    ),
    "slow-blood-and-loop": (
        {"pumps": {"blood": {"max_rate": 100}, "loop": {"max_rate": 60}}},
        LI_ALS,
    ),
    "calibration-low": (
        {"pumps": {name: {"max_rate": 20, "calibration": 0.8} for name in ("plasma", "heparin")}},
        PE,
    ),
    "calibration-high": ({"pumps": {"blood": {"max_rate": 250, "calibration": 1.2}}}, LI_ALS),
    "tightest-pressure-limits": (
        {"alarms": {"return_low_mmhg": 25, "return_high_mmhg": 100, "access_low_mmhg": -160}},
        LI_ALS,
    ),
    "loosest-limits": (
        {
            "alarms": {
                "return_low_mmhg": 5,
                "return_high_mmhg": 450,
                "access_low_mmhg": -350,
                "minimum_blood_flow_ml_min": 30,
            },
            "sensors": {"pressure": {"low": -400, "high": 600}},
        },
        PE,
    ),
    "narrowest-sensor-ranges": (
        {
            "alarms": {"map_low_mmhg": 60, "plasma_temp_low_c": 37, "plasma_temp_high_c": 38},
            "sensors": {
                "pressure": {"low": -251, "high": 301},
                "scale": {"low": -1, "high": 10000},
                "plasma_temp": {"low": 36.9, "high": 41.1},
                "map": {"low": 59, "high": 92},
            },
        },
        LI_ALS,
    ),
    "sim-extremes-low": (
        {
            "sim": {"il6_pg_ml": 0, "bilirubin_umol_l": 0, "map_baseline_mmhg": 40},
            "sensors": {"map": {"low": 20, "high": 50}},
        },
        PE,
    ),
    "sim-extremes-high": (
        {
            "sim": {
                "map_baseline_mmhg": 140,
                "substitution_bag_ml": 20000,
                "waste_bag_capacity_ml": 30000,
                "il6_pg_ml": 100000,
            },
            "sensors": {"scale": {"low": -50, "high": 30000}, "map": {"low": 20, "high": 150}},
        },
        LI_ALS,
    ),
    "stuck-after-1s": ({"sensors": {"stuck_after_s": 1}}, LI_ALS),
}

#: The corners that validated and faulted before, and the field each is now refused on.
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "sample-period-between-ticks": (
        {"firmware_tick_ms": 16},
        "sample_period_ms: 100 -> the firmware samples on its ticks (a multiple of"
        " firmware_tick_ms 16, e.g. 96 or 112)",
    ),
    "map-range-above-the-patient": (
        {"sim": {"map_baseline_mmhg": 40}, "sensors": {"map": {"low": 59, "high": 200}}},
        "sensors.map.low: 59 -> the patient's MAP (sim.map_baseline_mmhg 40)",
    ),
    "heartbeat-below-two-samples": (
        {
            "sample_period_ms": 500,
            "control_period_ms": 20,
            "heartbeat_timeout_ms": 100,
            "link_lost_ms": 1000,
        },
        "heartbeat_timeout_ms: 100 -> one late controller cycle would trip the firmware"
        " watchdog (at least 2 x sample_period_ms = 1000)",
    ),
    "pump-below-its-self-test": (
        {"pumps": {"plasma": {"max_rate": 9.9}}},
        "pumps.plasma.max_rate: 9.9 -> below the self-test rate of the plasma pump (at least 10)",
    ),
    "return-low-above-the-self-test-pressure": (
        {"alarms": {"return_low_mmhg": 50}},
        "alarms.return_low_mmhg: 50 -> above the maximum (allowed 5..25 mmHg)",
    ),
    "access-low-above-the-priming-pressure": (
        {"alarms": {"access_low_mmhg": -100}},
        "alarms.access_low_mmhg: -100 -> above the maximum (allowed -350..-160 mmHg)",
    ),
    "pressure-range-inside-the-limits": (
        {"sensors": {"pressure": {"low": -50, "high": 50}}},
        "sensors.pressure.low: -50 -> readings down to the access limit",
    ),
    "scale-refusing-an-empty-bag": (
        {"sensors": {"scale": {"low": 1, "high": 12000}}},
        "sensors.scale.low: 1 -> an empty bag reads 0 g",
    ),
    "scale-below-a-full-bag": (
        {"sim": {"substitution_bag_ml": 20000}},
        "sensors.scale.high: 12000 -> a full bag (sim.substitution_bag_ml 20000 mL)",
    ),
    "temperature-range-without-37": (
        {"sensors": {"plasma_temp": {"low": 37.5, "high": 45}}},
        "sensors.plasma_temp.low: 37.5 -> plasma too cold",
    ),
    "map-range-below-the-patient": (
        {"sensors": {"map": {"low": 20, "high": 79}}},
        "sensors.map.high: 79 -> the patient's MAP (sim.map_baseline_mmhg 80)",
    ),
}


async def self_test_and_priming(rig: RigConfig, rx: Prescription) -> list[str]:
    """The phases the run went through; no checklist, so the gate ends it at `ready`."""
    summary, _ = await run_treatment(rig, rx, RunOptions(max_rig_s=4 * 3600))
    assert summary.error is None, summary.error
    return [t.dest for t in summary.transitions]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_rig_passes_self_test_and_priming(path: Path) -> None:
    states = asyncio.run(self_test_and_priming(load_rig(path), LI_ALS))
    assert states[:3] == ["self_test", "priming", "ready"]


def test_the_corners_pass_self_test_and_priming() -> None:
    """One event loop for all of them: each run is a few thousand samples in virtual time."""

    async def all_corners() -> dict[str, list[str]]:
        out = {}
        for name, (data, rx) in CORNERS.items():
            out[name] = await self_test_and_priming(validate(RigConfig, data, name), rx)
        return out

    for name, states in asyncio.run(all_corners()).items():
        assert states[:3] == ["self_test", "priming", "ready"], name


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_corners_that_faulted_are_refused_naming_the_field(name: str) -> None:
    data, expected = REFUSED[name]
    with pytest.raises(ConfigError) as caught:
        validate(RigConfig, data, "rig.yaml")
    assert any(line.startswith(f"rig.yaml: {expected}") for line in caught.value.lines()), (
        caught.value.lines()
    )
