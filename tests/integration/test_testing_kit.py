"""The testing kit (controller/testing/, docs/testing.md) through its fixtures, as a test
author uses them: the real controller, the real simulated firmware, a real pty.

What the kit promises is held here: the rig's clock moves only while the test awaits, a
wait is bounded in rig time and says what it saw instead, faults are timed as scenario
files time them (a time in the past refused), requests are answered, and a run left going
is ended safe after the test. tests/integration/test_testing_guide.py runs the guide's
examples from a fresh virtual environment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller import journal as jr
from controller.control.events import HalReported, Operated
from controller.errors import CommandRefused
from controller.hal.base import HalEventKind
from controller.outcome import Outcome
from controller.rig import SafeReason
from controller.testing import (
    HalRig,
    RunEnded,
    SerialRig,
    Treatments,
    UntilTimeout,
    assert_balance_within,
    assert_safe,
    prescription,
    rig,
)
from controller.testing import __all__ as KIT

#: the shipped plasma exchange, 0.2 plasma volumes: 21 min of exchange
SHORT_PE = prescription("pe", exchange_volume_pv=0.2)
#: the shipped Li-ALS, short: 700 mL exchanged, 4 L processed in the loop
SHORT_LI_ALS = prescription(
    "li_als",
    exchange_volume_pv=None,
    exchange_volume_ml=700,
    collection_threshold_ml=400,
    purification={"duration_min": None, "processed_plasma_ml": 4000},
)
#: the exchange of SHORT_PE begins here (self-test, priming, connection)
EXCHANGE_MS = 308_300


def test_every_name_the_kit_exports_is_there() -> None:
    import controller.testing as kit

    assert all(getattr(kit, name) is not None for name in KIT)


def test_configs_are_found_by_shipped_name_and_changed_by_field() -> None:
    assert rig().rig_id == "sim-01"
    assert rig("bench", rig_id="bench-02").rig_id == "bench-02"
    assert SHORT_PE.exchange_volume_pv == 0.2 and SHORT_PE.mode == "pe"
    # a change is validated as a file is: the message names the field and the range
    with pytest.raises(Exception, match="blood_flow_ml_min"):
        prescription("pe", blood_flow_ml_min=400)


# -- at the HAL -----------------------------------------------------------------------------
async def test_the_firmware_goes_safe_on_air_and_refuses_to_arm_until_it_is_gone(
    sim_hal: HalRig,
) -> None:
    running = await sim_hal.arm()
    assert not running.safe and running.pumps["blood"].commanded == 120.0
    sim_hal.faults.inject("air_bubble")
    safe = await sim_hal.until(safe=True, within_s=0.1)
    assert_safe(safe, reason="air")
    assert safe.t_ms - running.t_ms <= 200  # the next sample: the firmware acted in a tick
    with pytest.raises(CommandRefused, match="cause_present"):
        await sim_hal.hal.arm()
    sim_hal.faults.clear("air_bubble")
    await sim_hal.next_sample()
    await sim_hal.hal.arm()
    assert not (await sim_hal.next_sample()).safe


async def test_a_silent_controller_is_stopped_by_the_watchdog(sim_hal: HalRig) -> None:
    await sim_hal.arm()
    stopped = await sim_hal.until(safe=True, within_s=1.0, heartbeat=False)
    assert_safe(stopped, reason=SafeReason.HEARTBEAT)


async def test_a_wait_at_the_hal_says_what_it_saw_instead(sim_hal: HalRig) -> None:
    first = await sim_hal.arm()
    with pytest.raises(UntilTimeout, match=r"not within 2 s of rig time .* running"):
        await sim_hal.until(safe=True, within_s=2)
    assert sim_hal.sample.t_ms - first.t_ms == 2000  # the clock stopped at the deadline


def test_assert_safe_names_everything_that_is_not_safe() -> None:
    from controller.hal.sim import SimHal

    async def running() -> None:
        async with SimHal(rig()) as hal:
            driven = HalRig(hal, rig(), None)  # type: ignore[arg-type]  # no faults needed
            sample = await driven.arm()
            with pytest.raises(AssertionError, match="firmware is running; pumps commanded"):
                assert_safe(sample)

    asyncio.run(running())


async def test_the_serial_pair_is_the_same_firmware_over_a_real_link(
    serial_pair: SerialRig,
) -> None:
    assert serial_pair.port.startswith("/dev/pts/")
    await serial_pair.arm()
    serial_pair.faults.inject("air_bubble")
    safe = await serial_pair.until(safe=True, within_s=0.5)
    assert_safe(safe, reason="air")
    assert serial_pair.server.firmware.safe  # the far side of the pty says the same


# -- a treatment ----------------------------------------------------------------------------
async def test_the_clock_stands_still_between_the_tests_awaits(treatment: Treatments) -> None:
    run = await treatment(SHORT_PE, start="exchange")
    held = run.view
    assert held.phase == "exchange" and held.t_ms == EXCHANGE_MS + 100
    for _ in range(20):  # the loop gets every chance to run: it must not
        await asyncio.sleep(0)
    assert run.view is held
    later = await run.run_for(60)
    assert later.t_ms == held.t_ms + 60_000
    assert later.volumes.exchanged_ml > held.volumes.exchanged_ml


async def test_a_fault_into_the_phase_a_run_starts_from_fires_then_an_operator_resumes(
    treatment: Treatments,
) -> None:
    run = await treatment(SHORT_PE, start="exchange")
    run.faults.schedule(
        {"phase": "exchange", "after_s": 120, "fault": "air_bubble", "duration_s": 2}
    )
    alarm = await run.until(phase="alarm", alarm="air_return", within_s=125)
    [injected] = [
        e.t_ms
        for e in run.events
        if isinstance(e, HalReported) and e.event.kind is HalEventKind.FAULT_INJECTED
    ]
    assert injected == EXCHANGE_MS + 120_000
    assert_safe(alarm, reason="air")
    assert await run.request("resume") == (
        "refused: cannot resume: air in the return line (air_return) is still present"
    )
    await run.until(lambda v: not any(a.present for a in v.alarms), within_s=5)
    assert await run.request("acknowledge") == "done"
    assert await run.request("resume") == "done"
    await run.until(phase="exchange", within_s=30)
    summary = await run.finish()
    assert summary.outcome is Outcome.COMPLETED
    assert [a.cause for a in summary.alarms] == ["air_return"]
    operated = [(e.request, e.result) for e in run.events if isinstance(e, Operated)]
    assert [r for r, _ in operated] == ["resume", "acknowledge", "resume"]
    assert_balance_within(run, 10)


async def test_a_run_from_the_start_passes_the_gate_and_takes_a_shipped_scenario(
    treatment: Treatments,
) -> None:
    run = await treatment(SHORT_PE, scenario="air_bubble", auto_resume_s=2)
    assert run.view.phase == "self_test" and run.view.t_ms == 100
    alarm = await run.until(phase="alarm", within_s=1300)
    assert alarm.t_ms == pytest.approx(1_200_000, abs=200)  # the scenario's at_s: 1200
    summary = await run.finish()
    assert summary.outcome is Outcome.COMPLETED and summary.pre_start is not None
    assert summary.pre_start.allowed


async def test_a_wait_for_a_run_says_what_it_saw_and_a_run_that_ends_says_how(
    treatment: Treatments,
) -> None:
    run = await treatment(SHORT_PE, start="exchange")
    with pytest.raises(UntilTimeout, match=r"phase alarm: not within 5 s .* in exchange"):
        await run.until(phase="alarm", within_s=5)
    assert run.view.t_ms == EXCHANGE_MS + 100 + 5000  # the clock stopped at the deadline
    with pytest.raises(RunEnded, match="phase purification: the run ended first, completed"):
        await run.until(phase="purification", within_s=3600)


async def test_faults_in_the_past_are_refused_not_started_at_once(
    treatment: Treatments,
) -> None:
    run = await treatment(SHORT_PE, start="exchange")
    with pytest.raises(ValueError, match=r"already at 308\.4 s"):
        run.faults.schedule({"at_s": 100, "fault": "air_bubble"})
    with pytest.raises(ValueError, match="started from a checkpoint after connecting began"):
        run.faults.schedule({"phase": "connecting", "after_s": 10, "fault": "air_bubble"})
    await run.run_for(30)
    with pytest.raises(ValueError, match="10 s into exchange"):
        run.faults.schedule({"phase": "exchange", "after_s": 10, "fault": "air_bubble"})
    assert run.faults.running == []


async def test_a_run_left_going_is_ended_safe_after_the_test() -> None:
    runs = Treatments(rig(), SHORT_PE)
    run = await runs(start="exchange")
    await run.run_for(10)
    await runs.aclose()
    assert run.summary is not None and run.summary.outcome is Outcome.INTERRUPTED
    firmware = run.controller.hal.firmware  # type: ignore[attr-defined]  # the SimHal's
    assert firmware.safe and firmware.reason == SafeReason.COMMAND


async def test_a_run_is_journaled_as_alsctl_run_journals_it(
    treatment: Treatments, tmp_path: Path
) -> None:
    db = tmp_path / "journal.db"
    run = await treatment(SHORT_PE, start="exchange", journal=db)
    summary = await run.finish()
    [row] = jr.sessions(db)
    assert row.id == summary.session and row.outcome == "completed"


async def test_the_loop_side_of_the_treatment_over_a_serial_link(treatment: Treatments) -> None:
    run = await treatment(
        prescription("pe", exchange_volume_pv=None, exchange_volume_ml=150), link="serial"
    )
    run.faults.schedule({"phase": "exchange", "after_s": 30, "fault": "air_bubble"})
    alarm = await run.until(phase="alarm", within_s=600)
    assert_safe(alarm, reason="air")
    assert run.controller.hal.backend == "serial"


async def test_the_purification_is_reached_from_a_checkpoint(treatment: Treatments) -> None:
    run = await treatment(SHORT_LI_ALS, start="purification")
    assert run.view.phase == "purification"
    run.faults.inject("adsorber_clotting", mmhg_per_min=100)
    alarm = await run.until(alarm="clotting", within_s=300)
    # a view's sample is what the rig reported as the cycle began; what the cycle commanded
    # shows in the next one
    assert alarm.sample.pumps["loop"].commanded == SHORT_LI_ALS.loop_flow
    response = await run.run_for(0.1)
    assert 0 < response.sample.pumps["loop"].commanded < SHORT_LI_ALS.loop_flow
