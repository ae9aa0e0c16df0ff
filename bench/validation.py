"""The simulated patient and adsorbers against published numbers: a table anyone can rerun.

Each row is a case run on the simulator (the physics alone for a column or a membrane, the
whole controller for a session), a published figure with its source, a band and the model's
value; a row passes when the model is inside the band. A row whose published figure cannot
be compared (the study's own numbers disagree, or it reports something else) says why, with
its source, instead of passing or failing. Prints JSON and a Markdown table.

`--write` also writes docs/validation.md (the table inside `bench/validation_template.md`,
with the parameters read from the code) and docs/validation.json (every row's value, the
cache the stale test reads). Rows marked fast (the physics alone, a few seconds together)
are rerun by tests/unit/test_validation.py; the session rows take about a minute, and
tests/integration/test_validation_sessions.py reruns all but BR-350's against the cache.

Usage: python -m bench.validation [--fast] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import clinical
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.rig import PUMP_NAMES
from firmware_sim import kinetics
from firmware_sim.physics import Physics, PhysicsParams, physics_for

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "validation.md"
CACHE = ROOT / "docs" / "validation.json"
TEMPLATE = Path(__file__).with_name("validation_template.md")
RIG = ROOT / "config" / "rigs" / "sim.yaml"
RX = ROOT / "config" / "prescriptions"

BILIRUBIN_MG_PER_NMOL = 584.66e-6
MG_DL = 17.104  # umol/L per mg/dL of bilirubin
#: BR-350 study (Transplant Proc 2007): 7.5 L of plasma in 231 min
BR350_FLOW = 7500 / 231
#: the one constant feed at which that study's curve and its 143 mg agree (docs)
BR350_FEED = 60.0
MARKS_L = (2.0, 4.0, 7.0)

Result = dict[str, float]


# -- experiments: the physics alone (fast) ---------------------------------------------------
def patient(
    *,
    bilirubin: float = 420.0,
    il6: float = 500.0,
    adsorbers: tuple[str, ...] = (),
    extra: tuple[kinetics.SoluteParams, ...] = (),
) -> Physics:
    """A 70 kg patient (Hct 0.30) on the rig with bags that never run out."""
    params = PhysicsParams(
        adsorbers=adsorbers,
        replacement_bag_ml=20_000.0,
        substitution_bag_ml=20_000.0,
        solutes=(*kinetics.default_solutes(il6, bilirubin), *extra),
    )
    return Physics(params)


def run(physics: Physics, rates: dict[str, float], **valves: str) -> Physics:
    physics.set_valve("venous_clamp", "open")
    for name, position in valves.items():
        physics.set_valve(name, position)
    for name in PUMP_NAMES:
        physics.set_pump(name, rates.get(name, 0.0))
    return physics


def stop(physics: Physics) -> None:
    for name in PUMP_NAMES:
        physics.set_pump(name, 0.0)


def removal(column: Physics, solute: str = "bilirubin", name: str = "anion_resin") -> float:
    c_in, c_out = column.column_profile()[name][solute]
    return 1.0 - c_out / c_in


def kaplan() -> Result:
    """Plasma exchange of a plasma-confined marker, stopped at exactly n plasma volumes."""
    out: Result = {}
    for multiple in (1.0, 1.5, 2.0):
        params = PhysicsParams(
            solutes=(kinetics.confined_solute(),), adsorbers=(), replacement_bag_ml=8000.0
        )
        ph = run(Physics(params), {"blood": 120.0, "plasma": 30.0, "replacement": 30.0})
        target = multiple * ph.volumes["patient"]
        while ph.volumes["waste_bag"] < target - 1e-9:
            ph.step(min(1.0, (target - ph.volumes["waste_bag"]) * 2.0))
        out[f"{multiple:g}"] = 100.0 * ph.removal_fraction("marker")
    return out


def br350_single_pass() -> Result:
    """A fresh anion-resin column fed 60 umol/L plasma once through at the study's flow."""
    ph = patient(adsorbers=("anion_resin",))
    ph.hang_plasma("outer_chamber", 8000.0, {"bilirubin": BR350_FEED, "il6": 0.0})
    # the column's outlet goes on to the patient (return pump): a single pass
    run(ph, {"blood": 120.0, "loop": BR350_FLOW, "return": BR350_FLOW}, plasma_route="collect")
    out: Result = {}
    marks = [0.02, *MARKS_L, 7.5]
    while marks:
        ph.step(1.0)
        if ph.pumped_ml[PUMP_NAMES.index("loop")] >= marks[0] * 1000.0:
            mark = marks.pop(0)
            out[f"E{mark:g}"] = 100.0 * removal(ph)
            out[f"bound{mark:g}"] = ph.bound("bilirubin")["anion_resin"]
    out["mass_mg"] = out["bound7.5"] * BILIRUBIN_MG_PER_NMOL
    return out


