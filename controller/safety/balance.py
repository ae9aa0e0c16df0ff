"""The patient's fluid balance as a safety quantity of its own.

Three things live here, all judged on the patient rather than on any one pump:

- **Balanced stops.** Pumps move fluid in pairs: plasma out of the patient is matched by
  replacement (exchange) or return (purification), filtrate out of the loop by substitution.
  A response that stops one pump of a pair and lets its partner run moves fluid into or out
  of the patient with nothing to match it (a full waste bag that paused plasma but not
  return put 1.2 L into a patient). Every stop is closed over its partners (`balanced`).
- **The prescribed trajectory.** What the prescription allows at this moment: the heparin
  given, minus the net fluid removal rate over the time the loop has run. The patient's
  balance may not leave it by more than a small margin in any state (an alarm's reduced
  flows, a pause); past it, the pumps that would take it further are capped (`guard`).
- **The limits of the prescription.** Exchanged and processed volumes, the patient plasma
  drawn and the purification time are limits, not only the targets that end a phase: in
  `alarm` nothing ends a phase, so without a limit an alarm that lets flows run at a
  reduced rate (hypotension) exchanges past the prescription (`over_prescription`).
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.prescription import Prescription
from controller.rig import BAG_MIN_ML

#: Each pump and the pumps that balance it.
PARTNERS: dict[str, tuple[str, ...]] = {
    "plasma": ("replacement", "return"),
    "replacement": ("plasma",),
    "return": ("plasma",),
    "filtrate": ("substitution",),
    "substitution": ("filtrate",),
    "loop": ("filtrate", "substitution"),
}
EXCHANGE_PHASES = ("exchange", "exchange_collect")
#: The patient's balance may leave its prescribed trajectory by this much before the guard
#: caps flows (1 % of the exchange or 10 mL, whichever is more: docs/reference.md, machines' balance
#: accuracy is about 30 g per litre; this is tighter).
MARGIN_ML = 10.0


def balanced(stop: set[str]) -> set[str]:
    """`stop` with every partner of every pump in it, transitively."""
    closed = set(stop)
    todo = list(stop)
    while todo:
        for partner in PARTNERS.get(todo.pop(), ()):
            if partner not in closed:
                closed.add(partner)
                todo.append(partner)
    return closed


def allowed_balance_ml(
    rx: Prescription, heparin_ml: float, purification_s: float, drawn_ml: float = 0.0
) -> float:
    """Into the patient minus out that the prescription allows by now.

    `drawn_ml`: plasma drawn from the patient while the loop ran. Without an exchange to
    fill it (mode `adsorption`), the bag must hold BAG_MIN_ML of the patient's own plasma
    before the loop and the return can run: that much is held outside by design.
    """
    held = 0.0 if rx.has_exchange else min(BAG_MIN_ML, drawn_ml)
    return heparin_ml - rx.net_fluid_removal_ml_h * purification_s / 3600.0 - held


def margin_ml(rx: Prescription) -> float:
    return max(MARGIN_ML, 0.01 * rx.exchange_ml)


def guard(pumps: dict[str, float], balance_ml: float, allowed_ml: float, margin: float) -> None:
    """Cap, in place, the flows that would take the balance further from its trajectory."""
    if balance_ml < allowed_ml - margin:  # too much out: no more net removal
        pumps["plasma"] = min(pumps["plasma"], pumps["replacement"] + pumps["return"])
        pumps["filtrate"] = min(pumps["filtrate"], pumps["substitution"])
    elif balance_ml > allowed_ml + margin:  # too much in: no more net gain
        if pumps["replacement"] + pumps["return"] > pumps["plasma"]:
            keep = pumps["plasma"]
            pumps["replacement"] = min(pumps["replacement"], keep)
            pumps["return"] = min(pumps["return"], max(0.0, keep - pumps["replacement"]))
        pumps["substitution"] = min(pumps["substitution"], pumps["filtrate"])


def over_prescription(
    rx: Prescription, phase: str, done: Mapping[str, float], purification_s: float
) -> set[str]:
    """Pumps to stop because the prescription's volume or time is reached in this phase.

    `done`: exchanged_ml, processed_ml, patient_plasma_ml so far. `phase` is the phase whose
    setpoints run (the interrupted one during an alarm or a pause).
    """
    stop: set[str] = set()
    if phase in EXCHANGE_PHASES and rx.has_exchange and done["exchanged_ml"] >= rx.exchange_ml:
        stop |= {"plasma", "replacement"}
    if phase == "purification" and rx.has_loop:
        end = rx.purification_end
        if end.duration_min is not None and purification_s >= end.duration_min * 60.0:
            stop |= {"plasma", "loop"}
        if end.processed_plasma_ml is not None and done["processed_ml"] >= end.processed_plasma_ml:
            # the plasma side with the loop: return draws from the inner chamber, which only
            # the loop fills; with plasma drawn on (an alarm's reduced flows) the chamber
            # ran dry and the patient lost what plasma drew (100 mL under a long hypotension)
            stop |= {"plasma", "loop"}
        if end.patient_plasma_ml is not None and done["patient_plasma_ml"] >= end.patient_plasma_ml:
            stop.add("plasma")
    return balanced(stop) if stop else stop
