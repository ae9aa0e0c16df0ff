"""Fault injection: every catalogued fault acts on the rig, clears, and runs from scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controller.config.loading import load_scenario
from controller.config.scenario import FAULTS, FaultEvent, Scenario
from firmware_sim.faults import ACTIONS, Faults
from firmware_sim.firmware import Firmware, Limits, Reason
from firmware_sim.physics import Physics, PhysicsParams

RATES = {"blood": 120.0, "plasma": 30.0, "loop": 200.0, "filtrate": 20.0, "return": 30.0}

#: fault -> parameters and a check that it changed what it should
EFFECTS: dict[str, tuple[dict[str, Any], Any]] = {
    "air_bubble": ({}, lambda fw, ph: ph.air_return),
    "return_disconnection": ({}, lambda fw, ph: ph.pressure("return") < 10),
    "needle_dislodgement": (
        {"drop_mmhg": 25},
        lambda fw, ph: 10 < ph.pressure("return") < 90 - 20,
    ),
    "return_occlusion": ({"severity": 1.0}, lambda fw, ph: ph.pressure("return") > 300),
    "access_occlusion": ({"severity": 1.0}, lambda fw, ph: ph.pressure("access") < -250),
    "separator_fouling": ({"mmhg_per_min": 60}, lambda fw, ph: ph.separator_fouling_mmhg > 5),
    "blood_leak": ({}, lambda fw, ph: ph.blood_leak),
    "adsorber_clotting": ({"mmhg_per_min": 60}, lambda fw, ph: ph.adsorber_clot_mmhg > 5),
    "filter_clotting": ({"mmhg_per_min": 60}, lambda fw, ph: ph.filter_clot_mmhg > 5),
    "bag_empty": ({"bag": "replacement_bag"}, lambda fw, ph: ph.scale_g("replacement_bag") == 0),
    "bag_full": ({"bag": "waste_bag"}, lambda fw, ph: ph.scale_g("waste_bag") >= 10000),
    "scale_drift": (
        {"bag": "outer_chamber", "grams_per_min": 60},
        lambda fw, ph: ph.scale_offset_g["outer_chamber"] > 5,
    ),
    "hypotension": ({"drop_mmhg": 30}, lambda fw, ph: ph.map_mmhg < 65),
    "pump_stall": ({"pump": "blood"}, lambda fw, ph: ph.measured_flow("blood") == 0),
    "pump_overspeed": ({"pump": "loop"}, lambda fw, ph: ph.measured_flow("loop") > 240),
    "sensor_stuck": ({"sensor": "map"}, lambda fw, ph: "map" in fw.stuck),
    "sensor_out_of_range": (
        {"sensor": "plasma_temp"},
        lambda fw, ph: not fw._valid("plasma_temp", fw._reading("plasma_temp", 37.0)),
    ),
    "sensor_missing": ({"sensor": "map"}, lambda fw, ph: "map" in fw.missing),
    "plasma_too_cold": ({"offset_c": 4}, lambda fw, ph: ph.plasma_temp_c < 35),
    "plasma_too_hot": ({"offset_c": 5}, lambda fw, ph: ph.plasma_temp_c > 41),
    "controller_silence": ({}, lambda fw, ph: fw.deaf),
    "link_down": ({}, lambda fw, ph: fw.mute),
    "mcu_reset": ({}, lambda fw, ph: fw.reason == Reason.BOOT),
    # worn tubing: delivers 80 % while the encoder counts the rotor turning as commanded
    "pump_delivery": (
        {"pump": "plasma", "factor": 0.8},
        lambda fw, ph: ph.flow[1] == pytest.approx(24.0) and ph.measured_flow("plasma") > 29,
    ),
    "route_stuck": (
        {},
        lambda fw, ph: fw.set_valve("plasma_route", "collect") is None and not ph.valve_collect,
    ),
    "clamp_stuck_open": (
        {},
        lambda fw, ph: fw.set_valve("venous_clamp", "closed") is None and ph.valve_open,
    ),
    "bag_valve_leak": ({"per_s": 0.5}, lambda fw, ph: ph.bag_valve_leak_k == 0.5),
    "heparin_occlusion": ({}, lambda fw, ph: ph.pump_factor[7] == 0.0),
    "filter_rupture": ({}, lambda fw, ph: ph.pressure("pre_filter") - ph.pressure("filtrate") < 50),
    "sensor_drift": (
        {"sensor": "return", "mmhg_per_min": -10},
        lambda fw, ph: ph.pressure_offset[3] < -5,
    ),
    "map_ramp": (
        {"mmhg_per_min": 20, "drop_mmhg": 30},
        lambda fw, ph: ph.hypotension_mmhg >= 19.9 and ph.map_mmhg < 70,
    ),
    "command_loss": (
        {"fraction": 1.0},
        lambda fw, ph: all(fw.command_lost() for _ in range(20)),
    ),
}


def test_every_catalogued_fault_has_an_action_and_a_test() -> None:
    assert set(ACTIONS) == set(FAULTS) == set(EFFECTS)


def rig() -> tuple[Firmware, Physics]:
    physics = Physics(PhysicsParams(seed=1))
    physics.volumes["outer_chamber"] = 1000.0
    physics.volumes["replacement_bag"] -= 1000.0
    fw = Firmware(physics)
    fw.set_limits(Limits())
    fw.heartbeat()
    fw.arm()
    fw.set_valve("venous_clamp", "open")
    for name, rate in RATES.items():
        fw.set_pump(name, rate)
    return fw, physics


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_acts_and_clears_keeping_the_volume_audit(fault: str) -> None:
    fw, physics = rig()
    total = physics.total_volume_ml()
    faults = Faults(fw)
    params, effect = EFFECTS[fault]
    faults.inject(fault, **params)
    for _ in range(120):  # one minute, heartbeat every half second
        fw.run_until(fw.t_ms + 500)
        if fault != "controller_silence":
            fw.heartbeat()
        if fault in ("air_bubble", "blood_leak") or fw.safe:
            break
    assert effect(fw, physics), fault
    faults.clear(fault)
    assert fault not in faults.active
    assert physics.total_volume_ml() == pytest.approx(total, abs=1e-6)


def test_scenario_events_start_and_stop_at_their_times() -> None:
    fw, _physics = rig()
    fw.set_pump("blood", 0.0)  # no pressure-window trips; only air should act
    seen: list[tuple[int, str, str]] = []
    fw.on_event = lambda e: seen.append((e.t_ms, e.code, e.detail))
    scenario = Scenario.model_validate(
        {
            "name": "two faults",
            "events": [
                {"at_s": 1.0, "fault": "hypotension", "duration_s": 2.0},
                {"at_s": 2.5, "fault": "air_bubble", "duration_s": 0.5},
            ],
        }
    )
    Faults(fw, scenario)
    for _ in range(8):
        fw.run_until(fw.t_ms + 500)
        fw.heartbeat()
    assert (1000, "fault_injected", "hypotension") in seen
    assert (3000, "fault_cleared", "hypotension") in seen
    assert (2500, "fault_injected", "air_bubble") in seen
    # within one tick of the bubble
    assert [t for t, code, _ in seen if code == "entered_safe"] in ([2500], [2510])
    assert (3000, "fault_cleared", "air_bubble") in seen


def test_the_shipped_scenarios_load_and_run() -> None:
    for name in ("air_bubble", "bad_day"):
        scenario = load_scenario(f"config/scenarios/{name}.yaml")
        fw, _ = rig()
        faults = Faults(fw, scenario)
        last = max(e.at_s + (e.duration_s or 0) for e in scenario.events)
        while fw.t_ms < (last + 1) * 1000:
            fw.run_until(fw.t_ms + 400)
            fw.heartbeat()
        assert not faults._queue, name


def test_unknown_faults_and_bad_parameters_are_refused_by_name() -> None:
    fw, _ = rig()
    faults = Faults(fw)
    with pytest.raises(ValidationError, match="unknown fault"):
        faults.inject("gremlins")
    with pytest.raises(ValidationError, match="severity"):
        faults.inject("return_occlusion", severity=3.0)


def test_two_pumps_stall_together_and_clear_one_by_one() -> None:
    """Faults of one kind on different targets run side by side (the second used to
    silently end the first)."""
    fw, physics = rig()
    scenario = Scenario.model_validate(
        {
            "name": "two stalls",
            "events": [
                {"at_s": 1.0, "fault": "pump_stall", "duration_s": 2.0, "params": {"pump": "loop"}},
                {
                    "at_s": 2.0,
                    "fault": "pump_stall",
                    "duration_s": 2.0,
                    "params": {"pump": "return"},
                },
            ],
        }
    )
    faults = Faults(fw, scenario)
    seen: list[tuple[float, float]] = []
    for _ in range(10):
        fw.run_until(fw.t_ms + 500)
        fw.heartbeat()
        seen.append((physics.measured_flow("loop"), physics.measured_flow("return")))
    # t = 0.5 .. 5.0 s: loop stalled from 1 to 3 s, return from 2 to 4 s
    assert seen[3] == (0.0, 0.0) and seen[4] == (0.0, 0.0)  # 2.0 and 2.5 s: both stalled
    assert seen[5] == (RATES["loop"], 0.0)  # 3.0 s: the loop's stall is over, not the other
    assert seen[7] == (RATES["loop"], RATES["return"])
    assert faults.active == set()


def test_direct_injection_keeps_one_fault_per_target() -> None:
    fw, physics = rig()
    faults = Faults(fw)
    faults.inject("pump_stall", pump="loop")
    faults.inject("pump_stall", pump="return")
    assert sorted(faults.running()) == [("pump_stall", "loop"), ("pump_stall", "return")]
    fw.run_until(fw.t_ms + 100)
    assert physics.measured_flow("loop") == physics.measured_flow("return") == 0.0
    faults.clear("pump_stall", "loop")
    assert faults.running() == [("pump_stall", "return")]
    assert physics.measured_flow("loop") == RATES["loop"]
    faults.clear("pump_stall")
    assert faults.running() == []


@pytest.mark.parametrize("reverse", [False, True])
def test_a_fault_that_ends_as_the_next_begins_does_not_end_the_next(reverse: bool) -> None:
    fw, physics = rig()
    fw.set_pump("blood", 0.0)
    events = [
        {"at_s": 1.0, "fault": "hypotension", "duration_s": 1.0, "params": {"drop_mmhg": 10}},
        {"at_s": 2.0, "fault": "hypotension", "duration_s": 2.0, "params": {"drop_mmhg": 20}},
    ]
    scenario = Scenario.model_validate(
        {"name": "back to back", "events": events[::-1] if reverse else events}
    )
    Faults(fw, scenario)
    fw.run_until(2500)
    assert physics.hypotension_mmhg == 20
    fw.run_until(4500)
    assert physics.hypotension_mmhg == 0


async def test_a_fault_timed_from_a_phase_starts_that_long_into_it() -> None:
    """`phase: purification, after_s: 60`: an air bubble a minute into the loop, whenever
    that comes (the in-process simulated rig is told each phase's start)."""
    from controller.app import CLEAR, RunOptions, run_treatment
    from controller.config.loading import load_rig
    from tests.integration.test_treatment import SHORT, rx

    scenario = Scenario.model_validate(
        {
            "name": "air in the loop's first minute",
            "events": [
                {"phase": "purification", "after_s": 60, "fault": "air_bubble", "duration_s": 2}
            ],
        }
    )
    summary, _ = await run_treatment(
        load_rig("config/rigs/sim.yaml"),
        rx("li_als", **SHORT["li_als"]),
        RunOptions(gate=CLEAR, scenario=scenario, auto_resume_s=2.0),
    )
    start = next(t.t_s for t in summary.transitions if t.dest == "purification")
    [air] = [a for a in summary.alarms if a.cause == "air_return"]
    assert 60.0 <= air.t_s - start <= 60.2
    assert summary.completed


def test_a_fault_timed_from_a_phase_that_already_started_counts_from_its_start() -> None:
    """A test schedules "60 s into the exchange" while the exchange runs: from when it
    began, not never (it will not start again) and not from now."""
    fw, _physics = rig()
    fw.set_pump("blood", 0.0)
    seen: list[tuple[int, str]] = []
    fw.on_event = lambda e: seen.append((e.t_ms, e.detail))
    faults = Faults(fw)
    fw.run_until(1000)
    faults.phase_started("exchange")
    assert faults.phase_start_ms("exchange") == 1000 and faults.phase_start_ms("rinse") is None
    fw.run_until(30_000)
    fw.heartbeat()
    faults.schedule(
        FaultEvent(phase="exchange", after_s=60, fault="hypotension", duration_s=1, params={})
    )
    while fw.t_ms < 70_000:
        fw.run_until(fw.t_ms + 400)
        fw.heartbeat()
    assert (61_000, "hypotension") in seen


def test_a_scenario_names_when_and_every_fault_with_its_parameters_in_its_schema() -> None:
    with pytest.raises(ValidationError, match="say when"):
        Scenario.model_validate({"name": "x", "events": [{"fault": "air_bubble"}]})
    with pytest.raises(ValidationError, match="say when"):
        Scenario.model_validate(
            {"name": "x", "events": [{"at_s": 1, "phase": "exchange", "fault": "air_bubble"}]}
        )
    schema = Scenario.model_json_schema()
    event = schema["$defs"]["FaultEvent"]
    assert event["properties"]["fault"]["enum"] == sorted(FAULTS)
    named = {
        branch["properties"]["fault"]["const"]: branch["properties"]["params"]
        for branch in event["oneOf"]
    }
    assert set(named) == set(FAULTS)
    assert set(named["pump_delivery"]["properties"]) == {"pump", "factor", "encoder_sees"}
    assert named["command_loss"]["properties"]["fraction"]["maximum"] == 1.0


async def test_commands_lost_now_and_then_are_retried_and_the_treatment_completes() -> None:
    from controller.app import CLEAR, RunOptions, run_treatment
    from controller.config.loading import load_rig
    from tests.integration.test_treatment import SHORT, rx

    noisy = {"phase": "connecting", "fault": "command_loss", "params": {"fraction": 0.1}}
    scenario = Scenario.model_validate({"name": "a noisy cable", "events": [noisy]})
    summary, controller = await run_treatment(
        load_rig("config/rigs/sim.yaml"),
        rx("pe", **SHORT["pe"]),
        RunOptions(gate=CLEAR, scenario=scenario, auto_resume_s=2.0),
    )
    assert summary.completed, summary.outcome_detail
    assert abs(summary.volumes.exchange_ml - 900) < 1  # no command half-executed, none twice
    physics = controller.hal.physics  # type: ignore[attr-defined]
    assert abs(physics.pumped_ml[1] - 900) < 5  # the plasma really exchanged


def test_the_firmware_process_refuses_faults_timed_from_a_phase(tmp_path: Path) -> None:
    """It does not know the controller's phases: such a scenario would never fire there."""
    path = tmp_path / "phase.yaml"
    path.write_text(
        "name: air in the loop\n"
        "events:\n"
        "  - {phase: purification, after_s: 60, fault: air_bubble}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "controller", "firmware-sim", "--scenario", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "need the simulated rig in the controller" in done.stderr