def br350_replay() -> Result:
    """The study's reported conditions: a 37 mg/dL patient perfused 7.5 L in 231 min."""
    ph = patient(bilirubin=37.0 * MG_DL, adsorbers=("anion_resin",))
    flow = BR350_FLOW
    run(ph, {"blood": 120.0, "plasma": flow, "loop": flow, "return": flow}, plasma_route="collect")
    out: Result = {}
    marks = list(MARKS_L)
    for _ in range(231 * 60):
        ph.step(1.0)
        if marks and ph.pumped_ml[PUMP_NAMES.index("loop")] >= marks[0] * 1000.0:
            out[f"E{marks.pop(0):g}"] = 100.0 * removal(ph)
    out["mass_mg"] = ph.bound("bilirubin")["anion_resin"] * BILIRUBIN_MG_PER_NMOL
    out["fall"] = 100.0 * ph.removal_fraction("bilirubin")
    return out


def br350_recirculation(targets: Result) -> Result:
    """1.5 L of 420 umol/L plasma recirculated through the bag and a fresh column: the
    single-pass removal when the column holds what it held after 2/4/7 L single pass."""
    ph = patient(adsorbers=("anion_resin",))
    ph.hang_plasma("outer_chamber", 1500.0, {"bilirubin": 420.0, "il6": 0.0})
    # outer -> column -> inner, and the bag's valve back to outer: a closed loop
    run(ph, {"loop": BR350_FLOW})
    out: Result = {}
    marks = list(MARKS_L)
    while marks:
        ph.step(1.0)
        if ph.bound("bilirubin")["anion_resin"] >= targets[f"bound{marks[0]:g}"]:
            mark = marks.pop(0)
            out[f"E{mark:g}"] = 100.0 * removal(ph)
            out[f"litres{mark:g}"] = ph.pumped_ml[PUMP_NAMES.index("loop")] / 1000.0
    feed = (ph.outer_amount[1] + ph.inner_amount[1]) / (
        ph.volumes["outer_chamber"] + ph.volumes["inner_chamber"]
    )
    out["feed_end"] = feed
    return out


def membrane() -> Result:
    """Selective albumin exchange's conditions on the rig's filter: 2 L/h of filtrate,
    post-dilution, 10 h, a 300 umol/L patient, no adsorber."""
    ph = patient(bilirubin=300.0)
    rates = {
        "blood": 150.0,
        "plasma": 60.0,
        "loop": 200.0,
        "filtrate": 2000.0 / 60.0,
        "substitution": 2000.0 / 60.0,
        "return": 60.0,
    }
    run(ph, rates, plasma_route="collect")
    j = ph.solute_index["bilirubin"]
    sieving = ph.params.solutes[j].sieving

    def clearance() -> float:
        outer = ph.outer_amount[j] / ph.volumes["outer_chamber"]
        return sieving * ph.fouling * rates["filtrate"] * outer / ph.concentration("bilirubin")

    for _ in range(10 * 60):  # the first minutes fill the bag
        ph.step(1.0)
    start = clearance()
    for _ in range(10 * 3600 - 600):
        ph.step(1.0)
    return {
        "fall": 100.0 * ph.removal_fraction("bilirubin"),
        "clearance_start": start,
        "clearance_end": clearance(),
    }


# -- experiments: whole sessions through the controller (slow) -------------------------------
def rig_with(bilirubin: float | None = None) -> RigConfig:
    rig = load_rig(RIG)
    if bilirubin is None:
        return rig
    return rig.model_copy(
        update={"sim": rig.sim.model_copy(update={"bilirubin_umol_l": bilirubin})}
    )


