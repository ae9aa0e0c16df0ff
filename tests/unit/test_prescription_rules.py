"""Every cross-field rule of the prescription, each reported against the field to change."""

from typing import Any

import pytest

from controller.config import Prescription
from controller.config.loading import validate
from controller.errors import ConfigError

BASE: dict[str, Any] = {
    "name": "rules",
    "patient": {"weight_kg": 70, "hematocrit": 0.30},
    "mode": "li_als",
    "blood_flow_ml_min": 120,
    "separation_ratio": 0.25,
    "exchange_volume_pv": 1.5,
}


def issues(**changes: Any) -> list[str]:
    data = {**BASE, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        validate(Prescription, data, "rx.yaml")
    return caught.value.lines()


def only(lines: list[str], field: str) -> str:
    hits = [line for line in lines if line.startswith(f"rx.yaml: {field}:")]
    assert hits, f"no error for {field} in {lines}"
    return hits[0]


def test_base_is_valid() -> None:
    p = validate(Prescription, BASE, "rx.yaml")
    assert p.plasma_flow == pytest.approx(30)
    assert p.exchange_ml == pytest.approx(1.5 * p.plasma_volume_ml)


def test_plasma_flow_above_30_percent_of_blood_flow() -> None:
    line = only(issues(separation_ratio=None, plasma_flow_ml_min=40), "plasma_flow_ml_min")
    assert "30 %" in line and "at most 36" in line


def test_separation_ratio_above_30_percent_is_out_of_range() -> None:
    line = only(issues(separation_ratio=0.35), "separation_ratio")
    assert "0.35 -> above the maximum (allowed 0.05..0.3" in line


def test_ratio_and_flow_together() -> None:
    assert "not both" in only(issues(plasma_flow_ml_min=30), "plasma_flow_ml_min")


def test_loop_above_10x_plasma() -> None:
    line = only(issues(loop_flow_multiple=12), "loop_flow_multiple")
    assert "allowed 1..10" in line


def test_loop_flow_above_loop_pump() -> None:
    line = only(
        issues(
            separation_ratio=None,
            plasma_flow_ml_min=45,
            blood_flow_ml_min=200,
            loop_flow_multiple=8,
        ),
        "loop_flow_multiple",
    )
    assert "at most 300 mL/min" in line


def test_collection_threshold_not_below_exchange_volume() -> None:
    line = only(
        issues(exchange_volume_pv=None, exchange_volume_ml=400, collection_threshold_ml=500),
        "collection_threshold_ml",
    )
    assert "less than the exchange volume 400 mL" in line


def test_adsorption_mode_exchanges_nothing() -> None:
    line = only(issues(mode="adsorption"), "exchange_volume_pv")
    assert "exchanges no plasma" in line
    ok = validate(
        Prescription,
        {**BASE, "mode": "adsorption", "exchange_volume_pv": None} | {"exchange_volume_pv": 0},
        "rx.yaml",
    )
    assert ok.exchange_ml == 0 and ok.has_loop


def test_exchange_modes_need_an_exchange_volume() -> None:
    line = only(issues(exchange_volume_pv=None), "exchange_volume_ml")
    assert "(missing)" in line and "needs an exchange volume" in line


def test_pe_has_no_loop() -> None:
    lines = issues(mode="pe", loop_flow_multiple=5, adsorbers=["resin"], filtrate_ml_min=10)
    for field in ("loop_flow_multiple", "adsorbers", "filtrate_ml_min"):
        assert "has no purification loop" in only(lines, field)


def test_pe_has_no_net_fluid_removal() -> None:
    assert "no filtration" in only(
        issues(mode="pe", net_fluid_removal_ml_h=100), "net_fluid_removal_ml_h"
    )


def test_replacement_bag_must_hold_the_exchange_volume() -> None:
    line = only(issues(replacement={"bag_volume_ml": 3000}), "replacement.bag_volume_ml")
    assert "at least 4778 mL" in line


def test_exchange_above_2pv_refused_unless_allowed() -> None:
    line = only(
        issues(exchange_volume_pv=2.5, replacement={"bag_volume_ml": 9000}), "exchange_volume_pv"
    )
    assert "allow_exchange_above_2pv" in line
    ok = validate(
        Prescription,
        {
            **BASE,
            "exchange_volume_pv": 2.5,
            "allow_exchange_above_2pv": True,
            "replacement": {"bag_volume_ml": 9000},
        },
        "rx.yaml",
    )
    assert ok.exchange_ml / ok.plasma_volume_ml == pytest.approx(2.5)


def test_exchange_in_ml_and_pv_together() -> None:
    assert "not both" in only(issues(exchange_volume_ml=3000), "exchange_volume_pv")


def test_net_removal_cannot_exceed_filtrate() -> None:
    line = only(issues(filtrate_ml_min=10, net_fluid_removal_ml_h=900), "net_fluid_removal_ml_h")
    assert "allowed 0..500" in line
    line = only(issues(filtrate_ml_min=5, net_fluid_removal_ml_h=400), "net_fluid_removal_ml_h")
    assert "at most 300 mL/h" in line


def test_filtering_modes_need_a_filtrate_rate() -> None:
    assert "this mode filters" in only(issues(filtrate_ml_min=0), "filtrate_ml_min")


def test_pe_adsorption_does_not_filter() -> None:
    line = only(issues(mode="pe_adsorption", filtrate_ml_min=20), "filtrate_ml_min")
    assert "no filtration" in line


def test_adsorber_listed_twice() -> None:
    assert "twice" in only(issues(adsorbers=["resin", "resin"]), "adsorbers")


def test_unknown_adsorber() -> None:
    assert "not one of the choices" in only(issues(adsorbers=["sponge"]), "adsorbers.0")


def test_adsorption_mode_needs_an_adsorber() -> None:
    line = only(issues(mode="adsorption", exchange_volume_pv=None, adsorbers=[]), "adsorbers")
    assert "at least one" in line


def test_pe_filtration_uses_no_adsorbers() -> None:
    assert "uses no adsorbers" in only(
        issues(mode="pe_filtration", adsorbers=["charcoal"]), "adsorbers"
    )


def test_purification_end_must_say_when() -> None:
    line = only(issues(purification={}), "purification")
    assert "say when" in line and "patient_plasma_ml" in line


def test_heparin_rate_beyond_the_syringe_pump() -> None:
    line = only(
        issues(heparin={"concentration_iu_ml": 100, "rate_iu_h": 3000}), "heparin.rate_iu_h"
    )
    assert "at most 20 mL/h" in line


def test_mode_defaults() -> None:
    p = validate(Prescription, BASE, "rx.yaml")
    assert p.adsorber_train == ("resin", "anion_resin", "charcoal")
    assert p.filtrate_flow == 20 and p.loop_flow == 150
    assert p.purification_end.duration_min == 300
    dpmas = validate(
        Prescription, {**BASE, "mode": "adsorption", "exchange_volume_pv": 0}, "rx.yaml"
    )
    assert dpmas.adsorber_train == ("resin", "anion_resin") and dpmas.filtrate_flow == 0


def test_derived_plasma_flow_beyond_the_plasma_pump() -> None:
    """The case of the issue: blood 250 x 0.25 planned plasma 62.5 mL/min on a 60 pump and
    faulted six minutes into the exchange; now validation refuses it naming the ratio."""
    line = only(issues(blood_flow_ml_min=250), "separation_ratio")
    assert "plasma flow = blood 250 x 0.25 = 62.5 mL/min" in line
    assert "plasma, replacement and return pumps" in line and "(at most 60 mL/min)" in line


def test_every_derived_rate_within_its_pumps_hard_maximum() -> None:
    lines = issues(
        separation_ratio=None, plasma_flow_ml_min=60, blood_flow_ml_min=200, loop_flow_multiple=6
    )
    assert "loop flow = 6 x plasma 60 = 360 mL/min" in only(lines, "loop_flow_multiple")
    assert validate(Prescription, {**BASE, "blood_flow_ml_min": 240}, "rx.yaml").plasma_flow == 60
