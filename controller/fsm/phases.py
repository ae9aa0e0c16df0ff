"""Phases as pure functions: prescription + measured progress -> setpoints.

Nothing here touches the rig or the clock, so every phase is unit-tested without the state
machine. Phases switch on measured volumes (encoder-integrated flows), never on elapsed time,
except the connection ramp, which is a rate limit by nature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controller.config.prescription import Prescription
from controller.fsm.plan import (
    BLOOD_RAMP_ML_MIN_PER_S,
    RINSE_BACK_FLOW_ML_MIN,
    RINSE_BACK_ML,
)
from controller.rig import BAG_MIN_ML, PUMP_HARD_MAX, PUMP_NAMES


@dataclass(frozen=True, slots=True)
class Setpoints:
    """Every pump rate (mL/min; heparin mL/h) and valve position for one cycle."""

    pumps: dict[str, float]
    valves: dict[str, str] = field(
        default_factory=lambda: {"plasma_route": "waste", "venous_clamp": "closed"}
    )

    @classmethod
    def stopped(cls, clamp: str = "closed", route: str = "waste") -> Setpoints:
        return cls(dict.fromkeys(PUMP_NAMES, 0.0), {"plasma_route": route, "venous_clamp": clamp})


@dataclass(frozen=True, slots=True)
class Progress:
    """What the phases need to know about the treatment so far (from `volumes`)."""

    phase_s: float = 0.0
    exchanged_ml: float = 0.0
    processed_ml: float = 0.0
    #: plasma drawn from the patient by the plasma pump during purification
    patient_plasma_ml: float = 0.0
    heparin_ml: float = 0.0
    blood_rinsed_ml: float = 0.0
    outer_chamber_ml: float = 0.0
    inner_chamber_ml: float = 0.0
    purification_s: float = 0.0


def heparin_rate(
    p: Prescription, pr: Progress, top_ml_h: float = PUMP_HARD_MAX["heparin"]
) -> float:
    """The bolus goes first at the syringe pump's top rate, then the continuous rate.

    A 2 mL bolus takes 6 min at 20 mL/h, so it runs on into the exchange rather than hold
    the connection; the heparin pumped since connection tells when it is in.
    """
    bolus_ml = p.heparin.bolus_iu / p.heparin.concentration_iu_ml
    return top_ml_h if pr.heparin_ml < bolus_ml else p.heparin.rate_ml_h


def regime(p: Prescription, pr: Progress) -> tuple[bool, bool, bool]:
    """All that the setpoints of a phase (except the connection's ramp, which follows
    `phase_s`) take from `pr`: the heparin bolus still running, the bag holding enough to
    feed the loop, blood still to rinse back. Equal regimes give equal setpoints (tested:
    tests/unit/test_phase_regimes.py), so the control loop builds a phase's setpoints once
    per regime instead of every cycle; a setpoint function reading more of `pr` must say
    so here."""
    bolus_ml = p.heparin.bolus_iu / p.heparin.concentration_iu_ml
    return (
        pr.heparin_ml < bolus_ml,
        pr.outer_chamber_ml + pr.inner_chamber_ml >= BAG_MIN_ML,
        pr.blood_rinsed_ml < RINSE_BACK_ML,
    )


def _base(p: Prescription, pr: Progress, blood: float) -> dict[str, float]:
    pumps = dict.fromkeys(PUMP_NAMES, 0.0)
    pumps["blood"] = blood
    pumps["heparin"] = heparin_rate(p, pr)
    return pumps


def connecting(p: Prescription, pr: Progress) -> Setpoints:
    """Blood ramps to the prescribed flow; heparin bolus starts; plasma pumps off."""
    pumps = _base(p, pr, min(p.blood_flow_ml_min, BLOOD_RAMP_ML_MIN_PER_S * (pr.phase_s + 1)))
    return Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})


def connected(p: Prescription, pr: Progress) -> bool:
    return BLOOD_RAMP_ML_MIN_PER_S * (pr.phase_s + 1) >= p.blood_flow_ml_min


def _loop(p: Prescription, pumps: dict[str, float], pr: Progress) -> None:
    """Loop, filtrate and post-dilution substitution, once the bag can feed them."""
    if pr.outer_chamber_ml + pr.inner_chamber_ml >= BAG_MIN_ML:
        pumps["loop"] = p.loop_flow
        pumps["filtrate"] = p.filtrate_flow
        pumps["substitution"] = p.substitution_flow


def exchange(p: Prescription, pr: Progress) -> Setpoints:
    """Plasma to waste, replaced volume for volume."""
    pumps = _base(p, pr, p.blood_flow_ml_min)
    pumps["plasma"] = p.plasma_flow
    pumps["replacement"] = p.plasma_flow
    return Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})


def collection_due(p: Prescription, pr: Progress) -> bool:
    """Collection starts when the remaining exchange volume reaches the threshold."""
    if not p.has_loop:
        return False
    return p.exchange_ml - pr.exchanged_ml <= p.collection_threshold_ml


def exchange_done(p: Prescription, pr: Progress) -> bool:
    return pr.exchanged_ml >= p.exchange_ml


def exchange_collect(p: Prescription, pr: Progress) -> Setpoints:
    """Plasma to the outer chamber, still replaced; the loop runs once the bag can feed it.

    Nothing returns yet: the collected plasma is the patient's old plasma, replaced by fresh.
    """
    pumps = _base(p, pr, p.blood_flow_ml_min)
    pumps["plasma"] = p.plasma_flow
    pumps["replacement"] = p.plasma_flow
    _loop(p, pumps, pr)
    return Setpoints(pumps, {"plasma_route": "collect", "venous_clamp": "open"})


def purification(p: Prescription, pr: Progress) -> Setpoints:
    """Loop, filtration and return; return equals plasma separation.

    With a prescribed net fluid removal, the filter takes it out of the bag (substitution =
    filtrate - removal) and the return gives that much less back, so the bag's content holds
    and the patient is the one who loses it. Until the bag can feed the loop (adsorption mode
    starts here with an empty bag) nothing returns.
    """
    pumps = _base(p, pr, p.blood_flow_ml_min)
    pumps["plasma"] = p.plasma_flow
    _loop(p, pumps, pr)
    if pumps["loop"] > 0:
        pumps["return"] = max(0.0, p.plasma_flow - p.net_fluid_removal_ml_h / 60.0)
    return Setpoints(pumps, {"plasma_route": "collect", "venous_clamp": "open"})


def purification_done(p: Prescription, pr: Progress) -> bool:
    """Duration, loop volume (every pass) or patient plasma (each mL once): first reached."""
    end = p.purification_end
    if end.duration_min is not None and pr.purification_s >= end.duration_min * 60.0:
        return True
    if end.processed_plasma_ml is not None and pr.processed_ml >= end.processed_plasma_ml:
        return True
    return end.patient_plasma_ml is not None and pr.patient_plasma_ml >= end.patient_plasma_ml


def rinse_back(p: Prescription, pr: Progress) -> Setpoints:
    """Plasma side stopped; the blood pump pushes the circuit's blood home with saline."""
    pumps = dict.fromkeys(PUMP_NAMES, 0.0)
    if pr.blood_rinsed_ml < RINSE_BACK_ML:
        pumps["blood"] = min(RINSE_BACK_FLOW_ML_MIN, p.blood_flow_ml_min)
    return Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})


