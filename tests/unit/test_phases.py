"""Phases as pure functions: prescription + measured progress -> setpoints."""

from __future__ import annotations

import pytest

from controller.config.loading import load_prescription
from controller.config.prescription import Prescription
from controller.fsm import phases
from controller.fsm.machine import sequence
from controller.fsm.phases import Progress


@pytest.fixture
def rx() -> Prescription:
    return load_prescription("config/prescriptions/li_als.yaml")


def test_exchange_sends_plasma_to_waste_and_replaces_it_volume_for_volume(rx: Prescription) -> None:
    sp = phases.exchange(rx, Progress(heparin_ml=10))
    assert sp.valves == {"plasma_route": "waste", "venous_clamp": "open"}
    assert sp.pumps["plasma"] == sp.pumps["replacement"] == 30.0
    assert sp.pumps["blood"] == 120.0
    assert sp.pumps["loop"] == sp.pumps["return"] == 0.0
    assert sp.pumps["heparin"] == pytest.approx(rx.heparin.rate_ml_h)


def test_heparin_bolus_runs_at_top_rate_until_delivered(rx: Prescription) -> None:
    assert phases.exchange(rx, Progress(heparin_ml=0.5)).pumps["heparin"] == 20.0
    assert phases.exchange(rx, Progress(heparin_ml=2.0)).pumps["heparin"] == 0.5


def test_collection_starts_when_the_remaining_volume_reaches_the_threshold(
    rx: Prescription,
) -> None:
    threshold_at = rx.exchange_ml - rx.collection_threshold_ml
    assert not phases.collection_due(rx, Progress(exchanged_ml=threshold_at - 1))
    assert phases.collection_due(rx, Progress(exchanged_ml=threshold_at))


def test_pe_never_collects() -> None:
    pe = load_prescription("config/prescriptions/pe.yaml")
    assert not phases.collection_due(pe, Progress(exchanged_ml=pe.exchange_ml))
    assert sequence(pe) == ("exchange", "rinse_back")


def test_the_loop_starts_only_when_the_bag_holds_its_minimum(rx: Prescription) -> None:
    early = phases.exchange_collect(rx, Progress(outer_chamber_ml=60))
    assert early.valves["plasma_route"] == "collect" and early.pumps["loop"] == 0.0
    ready = phases.exchange_collect(rx, Progress(outer_chamber_ml=60, inner_chamber_ml=40))
    assert ready.pumps["loop"] == rx.loop_flow
    assert ready.pumps["filtrate"] == 20.0 and ready.pumps["substitution"] == 20.0
    assert ready.pumps["return"] == 0.0  # collected plasma is not returned during exchange


def test_purification_returns_what_is_separated(rx: Prescription) -> None:
    sp = phases.purification(rx, Progress(outer_chamber_ml=300, inner_chamber_ml=200))
    assert sp.pumps["return"] == sp.pumps["plasma"] == 30.0
    assert sp.pumps["replacement"] == 0.0


def test_net_fluid_removal_comes_from_the_patient_not_the_bag() -> None:
    rx = load_prescription("config/prescriptions/pe_filtration.yaml")  # 100 mL/h
    sp = phases.purification(rx, Progress(outer_chamber_ml=300, inner_chamber_ml=200))
    removal = 100.0 / 60.0
    assert sp.pumps["plasma"] - sp.pumps["return"] == pytest.approx(removal)
    assert sp.pumps["filtrate"] - sp.pumps["substitution"] == pytest.approx(removal)


def test_purification_ends_on_duration_loop_volume_or_patient_plasma() -> None:
    # DPMAS: 180 min or 4500 mL drawn from the patient, however much the loop pumped
    rx = load_prescription("config/prescriptions/adsorption.yaml")
    assert not phases.purification_done(
        rx, Progress(purification_s=60, processed_ml=20_000, patient_plasma_ml=4499)
    )
    assert phases.purification_done(rx, Progress(patient_plasma_ml=4500))
    assert phases.purification_done(rx, Progress(purification_s=180 * 60))
    # a recirculating loop: 180 min or 30 L through the loop, each pass counted
    loop = load_prescription("config/prescriptions/pe_adsorption.yaml")
    assert not phases.purification_done(loop, Progress(processed_ml=29_999, patient_plasma_ml=9e3))
    assert phases.purification_done(loop, Progress(processed_ml=30_000))


def test_connecting_ramps_blood_and_keeps_plasma_off(rx: Prescription) -> None:
    flows = [phases.connecting(rx, Progress(phase_s=s)).pumps["blood"] for s in (0, 20, 80)]
    assert flows == sorted(flows) and flows[0] < 10 and flows[-1] == 120.0
    assert phases.connecting(rx, Progress(phase_s=20)).pumps["plasma"] == 0.0
    assert not phases.connected(rx, Progress(phase_s=20))
    assert phases.connected(rx, Progress(phase_s=60))


def test_pause_keeps_blood_at_minimum_and_stops_the_plasma_side(rx: Prescription) -> None:
    sp = phases.paused(rx, Progress(heparin_ml=5), minimum_blood_ml_min=50)
    assert sp.pumps["blood"] == 50.0
    assert all(sp.pumps[n] == 0.0 for n in ("plasma", "replacement", "loop", "return"))


def test_rinse_back_returns_300_ml_then_stops(rx: Prescription) -> None:
    assert phases.rinse_back(rx, Progress(blood_rinsed_ml=100)).pumps["blood"] == 100.0
    assert phases.rinse_back(rx, Progress(blood_rinsed_ml=300)).pumps["blood"] == 0.0
    assert phases.rinse_back_done(Progress(blood_rinsed_ml=300))