def prescription(file: str, **changes: Any) -> Prescription:
    base = load_prescription(RX / f"{file}.yaml").model_dump(exclude_none=True)
    return Prescription.model_validate({**base, **changes})


def session(
    rig: RigConfig, rx: Prescription, extra: tuple[kinetics.SoluteParams, ...] = ()
) -> tuple[Any, Physics]:
    physics = physics_for(rig, rx, extra)
    summary, _ = asyncio.run(run_treatment(rig, rx, RunOptions(gate=CLEAR, physics=physics)))
    if not summary.completed:
        raise RuntimeError(f"{rx.name}: {summary.final_state} {summary.error}")
    return summary, physics


def rebound_24h(ph: Physics, solute: str = "bilirubin") -> float:
    """Rise of the plasma level over the 24 h after the session, % of the end level."""
    end = ph.concentration(solute)
    stop(ph)
    for _ in range(24 * 60):
        ph.step(60.0)
    return 100.0 * (ph.concentration(solute) / end - 1.0)


def pe_session() -> Result:
    rx = prescription(
        "pe",
        exchange_volume_pv=None,
        exchange_volume_ml=2500,
        replacement={"fluid": "fresh_frozen_plasma", "bag_volume_ml": 3000},
    )
    summary, ph = session(rig_with(), rx)
    return {
        "bilirubin": 100.0 * summary.solutes["bilirubin"].removal,
        "il6": 100.0 * summary.solutes["il6"].removal,
        "il6_bound": 100.0 * clinical.expected_removal(2500.0, rx.plasma_volume_ml),
        "rebound": rebound_24h(ph),
    }


def dpmas_session() -> Result:
    rig = rig_with(426.0)  # Ma et al. 2025: median baseline 426 umol/L
    rx = prescription("adsorption")
    summary, ph = session(rig, rx, (kinetics.albumin(30.0),))
    j = ph.solute_index["albumin"]
    bag_ml = ph.volumes["outer_chamber"] + ph.volumes["inner_chamber"]
    bag_mg = ph.outer_amount[j] + ph.inner_amount[j]
    # the loop's lines and columns hold plasma like the bag's at the end (not simulated:
    # the loop is a constant volume that carries no solute)
    held_mg = bag_mg + ph.params.loop_circuit_ml * (bag_mg / bag_ml if bag_ml else 0.0)
    bound_mg = sum(ph.bound("albumin").values())
    return {
        "bilirubin": 100.0 * summary.solutes["bilirubin"].removal,
        "il6": 100.0 * summary.solutes["il6"].removal,
        "minutes": summary.phases_s["purification"] / 60.0,
        "patient_plasma_ml": summary.truth_ml["plasma"],
        "albumin_g": (held_mg + bound_mg) / 1000.0,
        "albumin_bound_g": bound_mg / 1000.0,
    }


def li_als_session() -> Result:
    summary, ph = session(rig_with(), prescription("li_als"))
    bound = sum(ph.bound("bilirubin").values()) * BILIRUBIN_MG_PER_NMOL
    return {
        "bilirubin": 100.0 * summary.solutes["bilirubin"].removal,
        "il6": 100.0 * summary.solutes["il6"].removal,
        "columns_mg": bound,
    }


def br350_session() -> Result:
    """Plasma adsorption on one anion-resin column: 3.6 L at 25 mL/min, 31 mg/dL."""
    rx = prescription(
        "adsorption",
        name="BR-350 plasma adsorption, 70 kg",
        adsorbers=["anion_resin"],
        purification={"duration_min": 240, "patient_plasma_ml": 3600},
    )
    summary, ph = session(rig_with(31.0 * MG_DL), rx)
    return {"bilirubin": 100.0 * summary.solutes["bilirubin"].removal, "rebound": rebound_24h(ph)}


FAST: dict[str, Callable[[], Result]] = {
    "kaplan": kaplan,
    "br350_single_pass": br350_single_pass,
    "br350_replay": br350_replay,
    "membrane": membrane,
}
SLOW: dict[str, Callable[[], Result]] = {
    "pe_session": pe_session,
    "dpmas_session": dpmas_session,
    "li_als_session": li_als_session,
    "br350_session": br350_session,
}


