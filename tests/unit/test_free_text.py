"""Free text in config files (names, clinician, reasons) is trimmed, required where it names
something, bounded, and never carries a control character that could fake a line of output."""

from pathlib import Path

import pytest

from controller.cli import main
from controller.config import Prescription, Scenario
from controller.config.checklist import GateAnswers
from controller.config.loading import load_prescription, validate
from controller.errors import ConfigError

RX = "patient: {weight_kg: 70, hematocrit: 0.3}\nmode: pe\nexchange_volume_pv: 1.0\n"
CHECKLIST = {
    "severe_active_bleeding": True,
    "uncontrolled_map_below_65": False,
    "severe_allergy_with_shock": False,
}


def lines_of(model: type, data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(model, data, "f.yaml")
    return caught.value.lines()


def test_a_prescription_without_a_name_does_not_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.yaml"
    path.write_text(RX)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}: name: (missing) -> required (1..80 characters)"]
    with pytest.raises(ConfigError, match="name: \\(missing\\) -> required"):
        load_prescription(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("   ", "name: '   ' -> blank (1..80 characters)"),
        ("x" * 81, "-> too long (1..80 characters)"),
        ("ok\x1b[2J\x1b[Hfinal state: done", "contains the control character '\\x1b'"),
        (12, "name: 12 -> not text"),
    ],
    ids=["blank", "too-long", "ansi-escape", "number"],
)
def test_a_bad_prescription_name_is_refused(name: object, expected: str) -> None:
    data = {"name": name, "patient": {"weight_kg": 70, "hematocrit": 0.3}, "mode": "pe"}
    data["exchange_volume_pv"] = 1.0
    (line,) = lines_of(Prescription, data)
    assert expected in line
    assert "\x1b" not in line


def test_names_are_trimmed() -> None:
    data = {"name": "  PE  ", "patient": {"weight_kg": 70, "hematocrit": 0.3}, "mode": "pe"}
    p = validate(Prescription, {**data, "exchange_volume_pv": 1.0}, "rx.yaml")
    assert p.name == "PE"


def test_override_clinician_and_reason_must_be_real_text() -> None:
    override = {"clinician": "  ", "reason": "ok\x07beep", "consent_confirmed": True}
    lines = lines_of(GateAnswers, {"checklist": CHECKLIST, "override": override})
    assert "f.yaml: override.clinician: '  ' -> blank (2..80 characters)" in lines
    assert any(
        line.startswith("f.yaml: override.reason:") and "control character '\\x07'" in line
        for line in lines
    )


def test_a_scenario_description_may_span_lines_but_its_name_may_not() -> None:
    ok = validate(
        Scenario,
        {"name": "s", "description": "one\ntwo\n", "events": [{"at_s": 1, "fault": "blood_leak"}]},
        "s.yaml",
    )
    assert ok.description == "one\ntwo"
    (line,) = lines_of(Scenario, {"name": "a\nb", "events": [{"at_s": 1, "fault": "blood_leak"}]})
    assert "name:" in line and "control character '\\n'" in line


def test_a_remote_command_says_who_and_why_in_plain_text() -> None:
    """`by` and `reason` of an MQTT command are journaled and shown: the same rules."""
    from pydantic import ValidationError

    from controller.mqtt.models import CommandRequest

    ok = CommandRequest.model_validate({"by": "  nurse station 2 ", "reason": " audio "})
    assert (ok.by, ok.reason) == ("nurse station 2", "audio")
    for bad in ({"by": "   "}, {"by": "x\x1b[2J"}, {"reason": "fine\rdone"}):
        with pytest.raises(ValidationError):
            CommandRequest.model_validate(bad)
