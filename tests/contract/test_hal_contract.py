"""What every HAL backend promises the controller, asserted the same way on each."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from controller.errors import CommandRefused, HalError
from controller.hal import backend_class, open_hal
from controller.hal.base import FirmwareLimits, HalEventKind
from controller.protocol import PROTOCOL_VERSION
from controller.rig import DETECTOR_NAMES, PUMP_NAMES, SENSOR_NAMES, FirmwareState, SafeReason
from tests.contract.conftest import Rig


async def test_connect_reports_versions_and_timing(rig: Rig) -> None:
    info = rig.hal.info
    assert info.protocol_version == PROTOCOL_VERSION
    assert info.firmware_version
    assert info.rig_id == "contract-01"
    assert info.tick_ms == 10 and info.sample_period_ms == 100


async def test_samples_are_complete_timestamped_and_in_order(rig: Rig) -> None:
    samples = await rig.run_for(1000)
    assert len(samples) >= 10
    times = [s.t_ms for s in samples]
    assert times == sorted(set(times))
    assert {b - a for a, b in itertools.pairwise(times)} == {100}
    seqs = [s.seq for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    last = samples[-1]
    assert set(last.pumps) == set(PUMP_NAMES)
    assert set(last.sensors) == set(SENSOR_NAMES)
    assert set(last.detectors) == set(DETECTOR_NAMES)
    assert last.state is FirmwareState.SAFE and last.safe_reason is SafeReason.BOOT


async def test_limits_are_uploaded_and_read_back(rig: Rig) -> None:
    limits = dataclasses.replace(
        FirmwareLimits.from_rig(rig.config), return_low_mmhg=25.0, heartbeat_timeout_ms=400
    )
    back = await rig.hal.upload_limits(limits)
    assert back.return_low_mmhg == 25.0 and back.heartbeat_timeout_ms == 400


async def test_bad_limits_are_refused(rig: Rig) -> None:
    bad = dataclasses.replace(FirmwareLimits.from_rig(rig.config), access_low_mmhg=50.0)
    with pytest.raises(CommandRefused, match="bad_limits"):
        await rig.hal.upload_limits(bad)


async def test_arm_is_refused_until_limits_are_uploaded(rig: Rig) -> None:
    await rig.hal.heartbeat()
    with pytest.raises(CommandRefused, match="cause_present"):
        await rig.hal.arm()


async def test_a_pump_command_shows_in_the_next_samples(rig: Rig) -> None:
    await rig.arm_with_blood_flow(120.0)
    samples = await rig.run_for(300)
    blood = samples[-1].pumps["blood"]
    assert blood.commanded == 120.0
    assert blood.measured == pytest.approx(120.0, rel=0.05)
    assert samples[-1].state is FirmwareState.RUNNING
    assert samples[-1].sensors["access"].value < 0
    assert samples[-1].valves["venous_clamp"] == "open"


async def test_out_of_range_rates_are_refused_not_clamped(rig: Rig) -> None:
    await rig.arm_with_blood_flow(100.0)
    with pytest.raises(CommandRefused, match="out_of_range"):
        await rig.hal.set_pump("blood", 300.0)
    samples = await rig.run_for(200)
    assert samples[-1].pumps["blood"].commanded == 100.0


async def test_invalid_names_are_errors_before_the_wire(rig: Rig) -> None:
    with pytest.raises(HalError, match="unknown pump"):
        await rig.hal.set_pump("vacuum", 1.0)
    with pytest.raises(HalError, match="not one of"):
        await rig.hal.set_valve("venous_clamp", "ajar")


@pytest.mark.faults
async def test_air_in_the_return_line_stops_the_rig_within_one_tick(rig: Rig) -> None:
    await rig.arm_with_blood_flow()
    rig.hal.drain_events()
    await rig.inject("air_bubble")
    samples = await rig.run_for(200)
    events = [e for e in rig.hal.drain_events() if e.kind is HalEventKind.ENTERED_SAFE]
    assert events and events[0].detail == "air"
    assert events[0].t_ms - samples[0].t_ms <= 100 + 10  # at most a sample period + a tick
    last = samples[-1]
    assert last.safe and last.safe_reason is SafeReason.AIR
    assert all(p.commanded == 0.0 for p in last.pumps.values())
    assert last.valves["venous_clamp"] == "closed"
    with pytest.raises(CommandRefused, match="cause_present"):
        await rig.hal.arm()
    await rig.clear("air_bubble")
    await rig.run_for(100)
    await rig.hal.arm()
    assert not (await rig.run_for(100))[-1].safe


async def test_a_silent_controller_puts_the_rig_safe(rig: Rig) -> None:
    await rig.arm_with_blood_flow()
    samples = await rig.run_for(700, heartbeat=False)
    assert samples[-1].safe and samples[-1].safe_reason is SafeReason.HEARTBEAT


async def test_enter_safe_on_request(rig: Rig) -> None:
    await rig.arm_with_blood_flow()
    await rig.hal.enter_safe()
    sample = (await rig.run_for(100))[-1]
    assert sample.safe and sample.safe_reason is SafeReason.COMMAND


async def test_commands_before_connect_are_errors(rig: Rig) -> None:
    other = open_hal(rig.config.backend, rig.config)
    with pytest.raises(HalError, match="not connected"):
        await other.set_pump("blood", 10.0)
    await rig.hal.close()
    await rig.hal.close()  # closing twice is harmless


def test_backends_are_chosen_by_name_without_fallback() -> None:
    assert backend_class("sim").backend == "sim"
    assert backend_class("serial").backend == "serial"
    with pytest.raises(HalError, match="unknown HAL backend 'usb'"):
        backend_class("usb")
