"""Every alarm reads as words: what was detected, what the rig did, what to do next
(controller/words.py), and a refused resume names the alarm that holds it."""

from __future__ import annotations

from typing import Any

import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.config.rig import AlarmLimits
from controller.config.scenario import Scenario
from controller.control import View
from controller.rig import PUMP_NAMES, SafeReason
from controller.safety.hazards import hazard_table
from controller.safety.interlocks import BAG_ID, FIRMWARE_SAFE_ID, SENSOR_FAULT_ID, VALVE_ID
from controller.words import WORDS, alarm_title, alarm_words, condition_words

RIG = load_rig("config/rigs/sim.yaml")


def every_alarm_id() -> list[str]:
    ids = [h.id for h in hazard_table(AlarmLimits())]
    ids += [f"pump_fault:{p}" for p in PUMP_NAMES]
    ids += [*BAG_ID.values(), *SENSOR_FAULT_ID.values(), *VALVE_ID.values()]
    ids += [FIRMWARE_SAFE_ID[r] for r in SafeReason if r is not SafeReason.NONE]
    return ids


def test_every_hazard_of_the_table_has_its_words() -> None:
    missing = [h.id for h in hazard_table(AlarmLimits()) if h.id not in WORDS]
    assert not missing
    assert "firmware_safe" in WORDS


@pytest.mark.parametrize("alarm_id", every_alarm_id())
def test_every_alarm_id_reads_as_words(alarm_id: str) -> None:
    w = alarm_words(alarm_id)
    for text in (w.what, w.response, w.next_step):
        assert text and "{" not in text and "_" not in text.replace(alarm_id, ""), text


def test_the_words_of_air_in_the_return_line() -> None:
    w = alarm_words("air_return")
    assert w.what == "air in the return line"
    assert w.response == "all pumps stopped, venous clamp closed"
    assert "acknowledge (A)" in w.next_step and "resume (R)" in w.next_step
    assert alarm_words("pump_fault:blood").what.startswith("blood pump fault")
    assert "heartbeat" in alarm_words("firmware_safe:heartbeat").what
    assert alarm_title("unknown_thing") == "unknown thing (unknown_thing)"
    assert condition_words(True, True, False) == "still present"
    assert "latched until acknowledged" in condition_words(False, True, False)


async def test_a_refused_resume_names_the_alarm_that_holds_it() -> None:
    """Resume before acknowledging an air alarm: refused, naming the alarm in words."""
    scenario = Scenario.model_validate(
        {
            "name": "air",
            "events": [
                {"phase": "exchange", "after_s": 60, "fault": "air_bubble", "duration_s": 2}
            ],
        }
    )
    asked: list[str] = []
    refs: list[Any] = []

    def operator(view: View) -> None:
        if view.phase == "alarm" and not asked and not view.alarms[0].present:
            refs[0].request("resume", "operator")
            asked.append("resume")
        elif asked == ["resume"] and refs[0].rejected:
            refs[0].request("stop", "operator")
            asked.append("stop")

    rx = load_prescription("config/prescriptions/pe.yaml")
    opts = RunOptions(gate=CLEAR, scenario=scenario, on_view=operator, on_controller=refs.append)
    await run_treatment(RIG, rx, opts)
    assert refs[0].rejected == [
        "resume: cannot resume: air in the return line (air_return) is not acknowledged (A)"
    ]


def test_the_report_says_alarms_and_rig_events_in_words() -> None:
    from controller.words import event_words

    raised = event_words(
        "alarm",
        {"kind": "raised", "alarm": "air_return", "priority": "high", "detail": "air detected"},
    )
    assert raised == (
        "raised: air in the return line (high, air_return); air detected;"
        " rig: all pumps stopped, venous clamp closed;"
        " next: clear the air from the return line, then acknowledge (A) and resume (R)"
    )
    assert event_words("hal", {"kind": "limits_changed", "detail": ""}) == "the rig: limits changed"
    assert event_words(
        "operator", {"request": "pause_audio", "cause": "console", "result": "done"}
    ) == ("pause audio (console): done")
    assert event_words("resume_check", {"result": "passed"}) == "resume check: result passed"