def rinse_back_done(pr: Progress) -> bool:
    return pr.blood_rinsed_ml >= RINSE_BACK_ML


def paused(p: Prescription, pr: Progress, minimum_blood_ml_min: float) -> Setpoints:
    """Operator pause: blood keeps circulating at minimum flow, everything else stops."""
    pumps = _base(p, pr, min(minimum_blood_ml_min, p.blood_flow_ml_min))
    return Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})


def _purified(p: Prescription, pr: Progress) -> str:
    drawn = (
        f", {pr.patient_plasma_ml:.0f} mL of the patient's plasma"
        if p.purification_end.patient_plasma_ml is not None
        else ""
    )
    return f"processed {pr.processed_ml:.0f} mL in {pr.purification_s / 60:.0f} min{drawn}"


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of the treatment, as data: what it commands, when its goal is reached, and
    the cause its end is journaled with. The state machine's `advance` guard reads `done`;
    the control loop commands `setpoints`: no dispatch on phase names anywhere else."""

    setpoints: Callable[[Prescription, Progress], Setpoints]
    done: Callable[[Prescription, Progress], bool]
    cause: Callable[[Prescription, Progress], str]
    #: its setpoints depend on progress only through `regime` (all but the ramp)
    by_regime: bool = True


PHASES: dict[str, Phase] = {
    "connecting": Phase(
        connecting, connected, lambda p, pr: "blood flow at prescription", by_regime=False
    ),
    # with a loop, exchange ends where collection begins; without, at the exchange volume
    "exchange": Phase(
        exchange,
        lambda p, pr: collection_due(p, pr) if p.has_loop else exchange_done(p, pr),
        lambda p, pr: (
            f"{p.exchange_ml - pr.exchanged_ml:.0f} mL to exchange"
            if p.has_loop
            else f"exchanged {pr.exchanged_ml:.0f} mL"
        ),
    ),
    "exchange_collect": Phase(
        exchange_collect, exchange_done, lambda p, pr: f"exchanged {pr.exchanged_ml:.0f} mL"
    ),
    "purification": Phase(purification, purification_done, _purified),
    "rinse_back": Phase(
        rinse_back,
        lambda p, pr: rinse_back_done(pr),
        lambda p, pr: f"{pr.blood_rinsed_ml:.0f} mL rinsed back",
    ),
}
