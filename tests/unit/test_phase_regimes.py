"""The control loop builds a phase's setpoints once per `phases.regime` (all a phase's
setpoints take from progress): equal regimes must give equal setpoints, for every phase but
the connection's ramp and for the pause, whatever else progress holds."""

from __future__ import annotations

import itertools

import pytest

from controller.config.loading import load_prescription
from controller.fsm import phases
from controller.fsm.phases import PHASES, Progress

PRESCRIPTIONS = ("li_als", "pe", "adsorption", "pe_filtration", "pe_adsorption")
#: values around each regime's edges (li_als bolus 2 mL, bag 100 mL, rinse-back 300 mL) and far off
HEPARIN = (0.0, 1.0, 1.99, 2.0, 2.01, 50.0)
CHAMBER = (0.0, 49.0, 50.0, 51.0, 400.0)
RINSED = (0.0, 100.0, 299.9, 300.0, 300.1, 1000.0)
OTHER = (0.0, 123.4, 5000.0)


def progresses() -> list[Progress]:
    out = []
    for hep, outer, inner, rinsed, other in itertools.product(
        HEPARIN, CHAMBER, CHAMBER, RINSED, OTHER
    ):
        out.append(
            Progress(
                phase_s=other,
                exchanged_ml=other * 7,
                processed_ml=other * 3,
                patient_plasma_ml=other,
                heparin_ml=hep,
                blood_rinsed_ml=rinsed,
                outer_chamber_ml=outer,
                inner_chamber_ml=inner,
                purification_s=other * 11,
            )
        )
    return out


@pytest.mark.parametrize("name", PRESCRIPTIONS)
def test_equal_regimes_give_equal_setpoints(name: str) -> None:
    rx = load_prescription(f"config/prescriptions/{name}.yaml")
    steps = {n: step.setpoints for n, step in PHASES.items() if step.by_regime}
    steps["paused"] = lambda p, pr: phases.paused(p, pr, 50.0)
    assert "connecting" not in steps and len(steps) == len(PHASES)
    for phase, setpoints in steps.items():
        seen: dict[tuple[bool, bool, bool], phases.Setpoints] = {}
        for pr in progresses():
            sp = setpoints(rx, pr)
            first = seen.setdefault(phases.regime(rx, pr), sp)
            assert sp == first, (phase, pr)
        assert len(seen) > 1, phase  # the sweep crossed regimes
