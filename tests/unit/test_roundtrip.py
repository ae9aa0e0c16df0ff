"""Any valid prescription survives YAML unchanged (what an operator saves, they get back)."""

from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.config import Prescription, to_yaml
from controller.config.loading import validate
from controller.errors import ConfigError


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


prescriptions = st.fixed_dictionaries(
    {
        "name": st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=80).filter(
            lambda t: t.strip() and t.isprintable()
        ),
        "patient": st.fixed_dictionaries(
            {"weight_kg": floats(20, 250), "hematocrit": floats(0.15, 0.65)},
            optional={"height_cm": floats(100, 230), "sex": st.sampled_from(["female", "male"])},
        ),
        "mode": st.sampled_from(["pe", "pe_adsorption", "pe_filtration", "li_als", "adsorption"]),
        "blood_flow_ml_min": floats(30, 250),
    },
    optional={
        "separation_ratio": floats(0.05, 0.30),
        "exchange_volume_pv": floats(0, 3),
        "collection_threshold_ml": floats(100, 2000),
        "loop_flow_multiple": floats(1, 10),
        "filtrate_ml_min": floats(0, 100),
        "net_fluid_removal_ml_h": floats(0, 500),
        "adsorbers": st.lists(
            st.sampled_from(["resin", "anion_resin", "charcoal"]), unique=True, max_size=3
        ),
        "purification": st.fixed_dictionaries(
            {}, optional={"duration_min": floats(10, 720), "processed_plasma_ml": floats(500, 1e5)}
        ),
        "heparin": st.fixed_dictionaries(
            {}, optional={"bolus_iu": floats(0, 5000), "rate_iu_h": floats(0, 3000)}
        ),
        "replacement": st.fixed_dictionaries({}, optional={"bag_volume_ml": floats(0, 10000)}),
        "allow_exchange_above_2pv": st.booleans(),
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(prescriptions)
def test_valid_prescription_round_trips_through_yaml(data: dict[str, Any]) -> None:
    try:
        original = validate(Prescription, data, "gen.yaml")
    except ConfigError:
        assume(False)
        return
    text = to_yaml(original)
    again = validate(Prescription, yaml.safe_load(text), "gen.yaml")
    assert again == original
    assert to_yaml(again) == text
