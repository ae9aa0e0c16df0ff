"""The treatment plan: each phase's expected length, from the prescription and the rig.

The plan is computed from the same constants the control loop runs on (the self-test's pump
checks, the priming flow, the connection ramp, the rinse-back flow), so the plan an operator
reads before starting and the run agree (tests/integration/test_treatment.py checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller import clinical
from controller.rig import BAG_MIN_ML

if TYPE_CHECKING:
    from controller.config.prescription import Prescription

#: Self-test: each of the eight pumps runs this long for its encoder check, one after the
#: other; the clamp and sensor checks add a few samples.
SELF_TEST_PUMP_S = 1.0
SELF_TEST_PUMPS = 8
SELF_TEST_EXTRA_S = 1.0
#: Saline needed to prime the blood side and, when there is one, the plasma loop; the loop
#: primes at the same time, at the rate that fills it when the blood side is full.
PRIME_BLOOD_SIDE_ML = 600.0
PRIME_LOOP_ML = 500.0
PRIME_FLOW_ML_MIN = 150.0
#: Blood pump ramp at connection (mL/min per second): 120 mL/min in about a minute.
BLOOD_RAMP_ML_MIN_PER_S = 2.0
#: Blood held by the extracorporeal blood side, returned with saline at the end.
RINSE_BACK_ML = 300.0
#: Blood flow of the rinse-back (saline pushes the circuit's blood home).
RINSE_BACK_FLOW_ML_MIN = 100.0


@dataclass(frozen=True, slots=True)
class PhasePlan:
    name: str
    duration_s: float
    note: str


@dataclass(frozen=True, slots=True)
class TreatmentPlan:
    plasma_volume_ml: float
    exchange_volume_ml: float
    exchange_pv: float
    expected_removal: float
    phases: tuple[PhasePlan, ...]

    @property
    def total_s(self) -> float:
        return sum(p.duration_s for p in self.phases)


def _minutes(ml: float, ml_min: float) -> float:
    return 60.0 * ml / ml_min if ml_min > 0 else 0.0


def plan(
    p: Prescription,
    *,
    blood_max_ml_min: float = PRIME_FLOW_ML_MIN,
    loop_max_ml_min: float = math.inf,
) -> TreatmentPlan:
    """Expected course of a treatment, from the prescribed flows and volumes (and the rig's
    blood and loop pump maxima, which priming runs at when they are lower)."""
    pv = p.plasma_volume_ml
    v = p.exchange_ml
    qp = p.plasma_flow
    loop = f" (loop {PRIME_LOOP_ML:.0f} mL at the same time)" if p.has_loop else ""
    prime_flow = min(PRIME_FLOW_ML_MIN, blood_max_ml_min)
    loop_flow = min(prime_flow * PRIME_LOOP_ML / PRIME_BLOOD_SIDE_ML, loop_max_ml_min)
    prime_s = _minutes(PRIME_BLOOD_SIDE_ML, prime_flow)
    if p.has_loop:
        prime_s = max(prime_s, _minutes(PRIME_LOOP_ML, loop_flow))
    ramp_s = max(0.0, p.blood_flow_ml_min / BLOOD_RAMP_ML_MIN_PER_S - 1.0)
    phases = [
        PhasePlan(
            "self_test",
            SELF_TEST_PUMPS * SELF_TEST_PUMP_S + SELF_TEST_EXTRA_S,
            "pumps, clamp, detectors, pressure zero",
        ),
        PhasePlan(
            "priming",
            prime_s,
            f"{PRIME_BLOOD_SIDE_ML:.0f} mL saline at {prime_flow:.0f} mL/min{loop}",
        ),
        PhasePlan("connecting", ramp_s, f"blood ramp to {p.blood_flow_ml_min:g} mL/min"),
    ]
    if v > 0:
        collect = p.collection_threshold_ml if p.has_loop else 0.0
        phases.append(
            PhasePlan(
                "exchange", _minutes(v - collect, qp), f"{v - collect:.0f} mL plasma to waste"
            )
        )
        if p.has_loop:
            phases.append(
                PhasePlan(
                    "exchange_collect", _minutes(collect, qp), f"{collect:.0f} mL plasma collected"
                )
            )
    if p.has_loop:
        end = p.purification_end
        candidates = []
        if end.duration_min is not None:
            candidates.append(end.duration_min * 60.0)
        if end.processed_plasma_ml is not None:
            # the loop starts once the bag holds BAG_MIN_ML: in collection when there is
            # one (what it processes there counts), else at the start of purification
            fill_s = _minutes(BAG_MIN_ML, qp)
            if v > 0:
                collect_s = _minutes(p.collection_threshold_ml, qp)
                before = p.loop_flow * max(0.0, collect_s - fill_s) / 60.0
                left = max(0.0, end.processed_plasma_ml - before)
                candidates.append(_minutes(left, p.loop_flow))
            else:
                candidates.append(fill_s + _minutes(end.processed_plasma_ml, p.loop_flow))
        if end.patient_plasma_ml is not None:
            candidates.append(_minutes(end.patient_plasma_ml, p.plasma_flow))
        phases.append(
            PhasePlan(
                "purification",
                min(candidates),
                f"loop {p.loop_flow:.0f} mL/min, filtrate {p.filtrate_flow:g} mL/min",
            )
        )
    rinse_flow = min(RINSE_BACK_FLOW_ML_MIN, p.blood_flow_ml_min)
    phases.append(
        PhasePlan(
            "rinse_back",
            _minutes(RINSE_BACK_ML, rinse_flow),
            f"{RINSE_BACK_ML:.0f} mL returned with saline at {rinse_flow:g} mL/min",
        )
    )
    return TreatmentPlan(
        plasma_volume_ml=pv,
        exchange_volume_ml=v,
        exchange_pv=v / pv,
        expected_removal=clinical.expected_removal(v, pv),
        phases=tuple(phases),
    )
