"""A field error does not hide the cross-field rules that do not depend on it: the operator
fixes a file in one round, not two. Rules that do depend on the bad field are not guessed."""

from typing import Any

import pytest

from controller.config import Prescription, RigConfig, Scenario
from controller.config.checklist import GateAnswers
from controller.config.loading import validate
from controller.errors import ConfigError

RX: dict[str, Any] = {
    "name": "rx",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "li_als",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 3000,
}


def lines(model: type, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(model, data, "f.yaml")
    return [line.removeprefix("f.yaml: ") for line in caught.value.lines()]


def fields(found: list[str]) -> list[str]:
    return [line.split(":")[0] for line in found]


def test_a_bad_weight_no_longer_hides_the_plasma_flow_rule() -> None:
    found = lines(
        Prescription,
        {**RX, "patient": {"weight_kg": 10, "hematocrit": 0.3}, "plasma_flow_ml_min": 40},
    )
    assert found == [
        "patient.weight_kg: 10 -> below the minimum (allowed 20..250 kg)",
        "plasma_flow_ml_min: 40 -> more than 30 % of the blood flow risks hemolysis in the"
        " separator (at most 36 mL/min at blood flow 120)",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "plasmapheresis"},
        {"patient": 70},
        {"patient": {"weight_kg": 70}},
        {"allow_exchange_above_2pv": "maybe", "wieght": 3},
        {"adsorbers": ["resin", "sponge"]},
    ],
    ids=["bad-choice", "not-a-mapping", "missing-nested", "bad-bool-and-unknown", "list-item"],
)
def test_rules_independent_of_the_bad_field_are_reported(bad: dict[str, Any]) -> None:
    found = fields(lines(Prescription, {**RX, "plasma_flow_ml_min": 40, **bad}))
    assert "plasma_flow_ml_min" in found


def test_a_rule_that_depends_on_the_bad_field_is_not_guessed() -> None:
    # more than 2 PV depends on the weight; a bag smaller than the exchange does not
    found = lines(
        Prescription,
        {**RX, "patient": {"weight_kg": 10, "hematocrit": 0.3}, "exchange_volume_ml": 9000},
    )
    assert fields(found) == ["patient.weight_kg", "replacement.bag_volume_ml"]
    # the plasma-flow limit depends on the blood flow
    found = lines(Prescription, {**RX, "blood_flow_ml_min": "fast", "plasma_flow_ml_min": 40})
    assert fields(found) == ["blood_flow_ml_min"]


def test_rig_rules_beside_field_errors_and_beside_nested_rules() -> None:
    found = lines(RigConfig, {"firmware_tick_ms": 0, "heartbeat_timeout_ms": 150})
    assert fields(found) == ["firmware_tick_ms", "heartbeat_timeout_ms"]
    # a nested model's broken rule (pumps) used to hide the rig's own (timing)
    found = lines(RigConfig, {"pumps": {"blood": {"max_rate": 400}}, "heartbeat_timeout_ms": 150})
    assert fields(found) == ["pumps.blood.max_rate", "heartbeat_timeout_ms"]


def test_scenario_rules_beside_a_bad_event() -> None:
    stall = {"fault": "pump_stall", "params": {"pump": "blood"}}
    found = lines(
        Scenario,
        {
            "name": "s",
            "events": [
                {"at_s": 1, "fault": "meteor"},
                {"at_s": -5, "fault": "air_bubble"},
                {"at_s": 10, **stall},
                {"at_s": 20, **stall},
            ],
        },
    )
    assert fields(found) == ["events.0.fault", "events.1.at_s", "events.3"]
    assert "overlaps events.2 (pump_stall on blood from 10 s to the end)" in found[2]


def test_checklist_field_errors_are_all_reported() -> None:
    found = lines(
        GateAnswers,
        {
            "checklist": {"severe_active_bleeding": "perhaps"},
            "override": {"clinician": " ", "reason": "short", "consent_confirmed": False},
        },
    )
    assert fields(found) == [
        "checklist.severe_active_bleeding",
        "checklist.uncontrolled_map_below_65",
        "checklist.severe_allergy_with_shock",
        "override.clinician",
        "override.consent_confirmed",
    ]