def run_experiments(fast_only: bool = False) -> tuple[dict[str, Result], dict[str, float]]:
    """Every experiment's measures, and the wall time each took."""
    results: dict[str, Result] = {}
    wall: dict[str, float] = {}
    experiments: dict[str, Callable[[], Result]] = {
        **FAST,
        "br350_recirculation": lambda: br350_recirculation(results["br350_single_pass"]),
    }
    if not fast_only:
        experiments.update(SLOW)
    for name, fn in experiments.items():
        start = time.perf_counter()
        results[name] = fn()
        wall[name] = round(time.perf_counter() - start, 2)
    return results, wall


FAST_EXPERIMENTS = frozenset({*FAST, "br350_recirculation"})


# -- the table --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Spec:
    """One row: what was run, the published figure, its band, where the model value is."""

    key: str
    group: str
    case: str
    published: str
    source: str
    band: tuple[float, float] | None
    unit: str
    experiment: str
    measure: str
    #: why the published figure is not comparable (band None), or how the band was made
    note: str = ""

    @property
    def fast(self) -> bool:
        return self.experiment in FAST_EXPERIMENTS


NOT_COMPARABLE_BR350 = (
    "at the reported 37 mg/dL, 143 mg is what 0.4 L of the patients' plasma carries, while the"
    " same study's single-pass figures put >40 % of each of 7.5 L on the column (>1 g); the"
    " study's three numbers agree with each other only at a feed of ~60 umol/L (rows above),"
    " and its own course (37 -> 15 mg/dL in three sessions) needs more than 143 mg a session."
)
SPECS: tuple[Spec, ...] = (
    *(
        Spec(
            f"kaplan_{m}",
            "Plasma exchange, plasma-confined solute",
            f"PE of {m} PV, 30 mL/min, marker confined to plasma",
            f"{p} % removed",
            "[Kaplan]",
            (p - 2.0, p + 2.0),
            "%",
            "kaplan",
            m,
        )
        for m, p in (("1", 63.0), ("1.5", 78.0), ("2", 86.0))
    ),
    Spec(
        "br350_fresh",
        "BR-350 anion-exchange column",
        "fresh column, single pass at 32.5 mL/min (first 20 mL)",
        ">90 % single-pass removal",
        "[BR350]",
        (90.0, 100.0),
        "%",
        "br350_single_pass",
        "E0.02",
    ),
    *(
        Spec(
            f"br350_single_{m:g}",
            "BR-350 anion-exchange column",
            f"single pass after {m:g} L, constant 60 umol/L feed",
            f"{p} % single-pass removal",
            "[BR350]",
            (p - 10.0, p + 10.0),
            "%",
            "br350_single_pass",
            f"E{m:g}",
            "calibration row: the column's capacity was set so that these three and the"
            " 143 mg row hold together (docs: Adsorbers)",
        )
        for m, p in zip(MARKS_L, (60, 50, 40), strict=True)
    ),
    Spec(
        "br350_mass",
        "BR-350 anion-exchange column",
        "bilirubin bound after 7.5 L single pass, 60 umol/L feed",
        "143 +- 24 mg per session",
        "[BR350]",
        (95.0, 191.0),
        "mg",
        "br350_single_pass",
        "mass_mg",
        "calibration row (band: mean +- 2 SD)",
    ),
    *(
        Spec(
            f"br350_recirc_{m:g}",
            "BR-350 anion-exchange column",
            f"1.5 L bag recirculated, when the column holds what it held after {m:g} L single pass",
            f"{p} % single-pass removal",
            "[BR350]",
            (p - 10.0, p + 10.0),
            "%",
            "br350_recirculation",
            f"E{m:g}",
            "compared on the amount bound: saturation follows it whatever the feed",
        )
        for m, p in zip(MARKS_L, (60, 50, 40), strict=True)
    ),
    Spec(
        "br350_recirc_litres",
        "BR-350 anion-exchange column",
        "1.5 L bag recirculated: litres through the column to reach the 7 L load",
        "7 L (single pass at 60 umol/L)",
        "[BR350]",
        None,
        "L",
        "br350_recirculation",
        "litres7",
        "not comparable in litres: the bag's feed starts at 420 umol/L, seven times the"
        " calibration feed, so the same load comes after fewer litres (and after more as the"
        " bag is cleaned); per litre a column's curve holds only at the feed it was measured at.",
    ),
    Spec(
        "br350_replay_mass",
        "BR-350 anion-exchange column",
        "the study's stated conditions: 37 mg/dL patient, 7.5 L in 231 min, bound",
        "143 +- 24 mg per session",
        "[BR350]",
        None,
        "mg",
        "br350_replay",
        "mass_mg",
        NOT_COMPARABLE_BR350,
    ),
    Spec(
        "br350_replay_E2",
        "BR-350 anion-exchange column",
        "the study's stated conditions: single pass after 2 L",
        "60 % single-pass removal",
        "[BR350]",
        None,
        "%",
        "br350_replay",
        "E2",
        NOT_COMPARABLE_BR350,
    ),
    Spec(
        "br350_session",
        "Sessions: bilirubin",
        "BR-350 plasma adsorption, 3.6 L at 25 mL/min, 31 mg/dL (controller run)",
        "24.8 +- 12.9 % (3-4 L); 31 -> 23.7 mg/dL (-24 %, 3.6 L)",
        "[Mancini], [BA23]",
        (0.0, 50.6),
        "%",
        "br350_session",
        "bilirubin",
        "band: mean +- 2 SD of [Mancini]",
    ),
    Spec(
        "pe_bilirubin",
        "Sessions: bilirubin",
        "PE 2,500 mL, 30 mL/min, 420 umol/L (controller run)",
        "42.3 +- 7.2 % (full-dose PE, ACLF)",
        "[Yao]",
        (27.9, 56.7),
        "%",
        "pe_session",
        "bilirubin",
        "band: mean +- 2 SD; the abstract gives no volume: 2-3 L is the usual full dose in"
        " Chinese ACLF practice (an assumption)",
    ),
    Spec(
        "dpmas_bilirubin",
        "Sessions: bilirubin",
        "shipped DPMAS prescription, 426 umol/L (controller run)",
        "between anion resin alone (24.8 +- 12.9 %) and DPMAS + half-dose PE (52.3 %)",
        "[Mancini], [Yao], [Ma]",
        (11.9, 52.3),
        "%",
        "dpmas_session",
        "bilirubin",
        "no DPMAS-only per-session percentage in the abstracts we could read ([Ma] reports a"
        " progressive fall with volume, figures not in the abstract): the band runs from one"
        " column alone (mean - 1 SD) to DPMAS followed by 1-1.5 L of PE (mean)",
    ),
    Spec(
        "li_als_bilirubin",
        "Sessions: bilirubin",
        "shipped Li-ALS prescription: 1.5 PV exchange, 4 h filtration-adsorption",
        "no per-session figure for Li-ALS found; DPMAS + half-dose PE: 52.3 +- 9.4 %",
        "[Yao]",
        None,
        "%",
        "li_als_session",
        "bilirubin",
        "not comparable: the nearest published session adds half-dose PE (about 1-1.5 L) to"
        " adsorption;"
        " Li-ALS exchanges 4.8 L (1.5 PV) and then adsorbs for 4 h, so it must take more."
        " Before this model the simulator took 94 %; no published session comes near that.",
    ),
    Spec(
        "dpmas_minutes",
        "Sessions: the DPMAS prescription",
        "shipped DPMAS prescription: time in purification",
        "2-3 h",
        "[REF]",
        (120.0, 180.0),
        "min",
        "dpmas_session",
        "minutes",
    ),
    Spec(
        "dpmas_plasma",
        "Sessions: the DPMAS prescription",
        "shipped DPMAS prescription: plasma drawn from the patient",
        "3.0-4.5 L",
        "[REF], [Ma]",
        (3000.0, 4500.5),
        "mL",
        "dpmas_session",
        "patient_plasma_ml",
    ),
    Spec(
        "pe_il6",
        "Sessions: IL-6",
        "PE 2,500 mL (the same run)",
        "falls (reviews: IL-6 lower after TPE; no per-session figure with a volume)",
        "[Beraud], [Kaplan]",
        (0.0, 54.4),
        "%",
        "pe_session",
        "il6",
        "band: from no change to the plasma-confined removal exp(-V/PV) of the same volume,"
        " which a solute that is made and has a pool outside the plasma cannot exceed",
    ),
    Spec(
        "dpmas_il6",
        "Sessions: IL-6",
        "shipped DPMAS prescription (the same run)",
        "MARS / Prometheus in ACLF: IL-6 cleared, level not significantly changed",
        "[Stadlbauer]",
        None,
        "%",
        "dpmas_session",
        "il6",
        "not comparable: other devices (albumin dialysis, fractionated plasma separation), no"
        " cytokine adsorber; it supports the model's premise (fast production and clearance"
        " make the level hard to move), not a number for DPMAS.",
    ),
    Spec(
        "li_als_il6",
        "Sessions: IL-6",
        "shipped Li-ALS prescription (the same run)",
        "119.9 -> 20.5 pg/mL (-83 %), COVID-19",
        "[Dai]",
        None,
        "%",
        "li_als_session",
        "il6",
        "not comparable: before and after a course of artificial-liver treatment in COVID-19"
        " (sessions and days, with the disease receding), not one session.",
    ),
    Spec(
        "pe_rebound",
        "Rebound over 24 h",
        "24 h after the PE 2,500 mL session, no treatment",
        "-42.3 % at the end, -13.5 % at 24 h: +50 % of the end level",
        "[Yao], [Mancini]",
        (27.0, 72.0),
        "%",
        "pe_session",
        "rebound",
        "band: [Yao]'s 24 h figure +- 1 SD (-13.5 +- 13.0 % of the start level) over its end"
        " figure; [Mancini]'s +34.9 % after adsorption sits inside it",
    ),
    Spec(
        "br350_rebound",
        "Rebound over 24 h",
        "24 h after the BR-350 session, no treatment",
        "+34.9 +- 38.7 % of the end level",
        "[Mancini]",
        (-3.8, 73.6),
        "%",
        "br350_session",
        "rebound",
        "band: mean +- 1 SD",
    ),
    Spec(
        "dpmas_albumin",
        "Albumin",
        "shipped DPMAS prescription: albumin bound + left in the bag and the loop's 250 mL",
        "11.9 (10.4-13.0) g unless the plasma in the circuit is returned",
        "[Wang], [REF]",
        (10.4, 13.0),
        "g",
        "dpmas_session",
        "albumin_g",
        "band: the reported interquartile range; the loop's hold-up is an estimate (its"
        " plasma taken at the bag's level at the end)",
    ),
    Spec(
        "membrane_fall",
        "Membrane (selective albumin exchange)",
        "filter alone, 2 L/h filtrate post-dilution, 10 h, 300 umol/L",
        "29.1 +- 3.0 % in one 10 h session",
        "[SAE]",
        (23.1, 35.1),
        "%",
        "membrane",
        "fall",
        "calibration row: bilirubin's pool outside plasma and its exchange were fitted to it"
        " (band: mean +- 2 SD)",
    ),
    Spec(
        "membrane_clearance_start",
        "Membrane (selective albumin exchange)",
        "bilirubin clearance by the filtrate, first minutes",
        "11.1 +- 1.3 mL/min",
        "[SAE]",
        (8.5, 13.7),
        "mL/min",
        "membrane",
        "clearance_start",
        "band: mean +- 2 SD",
    ),
    Spec(
        "membrane_clearance_end",
        "Membrane (selective albumin exchange)",
        "bilirubin clearance by the filtrate after 10 h (fouling)",
        "4.4 +- 0.5 mL/min",
        "[SAE]",
        (3.4, 5.4),
        "mL/min",
        "membrane",
        "clearance_end",
        "calibration row: fouling was set from the albumin sieving fall (0.30 -> 0.13)",
    ),
)

