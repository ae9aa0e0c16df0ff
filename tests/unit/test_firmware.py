"""The simulated firmware on its own: command checking and the independent protective system.

Timing is asserted in ticks, the unit the firmware promises: a cause -> safe state within one
tick; a silent controller -> safe state one tick after the heartbeat timeout.
"""

from __future__ import annotations

import dataclasses

import pytest

from controller.config.rig import RigConfig
from controller.hal.base import FirmwareLimits
from controller.rig import PUMP_NAMES
from firmware_sim.faults import Faults
from firmware_sim.firmware import Firmware, FirmwareEvent, Limits, Nak, Reason
from firmware_sim.physics import Physics

TICK = 10


#: each test's firmware's events, by the firmware's id (no attribute added to the firmware:
#: compiled, it takes none, tools/build_native.py)
_EVENTS: dict[int, list[FirmwareEvent]] = {}


def events(fw: Firmware) -> list[FirmwareEvent]:
    return _EVENTS[id(fw)]


@pytest.fixture
def fw() -> Firmware:
    firmware = Firmware(Physics(), RigConfig())
    _EVENTS[id(firmware)] = []
    firmware.on_event = _EVENTS[id(firmware)].append
    return firmware


def arm_and_flow(fw: Firmware, blood: float = 120.0) -> None:
    assert fw.set_limits(Limits()) is None
    fw.heartbeat()
    assert fw.arm() is None
    assert fw.set_valve("venous_clamp", "open") is None
    assert fw.set_pump("blood", blood) is None
    for _ in range(5):
        fw.run_until(fw.t_ms + 200)
        fw.heartbeat()
    assert not fw.safe, fw.reason


def safe_events(fw: Firmware) -> list[FirmwareEvent]:
    return [e for e in events(fw) if e.code == "entered_safe"]


def assert_safe_state(fw: Firmware) -> None:
    assert fw.safe
    assert all(fw.commanded[n] == 0.0 for n in PUMP_NAMES)
    assert all(rate == 0.0 for rate in fw.physics.commanded)
    assert fw.valves["venous_clamp"] == "closed"
    assert not fw.physics.valve_open


def test_boots_safe_and_refuses_to_arm_before_limits_are_uploaded(fw: Firmware) -> None:
    assert fw.safe and fw.reason == Reason.BOOT
    fw.heartbeat()
    assert fw.arm() == Nak.CAUSE_PRESENT
    assert fw.cause_present() == "limits not uploaded"


def test_commands_are_checked_never_clamped(fw: Firmware) -> None:
    arm_and_flow(fw)
    assert fw.set_pump("blood", 251.0) == Nak.OUT_OF_RANGE
    assert fw.set_pump("blood", -1.0) == Nak.OUT_OF_RANGE
    assert fw.set_pump("blood", float("nan")) == Nak.OUT_OF_RANGE
    assert fw.set_pump("vacuum", 1.0) == Nak.UNKNOWN_ID
    assert fw.set_valve("plasma_route", "sideways") == Nak.OUT_OF_RANGE
    assert fw.commanded["blood"] == 120.0  # the refused commands changed nothing


def test_pump_limits_below_hard_maximum_are_enforced(fw: Firmware) -> None:
    limits = Limits()
    limits.pump_max["blood"] = 150.0
    assert fw.set_limits(limits) is None
    fw.heartbeat()
    fw.arm()
    assert fw.set_pump("blood", 160.0) == Nak.OUT_OF_RANGE
    assert fw.set_pump("blood", 150.0) is None


@pytest.mark.parametrize(
    "change",
    [
        {"return_low_mmhg": 400.0},  # above the high limit
        {"access_low_mmhg": 10.0},
        {"heartbeat_timeout_ms": 10},
        {"return_high_mmhg": float("inf")},
    ],
)
def test_bad_limits_are_refused_and_the_old_ones_kept(fw: Firmware, change: dict) -> None:
    before = fw.limits
    assert fw.set_limits(Limits(**change)) == Nak.BAD_LIMITS
    assert fw.limits is before


def test_air_puts_it_safe_within_one_tick_and_arm_is_refused_while_air_remains(
    fw: Firmware,
) -> None:
    arm_and_flow(fw)
    faults = Faults(fw)
    t0 = fw.t_ms
    faults.inject("air_bubble")
    fw.run_until(t0 + TICK)
    assert_safe_state(fw)
    assert fw.reason == Reason.AIR
    assert safe_events(fw)[-1].t_ms == t0 + TICK
    fw.heartbeat()
    assert fw.arm() == Nak.CAUSE_PRESENT
    faults.clear("air_bubble")
    fw.run_until(fw.t_ms + TICK)
    assert fw.arm() is None and not fw.safe


