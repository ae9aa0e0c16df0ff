"""A prescription against its rig: every rate the controller will command within the rig's
pump maxima, checked by `alsctl validate RIG RX` (any order) and by `alsctl run` first."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.config.compat import check_pair
from controller.config.flows import pump_demands
from controller.config.loading import load_prescription, validate
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.fsm import phases
from controller.fsm.machine import sequence
from controller.fsm.phases import Progress
from controller.rig import PUMP_NAMES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RX = sorted((ROOT / "config/prescriptions").glob("*.yaml"))
LI_ALS: dict[str, Any] = {
    "name": "li-als",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "li_als",
    "blood_flow_ml_min": 120,
    "separation_ratio": 0.25,
    "exchange_volume_ml": 2000,
    "loop_flow_multiple": 5,
    "filtrate_ml_min": 30,
    "net_fluid_removal_ml_h": 120,
}


def pair_lines(pumps: dict[str, float], **rx: Any) -> list[str]:
    rig = validate(
        RigConfig, {"pumps": {n: {"max_rate": v} for n, v in pumps.items()}}, "bench.yaml"
    )
    p = validate(Prescription, {**LI_ALS, **rx}, "rx.yaml")
    return [f"rx.yaml: {issue}" for issue in check_pair(rig, p, "bench.yaml", "rx.yaml")]


def test_the_case_of_the_issue_in_either_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = tmp_path / "bench.yaml"
    rig.write_text("rig_id: bench\npumps: {blood: {max_rate: 100}}\n")
    rx = tmp_path / "rx.yaml"
    rx.write_text(yaml.safe_dump({**LI_ALS, "blood_flow_ml_min": 150, "separation_ratio": 0.2}))
    for order in ((rig, rx), (rx, rig)):
        assert main(["validate", *map(str, order)]) == 2
        captured = capsys.readouterr()
        assert f"{rig}: rig OK" in captured.out and f"{rx}: prescription OK" in captured.out
        assert captured.err.splitlines() == [
            f"{rx}: blood_flow_ml_min: 150 -> above rig {rig} pumps.blood.max_rate 100"
        ]


def test_every_pump_the_prescription_drives_is_checked() -> None:
    lines = pair_lines(
        {"plasma": 25, "replacement": 25, "return": 20, "loop": 120, "filtrate": 25},
        heparin={"concentration_iu_ml": 1000, "rate_iu_h": 5000 / 2, "bolus_iu": 2000},
    )
    assert lines[:3] == [
        "rx.yaml: separation_ratio: 0.25 -> plasma flow = blood 120 x 0.25 = 30 mL/min is"
        " above rig bench.yaml pumps.plasma.max_rate 25 and pumps.replacement.max_rate 25",
        "rx.yaml: loop_flow_multiple: 5 -> loop flow = 5 x plasma 30 = 150 mL/min is above rig"
        " bench.yaml pumps.loop.max_rate 120",
        "rx.yaml: separation_ratio: 0.25 -> return = plasma 30 - net removal 2 = 28 mL/min is"
        " above rig bench.yaml pumps.return.max_rate 20",
    ]
    assert lines[3] == (
        "rx.yaml: filtrate_ml_min: 30 -> above rig bench.yaml pumps.filtrate.max_rate 25"
    )
    assert len(lines) == 4
    lines = pair_lines({"substitution": 20, "heparin": 10})
    assert lines == [
        "rx.yaml: filtrate_ml_min: 30 -> substitution = filtrate 30 - net removal 2 = 28 mL/min"
        " is above rig bench.yaml pumps.substitution.max_rate 20",
        "rx.yaml: heparin.bolus_iu: 2000 -> the bolus, at the syringe pump's top rate, = 20 mL/h"
        " is above rig bench.yaml pumps.heparin.max_rate 10",
    ]
    heparin = {"concentration_iu_ml": 200, "rate_iu_h": 2400, "bolus_iu": 0}
    assert pair_lines({"heparin": 10}, heparin=heparin) == [
        "rx.yaml: heparin.rate_iu_h: 2400 -> heparin 2400 IU/h / 200 IU/mL = 12 mL/h is above"
        " rig bench.yaml pumps.heparin.max_rate 10"
    ]


def test_a_full_replacement_bag_must_be_on_the_scale() -> None:
    small_bags = {"substitution_bag_ml": 2000, "waste_bag_capacity_ml": 2000}
    rig = validate(
        RigConfig, {"sensors": {"scale": {"low": -50, "high": 2400}}, "sim": small_bags}, "r.yaml"
    )
    p = validate(Prescription, LI_ALS, "rx.yaml")
    (issue,) = check_pair(rig, p, "r.yaml", "rx.yaml")
    assert str(issue).startswith("replacement.bag_volume_ml: 5000 -> a full bag is beyond rig")


def test_alsctl_run_refuses_the_pair_before_anything_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text("rig_id: slow\npumps: {blood: {max_rate: 100}}\n")
    journal = tmp_path / "j.db"
    code = main(["run", "--sim", "--rig", str(rig), "--journal", str(journal)])
    captured = capsys.readouterr()
    assert code == 2
    assert "blood_flow_ml_min: 120 -> above rig" in captured.err
    assert "alsctl run:" not in captured.out
    assert not journal.exists()


@pytest.mark.parametrize("path", SHIPPED_RX, ids=lambda p: p.stem)
def test_the_demands_cover_every_rate_the_phases_command(path: Path) -> None:
    """pump_demands is what validation checks; the phases are what runs: they must agree."""
    rx = load_prescription(path)
    top = dict.fromkeys(PUMP_NAMES, 0.0)
    for d in pump_demands(rx):
        top[d.pump] = max(top[d.pump], d.rate)
    progress = [
        Progress(phase_s=s, heparin_ml=h, outer_chamber_ml=500, inner_chamber_ml=500)
        for s in (0, 30, 600)
        for h in (0.0, 100.0)
    ]
    steps = ("connecting", *sequence(rx))
    for pr in progress:
        for sp in (
            *(phases.PHASES[step].setpoints(rx, pr) for step in steps),
            phases.paused(rx, pr, 50.0),
        ):
            for name, rate in sp.pumps.items():
                assert rate <= top[name] + 1e-9, (name, rate, top[name])