REFERENCES = {
    "[Kaplan]": "Kaplan AA. A simple and accurate method for prescribing plasma exchange."
    " ASAIO Trans 1990;36(3):M597-9. Removal of a plasma-confined solute: 1 - exp(-V/PV).",
    "[BR350]": "Selective bilirubin removal by plasma treatment with Plasorba BR-350 for early"
    " cholestatic graft dysfunction. Transplant Proc 2007;39(6):1904-6 (PubMed 17692649).",
    "[Mancini]": "Mancini E, Faenza S, Mambelli E, Santoro A. Plasma separation and bilirubin"
    " adsorption for excessive hyperbilirubinemia before and after liver transplantation."
    " Crit Care 2002;6(Suppl 1):P188.",
    "[BA23]": "Bilirubin adsorption (BR-350, 3.6 L of plasma a session) in 23 patients with"
    " liver failure, retrospective, 2004 (PubMed 15478543; authors and journal not checked"
    " here).",
    "[Yao]": "Yao J, et al. Therapeutic effect of double plasma molecular adsorption system and"
    " sequential half-dose plasma exchange in patients with HBV-related acute-on-chronic liver"
    " failure. J Clin Apher 2019;34(4):392-8.",
    "[Ma]": "Ma Y, Xu Y, Du L, Bai L, Tang H. Association between volume of processed plasma and"
    " total bilirubin reduction during plasma adsorption for severe liver disease. Eur J Med"
    " Res 2025 (doi 10.1186/s40001-025-02419-4). 75 DPMAS sessions, 3.0-4.5 L in 2-3 h,"
    " baseline 426 umol/L.",
    "[Wang]": "Wang BB, Zhou SY, Zhao Y, et al. Application effect evaluation of closed plasma"
    " return in DPMAS treatment: a prospective randomized controlled study. Chin J Blood"
    " Purif 2025;24(1). Albumin lost without reinfusion 11.9 (10.4-13.0) g.",
    "[SAE]": "Selective albumin exchange: a novel and simple method to remove bilirubin (EC-20W"
    " secondary separator, 5 patients, 10 sessions of 10 h); as quoted in docs/reference.md"
    " (authors and journal not checked here).",
    "[Stadlbauer]": "Stadlbauer V, et al. Effect of extracorporeal liver support by MARS and"
    " Prometheus on serum cytokines in acute-on-chronic liver failure. Crit Care"
    " 2006;10(6):R169.",
    "[Dai]": "Dai X, et al. Effect of artificial liver blood purification treatment on the"
    " survival of critical ill COVID-19 patients. Artif Organs 2021;45(7):762-9.",
    "[Beraud]": "Beraud M, Al Hashami S, Lozano M, Bah A, Keith P. Role of therapeutic plasma"
    " exchange in the management of COVID-19-induced cytokine storm syndrome. Transfus Apher"
    " Sci 2022;61(4):103433.",
    "[REF]": "[reference.md](reference.md), 'Adsorbers and filters'"
    " (the project's reference figures).",
}