def test_heartbeat_loss_puts_it_safe_one_tick_after_the_timeout(fw: Firmware) -> None:
    arm_and_flow(fw)
    last = fw.t_ms
    fw.run_until(last + 500)
    assert not fw.safe  # exactly the timeout: not yet
    fw.run_until(last + 500 + TICK)
    assert_safe_state(fw)
    assert fw.reason == Reason.HEARTBEAT
    assert safe_events(fw)[-1].t_ms == last + 500 + TICK


def test_regular_heartbeats_keep_it_running(fw: Firmware) -> None:
    arm_and_flow(fw)
    for _ in range(100):
        fw.run_until(fw.t_ms + 400)
        fw.heartbeat()
    assert not fw.safe


def test_a_silent_controller_fault_means_heartbeats_are_not_heard(fw: Firmware) -> None:
    arm_and_flow(fw)
    Faults(fw).inject("controller_silence")
    for _ in range(10):
        fw.run_until(fw.t_ms + 100)
        fw.heartbeat()
    assert fw.safe and fw.reason == Reason.HEARTBEAT


@pytest.mark.parametrize(
    ("fault", "params", "reason"),
    [
        ("return_disconnection", {}, Reason.RETURN_LOW),
        ("return_occlusion", {"severity": 1.0}, Reason.RETURN_HIGH),
        ("access_occlusion", {"severity": 1.0}, Reason.ACCESS_LOW),
        ("blood_leak", {}, Reason.BLOOD_LEAK),
        ("sensor_missing", {"sensor": "return"}, Reason.SENSOR),
        ("sensor_out_of_range", {"sensor": "access"}, Reason.SENSOR),
    ],
)
def test_each_firmware_cause_acts_within_one_tick(
    fw: Firmware, fault: str, params: dict, reason: str
) -> None:
    arm_and_flow(fw)
    t0 = fw.t_ms
    Faults(fw).inject(fault, **params)
    fw.run_until(t0 + TICK)
    assert_safe_state(fw)
    assert fw.reason == reason


def test_pressure_windows_are_not_checked_without_blood_flow(fw: Firmware) -> None:
    arm_and_flow(fw, blood=0.0)
    Faults(fw).inject("return_disconnection")
    fw.run_until(fw.t_ms + 5 * TICK)
    assert not fw.safe


def test_closing_the_clamp_under_flow_is_caught_as_return_high(fw: Firmware) -> None:
    arm_and_flow(fw)
    assert fw.set_valve("venous_clamp", "closed") is None
    fw.run_until(fw.t_ms + TICK)
    assert fw.reason == Reason.RETURN_HIGH


def test_in_the_safe_state_pumps_may_stop_but_not_start(fw: Firmware) -> None:
    assert fw.set_pump("blood", 100.0) == Nak.IN_SAFE_STATE
    assert fw.set_valve("venous_clamp", "open") == Nak.IN_SAFE_STATE
    assert fw.set_pump("blood", 0.0) is None
    assert fw.set_valve("plasma_route", "collect") is None


def test_enter_safe_on_command(fw: Firmware) -> None:
    arm_and_flow(fw)
    fw.enter_safe()
    assert_safe_state(fw)
    assert fw.reason == Reason.COMMAND


def test_mcu_reset_forgets_limits_and_boots_safe(fw: Firmware) -> None:
    limits = Limits(return_low_mmhg=20.0)
    assert fw.set_limits(limits) is None
    arm_and_flow(fw)
    Faults(fw).inject("mcu_reset")
    assert_safe_state(fw)
    assert fw.reason == Reason.BOOT
    assert fw.limits.return_low_mmhg == 10.0
    assert fw.arm() == Nak.CAUSE_PRESENT
    assert [e.code for e in events(fw)][-2:] == ["reset", "fault_injected"]


def test_samples_come_at_the_sample_rate_with_increasing_counters(fw: Firmware) -> None:
    seen = []
    fw.on_sample = seen.append
    fw.run_until(1000)
    assert [s.t_ms for s in seen] == list(range(100, 1001, 100))
    assert [s.counter for s in seen] == list(range(1, 11))


def test_a_command_acts_from_the_tick_it_was_given(fw: Firmware) -> None:
    arm_and_flow(fw)
    before = fw.physics.volumes["patient"]
    fw.set_pump("plasma", 30.0)  # 0.5 mL/s out of the patient
    fw.run_until(fw.t_ms + 20)  # not a physics step boundary
    fw.set_pump("plasma", 0.0)
    fw.run_until(fw.t_ms + 1000)
    assert before - fw.physics.volumes["patient"] == pytest.approx(0.01, abs=1e-9)


def test_limits_read_back_must_match_what_was_sent() -> None:
    sent = FirmwareLimits.from_rig(RigConfig())
    assert sent.matches(FirmwareLimits.from_rig(RigConfig()))
    assert not sent.matches(dataclasses.replace(sent, return_high_mmhg=350.0))
    assert not sent.matches(dataclasses.replace(sent, pump_max={"blood": 250.0}))
