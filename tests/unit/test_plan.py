"""Clinical sizing against the published figures (docs/spec.md 3, docs/reference.md Sizing)."""

import pytest

from controller import clinical
from controller.config import Prescription
from controller.fsm import plan as sizing


def test_kaplan_plasma_volume_of_reference_patient() -> None:
    assert clinical.plasma_volume_ml(70, 0.30) == pytest.approx(3185, rel=0.01)


@pytest.mark.parametrize(
    ("weight", "hct", "litres"),
    [(70, 0.30, 3.185), (50, 0.40, 1.95), (100, 0.25, 4.875), (80, 0.45, 2.86)],
)
def test_kaplan_table(weight: float, hct: float, litres: float) -> None:
    assert clinical.plasma_volume_ml(weight, hct) / 1000 == pytest.approx(litres, rel=0.01)


@pytest.mark.parametrize(("pv_multiple", "removed"), [(1.0, 0.63), (1.5, 0.78), (2.0, 0.86)])
def test_expected_removal_matches_published_table(pv_multiple: float, removed: float) -> None:
    pv = clinical.plasma_volume_ml(70, 0.30)
    assert clinical.expected_removal(pv_multiple * pv, pv) == pytest.approx(removed, abs=0.01)


def test_expected_removal_refuses_zero_plasma_volume() -> None:
    with pytest.raises(ValueError, match="positive"):
        clinical.expected_removal(1000, 0)


def test_plan_phases_follow_the_flows() -> None:
    p = Prescription(
        name="plan",
        patient={"weight_kg": 70, "hematocrit": 0.30},
        blood_flow_ml_min=120,
        separation_ratio=0.25,
        exchange_volume_ml=3000,
        collection_threshold_ml=500,
        loop_flow_multiple=8,
        purification={"duration_min": 240},
    )
    plan = sizing.plan(p)
    phases = {ph.name: ph.duration_s for ph in plan.phases}
    assert list(phases) == [
        "self_test",
        "priming",
        "connecting",
        "exchange",
        "exchange_collect",
        "purification",
        "rinse_back",
    ]
    assert phases["exchange"] == pytest.approx(2500 / 30 * 60)
    assert phases["exchange_collect"] == pytest.approx(500 / 30 * 60)
    assert phases["purification"] == pytest.approx(240 * 60)
    assert plan.total_s == pytest.approx(sum(phases.values()))


def test_purification_ends_on_whichever_comes_first() -> None:
    p = Prescription(
        name="adsorption",
        patient={"weight_kg": 70, "hematocrit": 0.30},
        mode="adsorption",
        plasma_flow_ml_min=30,
        loop_flow_multiple=4,
        purification={"duration_min": 600, "processed_plasma_ml": 12000},
    )
    phases = {ph.name: ph.duration_s for ph in sizing.plan(p).phases}
    assert "exchange" not in phases
    # the loop starts once the bag holds 100 mL of plasma (200 s at 30 mL/min)
    assert phases["purification"] == pytest.approx(100 / 30 * 60 + 12000 / 120 * 60)


def test_a_patient_plasma_volume_ends_purification_at_the_plasma_flow() -> None:
    p = Prescription(
        name="DPMAS by patient plasma",
        patient={"weight_kg": 70, "hematocrit": 0.30},
        mode="adsorption",
        plasma_flow_ml_min=25,
        loop_flow_multiple=4,
        purification={"duration_min": 600, "patient_plasma_ml": 4500},
    )
    phases = {ph.name: ph.duration_s for ph in sizing.plan(p).phases}
    assert phases["purification"] == pytest.approx(4500 / 25 * 60)  # not the loop's 100 mL/min


def test_pe_has_no_collection_or_loop_phase() -> None:
    p = Prescription(
        name="pe", patient={"weight_kg": 70, "hematocrit": 0.30}, mode="pe", exchange_volume_pv=1
    )
    names = [ph.name for ph in sizing.plan(p).phases]
    assert "exchange_collect" not in names and "purification" not in names
    phases = {ph.name: ph.duration_s for ph in sizing.plan(p).phases}
    assert phases["exchange"] == pytest.approx(p.plasma_volume_ml / 30 * 60)


async def test_a_slow_rig_primes_as_long_as_its_plan_says() -> None:
    """A rig whose blood pump tops out at 100 mL/min primes at 100: the plan says so too."""
    from controller.app import CLEAR, RunOptions, run_treatment
    from controller.config.loading import load_rig

    rig = load_rig("config/rigs/sim.yaml")
    slow = rig.model_copy(
        update={
            "pumps": rig.pumps.model_copy(
                update={"blood": rig.pumps.blood.model_copy(update={"max_rate": 100})}
            )
        }
    )
    p = Prescription(
        name="PE at 100",
        patient={"weight_kg": 70, "hematocrit": 0.30},
        mode="pe",
        blood_flow_ml_min=100,
        exchange_volume_ml=300,
    )
    planned = {ph.name: ph.duration_s for ph in sizing.plan(p, blood_max_ml_min=100).phases}
    assert planned["priming"] == pytest.approx(600 / 100 * 60)
    summary, _ = await run_treatment(slow, p, RunOptions(gate=CLEAR))
    assert summary.phases_s["priming"] == pytest.approx(planned["priming"], abs=1)