@dataclass(frozen=True, slots=True)
class Row:
    spec: Spec
    model: float

    @property
    def status(self) -> str:
        band = self.spec.band
        if band is None:
            return "n/c"
        return "pass" if band[0] <= self.model <= band[1] else "FAIL"

    def as_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "key": s.key,
            "group": s.group,
            "case": s.case,
            "published": s.published,
            "source": s.source,
            "band": list(s.band) if s.band else None,
            "unit": s.unit,
            "model": round(self.model, 3),
            "status": self.status,
            "fast": s.fast,
            "note": s.note,
        }


def rows(results: dict[str, Result]) -> list[Row]:
    return [Row(s, results[s.experiment][s.measure]) for s in SPECS if s.experiment in results]


def fmt(value: float, unit: str) -> str:
    if unit in ("mg", "min", "mL"):
        return f"{value:.0f} {unit}"
    if unit in ("%",):
        return f"{value:.1f} %"
    return f"{value:.2f} {unit}"


def markdown_table(table: list[Row]) -> str:
    lines = [
        "| case | published (source) | band | model | result |",
        "|---|---|---|---|---|",
    ]
    group = None
    for r in table:
        s = r.spec
        if s.group != group:
            group = s.group
            lines.append(f"| **{group}** | | | | |")
        band = f"{fmt(s.band[0], s.unit)} .. {fmt(s.band[1], s.unit)}" if s.band else "-"
        fast = " (fast)" if s.fast else ""
        lines.append(
            f"| {s.case}{fast} | {s.published} {s.source} | {band} | {fmt(r.model, s.unit)}"
            f" | {r.status} |"
        )
    return "\n".join(lines)


