"""Every shipped config file validates, and bad files give one line naming the field."""

from pathlib import Path

import pytest

from controller.cli import main
from controller.config import Prescription, RigConfig, Scenario, load
from controller.config.checklist import GateAnswers
from controller.config.loading import validate
from controller.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config").glob("*/*.yaml"))
KIND_OF_FOLDER = {
    "rigs": RigConfig,
    "prescriptions": Prescription,
    "scenarios": Scenario,
    "checklists": GateAnswers,
}


def test_every_mode_has_a_prescription() -> None:
    modes = {load(p).mode for p in (ROOT / "config" / "prescriptions").glob("*.yaml")}
    assert modes == {"pe", "pe_adsorption", "pe_filtration", "li_als", "adsorption"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_file_validates_as_its_folder_kind(path: Path) -> None:
    assert isinstance(load(path), KIND_OF_FOLDER[path.parent.name])


def test_reference_li_als_prescription() -> None:
    p = load(ROOT / "config/prescriptions/li_als.yaml")
    assert isinstance(p, Prescription)
    assert (p.patient.weight_kg, p.patient.hematocrit, p.blood_flow_ml_min) == (70, 0.30, 120)
    assert p.plasma_flow == pytest.approx(30)
    assert p.exchange_volume_pv == 1.5


def test_validate_cli_passes_all_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "expected removal of a plasma-confined solute 78%" in out
    assert "total" in out


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


RX = "name: rx\npatient: {weight_kg: 70, hematocrit: 0.3}\nexchange_volume_pv: 1.0\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            RX + "blood_flow_ml_min: fast\n",
            "blood_flow_ml_min: 'fast' -> not a number (allowed 30..250 mL/min)",
        ),
        (
            RX + "blood_flow_ml_min: 400\n",
            "blood_flow_ml_min: 400 -> above the maximum (allowed 30..250 mL/min)",
        ),
        (
            RX + "blod_flow: 100\n",
            "blod_flow: 100 -> unknown field (expected one of: name, patient,",
        ),
        (RX + "mode: [\n", "line 5, column 1: (yaml) -> broken YAML"),
        (
            "name: rx\nexchange_volume_pv: 1\nmode: pe\npatient: {weight_kg: 70}\n",
            "patient.hematocrit: (missing) -> required (allowed 0.15..0.65 fraction)",
        ),
        ("name: rx\nexchange_volume_pv: 1\npatient: 70\n", "patient: 70 -> expected a mapping"),
        (
            RX + "allow_exchange_above_2pv: maybe\n",
            "allow_exchange_above_2pv: 'maybe' -> not true or false",
        ),
    ],
    ids=[
        "wrong-type",
        "out-of-range",
        "unknown-key",
        "broken-yaml",
        "missing-field",
        "not-a-mapping",
        "bad-bool",
    ],
)
def test_bad_prescription_gives_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    code, err = run_validate(capsys, str(path))
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}: {expected}"), err[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_validate(capsys, str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err == [f"{tmp_path / 'nope.yaml'}: (file): {tmp_path / 'nope.yaml'} -> file not found"]


def test_every_error_is_reported_and_good_files_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, RX + "blood_flow_ml_min: 10\nmode: nope\n", "bad.yaml")
    good = ROOT / "config/prescriptions/pe.yaml"
    code = main(["validate", str(bad), str(good)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{good}: prescription OK" in captured.out
    lines = captured.err.strip().splitlines()
    assert any("blood_flow_ml_min: 10 -> below the minimum" in line for line in lines)
    assert any("mode: 'nope' -> not one of the choices" in line for line in lines)


def test_unknown_kind_asks_for_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "hello: 1\n")
    code, err = run_validate(capsys, str(path))
    assert code == 2 and "pass --kind" in err[0]
    code, err = run_validate(capsys, "--kind", "rig", str(path))
    assert code == 2 and "hello: 1 -> unknown field" in err[0]


def test_empty_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_validate(capsys, "--kind", "prescription", str(write(tmp_path, "")))
    assert code == 2 and "expected a mapping of fields" in err[0]


def test_rig_limits_cannot_leave_safe_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "alarms: {return_low_mmhg: 2}\npumps: {blood: {max_rate: 400}}\n",
    )
    code, err = run_validate(capsys, str(path))
    assert code == 2
    assert f"{path}: alarms.return_low_mmhg: 2 -> below the minimum (allowed 5..25 mmHg)" in err
    assert any(line.startswith(f"{path}: pumps.blood.max_rate: 400 -> above") for line in err)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"heartbeat_timeout_ms": 150}, "heartbeat_timeout_ms"),
        ({"sample_period_ms": 20, "firmware_tick_ms": 40}, "sample_period_ms"),
        ({"link_lost_ms": 150, "sample_period_ms": 100}, "link_lost_ms"),
        (
            {"alarms": {"plasma_temp_high_c": 37, "plasma_temp_low_c": 37}},
            "alarms.plasma_temp_high_c",
        ),
    ],
)
def test_rig_cross_field_rules(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(RigConfig, changes, "rig.yaml")
    assert any(line.startswith(f"rig.yaml: {field}:") for line in caught.value.lines())


def test_scenario_fault_names_and_params_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "name: s\nevents:\n - {at_s: 1, fault: meteor}\n"
        " - {at_s: 2, fault: pump_stall, params: {pump: bloood}}\n",
    )
    code, err = run_validate(capsys, str(path))
    assert code == 2
    assert any(
        "events.0.fault: 'meteor' -> unknown fault (one of: access_occlusion" in e for e in err
    )
    assert any("events.1.params.pump: 'bloood' ->" in e for e in err)


def test_empty_scenario(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an event"):
        validate(Scenario, {"name": "s", "events": []}, "s.yaml")


def test_schema_command_writes_every_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "checklist.schema.json",
        "prescription.schema.json",
        "rig.schema.json",
        "scenario.schema.json",
        "summary.schema.json",
    ]
    assert '"return_low_mmhg"' in (tmp_path / "rig.schema.json").read_text()


def test_committed_schemas_are_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["schema", "--out", str(tmp_path)])
    for fresh in tmp_path.iterdir():
        committed = ROOT / "docs/schemas" / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"run `alsctl schema`: {fresh.name} is stale"
        )