def notes(table: list[Row]) -> str:
    """One line per note, naming the rows it is about (several rows often share one)."""
    by_note: dict[str, list[Row]] = {}
    for r in table:
        if r.spec.note:
            by_note.setdefault(r.spec.note, []).append(r)
    out = []
    for note, about in by_note.items():
        cases = "; ".join(f"{r.spec.case} ({r.status})" for r in about)
        out.append(f"- **{cases}**: {note}")
    return "\n".join(out)


def parameters() -> str:
    """The kinetic parameters as the code holds them (so the page cannot drift from it)."""
    pv = clinical.plasma_volume_ml(70.0, 0.30)
    solutes = (kinetics.il6(500.0), kinetics.bilirubin(420.0), kinetics.albumin(30.0))
    lines = [
        "| solute | extravascular pool | exchange | generation | endogenous clearance |"
        " sieving (fresh) |",
        "|---|---|---|---|---|---|",
    ]
    for s in solutes:
        lines.append(
            f"| {s.name} ({s.unit}) | {s.extravascular_pv:g} PV | {100 * s.exchange_per_h:g} %"
            f" of PV per h ({s.exchange_per_h * pv / 60:.1f} mL/min at 70 kg) |"
            f" {s.generation_per_min:.4g} {s.unit} x mL/min | {s.clearance_ml_min:.3g} mL/min"
            f" | {s.sieving:g} |"
        )
    lines += [
        "",
        "| column | solute | fresh single-pass extraction | at flow | half load (capacity) |",
        "|---|---|---|---|---|",
    ]
    for s in solutes:
        for column, b in s.binding.items():
            lines.append(
                f"| {column} | {s.name} | {b.extraction:g} | {b.ref_flow_ml_min:g} mL/min |"
                f" {b.half_load:.3g} {s.unit} x mL |"
            )
    lines.append("")
    lines.append(
        f"Membrane fouling: every sieving coefficient x exp(-filtrate /"
        f" {kinetics.FOULING_FILTRATE_ML / 1000:.1f} L)."
    )
    return "\n".join(lines)


def references() -> str:
    return "\n".join(f"- {k} {v}" for k, v in REFERENCES.items())


def render(table: list[Row]) -> str:
    """docs/validation.md: deterministic, from the rows and the code's parameters only."""
    counts = {k: sum(r.status == k for r in table) for k in ("pass", "FAIL", "n/c")}
    summary = (
        f"{len(table)} rows: {counts['pass']} inside their band, {counts['FAIL']} outside,"
        f" {counts['n/c']} not comparable (each says why)."
    )
    text = TEMPLATE.read_text()
    for name, value in {
        "summary": summary,
        "table": markdown_table(table),
        "notes": notes(table),
        "parameters": parameters(),
        "references": references(),
    }.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def table_from_cache(cache: dict[str, Any]) -> list[Row]:
    values = {r["key"]: r["model"] for r in cache["rows"]}
    return [Row(s, values[s.key]) for s in SPECS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the rows marked fast")
    parser.add_argument("--write", action="store_true", help="write docs/validation.md/json")
    args = parser.parse_args()
    start = time.perf_counter()
    results, wall = run_experiments(fast_only=args.fast)
    table = rows(results)
    total = round(time.perf_counter() - start, 1)
    if args.write:
        if args.fast:
            parser.error("--write needs every row: run without --fast")
        cache = {"rows": [r.as_json() for r in table]}
        CACHE.write_text(json.dumps(cache, indent=1) + "\n")
        DOC.write_text(render(table_from_cache(cache)))
    print(
        json.dumps(
            {
                "bench": "validation",
                "machine": {"python": platform.python_version(), "cpu": platform.machine()},
                "wall_s": total,
                "wall_s_per_experiment": wall,
                "rows": [r.as_json() for r in table],
            },
            indent=1,
        )
    )
    print()
    print(markdown_table(table))


if __name__ == "__main__":
    main()
