"""What the simulated patient's solutes and the adsorber columns are made of: parameters only.

Each solute lives in two pools (plasma and an extravascular pool that exchanges with it), is
made and cleared by the body, passes the hemofilter by its sieving coefficient and binds to
each column by a capacity and an affinity. The values, their sources and the reasoning are in
docs/validation.md, which `bench/validation.py` generates and checks against published
figures; where a number is an estimate it says so there. `physics.py` turns these into the
per-step arithmetic.

Units: a solute's concentration is in its clinical unit, amounts are concentration x mL
(umol/L x mL = nmol of bilirubin, pg/mL x mL = pg of IL-6, g/L x mL = mg of albumin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ADSORBER_NAMES = ("resin", "anion_resin", "charcoal")

#: Albumin escapes from plasma at this fraction of the intravascular pool per hour in
#: untreated cirrhosis (Henriksen & Schlichting, Scand J Clin Lab Invest 1981: 8.5 %/h,
#: normal 5.9 %/h); albumin-bound solutes (bilirubin) exchange with the tissues at this pace.
ALBUMIN_ESCAPE_PER_H = 0.085
#: Extravascular albumin as a multiple of the intravascular pool: about 60 % of the
#: exchangeable albumin is outside the vessels (Rothschild, Oratz & Schreiber, Hepatology 1988).
ALBUMIN_EXTRAVASCULAR_PV = 1.5
#: Bilirubin's extravascular pool: albumin's 1.5 PV plus bilirubin held by the tissues
#: (skin, fat; deep jaundice stains them), and its exchange with plasma: albumin's escape
#: rate is only the floor, free bilirubin crosses capillaries and cells as well (and its free
#: fraction climbs as the bilirubin:albumin ratio nears 1). Both fitted so that a 10 h
#: membrane session lowers bilirubin by the published 29 % (docs/validation.md): estimates.
BILIRUBIN_EXTRAVASCULAR_PV = 3.0
BILIRUBIN_EXCHANGE_PER_H = 0.40
#: Normal bilirubin production, ~0.5 mmol/day (docs/reference.md: 250-350 mg/day, mostly from haem),
#: in nmol/min (= umol/L x mL per min).
BILIRUBIN_PRODUCTION_NMOL_MIN = 500_000 / 1440
#: Membrane fouling: the albumin sieving of a secondary plasma separator fell from 0.30 to 0.13
#: over 10 h at 2 L/h of filtrate (docs/reference.md, selective albumin exchange), i.e. by e-fold
#: per ~24 L of filtrate. Every solute's sieving is scaled by the same factor.
FOULING_FILTRATE_ML = 20_000 / math.log(0.30 / 0.13)


@dataclass(frozen=True, slots=True)
class Binding:
    """One solute on one column: an affinity and a capacity.

    Single-pass extraction at column flow Q is `(1 - exp(-k/Q)) / (1 + bound/half_load)`.
    The mass-transfer conductance `k` (mL/min) is the affinity (a packed bed with a linear
    driving force: more residence time, more extraction); it is given as the extraction of a
    fresh column at a reference flow, the way columns are measured. The capacity is the
    amount bound at which extraction has halved: saturation follows the amount bound,
    whatever the feed concentration, and falls hyperbolically (sites of graded affinity, no
    sharp end; the BR-350 curve's slow tail, docs/validation.md). Nothing desorbs.
    """

    extraction: float
    half_load: float
    ref_flow_ml_min: float = 32.5

    @property
    def conductance_ml_min(self) -> float:
        return -math.log(1.0 - self.extraction) * self.ref_flow_ml_min

    def fresh_extraction(self, flow_ml_min: float) -> float:
        if flow_ml_min <= 0.0:
            return 0.0
        return 1.0 - math.exp(-self.conductance_ml_min / flow_ml_min)


@dataclass(frozen=True, slots=True)
class SoluteParams:
    """One plasma solute in its two pools, with the circuit's effect on it."""

    name: str
    unit: str
    initial: float
    #: extravascular pool as a multiple of the plasma volume (0: confined to plasma)
    extravascular_pv: float = 0.0
    #: plasma <-> extravascular clearance as a fraction of the plasma volume per hour
    exchange_per_h: float = 0.0
    #: made into plasma (amount/min) and cleared from plasma (mL/min) by the body
    generation_per_min: float = 0.0
    clearance_ml_min: float = 0.0
    #: hemofilter sieving coefficient on a fresh membrane
    sieving: float = 0.0
    #: binding per adsorber column (absent: the column does not bind it)
    binding: dict[str, Binding] = field(default_factory=dict)


def bilirubin(initial: float = 400.0) -> SoluteParams:
    """Total bilirubin (umol/L): albumin-bound in plasma, also held by the tissues.

    The body is in steady state at the starting level: production at the normal rate and a
    residual clearance (liver and kidney) that just matches it, ~0.8 mL/min at 420 umol/L
    against ~35 mL/min for a healthy liver at 10 umol/L.
    """
    return SoluteParams(
        name="bilirubin",
        unit="umol/L",
        initial=initial,
        extravascular_pv=BILIRUBIN_EXTRAVASCULAR_PV,
        exchange_per_h=BILIRUBIN_EXCHANGE_PER_H,
        generation_per_min=BILIRUBIN_PRODUCTION_NMOL_MIN,
        clearance_ml_min=BILIRUBIN_PRODUCTION_NMOL_MIN / initial if initial > 0 else 0.0,
        # bound to albumin: passes the membrane as albumin does (docs/reference.md: filtrate
        # bilirubin/albumin ratio as in plasma, albumin sieving 0.30 on a fresh membrane)
        sieving=0.30,
        binding={
            # BR-350 / BS330 class: 92 % fresh at 32.5 mL/min, halved after 0.18 mmol: the
            # published curve and 143 mg/session together (docs/validation.md)
            "anion_resin": Binding(extraction=0.92, half_load=1.8e5),
            # neutral macroporous resin and charcoal take some albumin-bound bilirubin:
            # estimates, no column-level measurement found
            "resin": Binding(extraction=0.30, half_load=0.6e5),
            "charcoal": Binding(extraction=0.30, half_load=0.6e5),
        },
    )


def il6(initial: float = 500.0) -> SoluteParams:
    """Interleukin-6 (pg/mL): a 21-26 kDa protein made fast and cleared fast.

    Estimates (docs/validation.md): interstitial pool 1 PV exchanging at 20 %/h; endogenous
    clearance 25 mL/min (a plasma half-life of ~1.5 h); production keeps the starting level,
    as in a cytokine storm's plateau, where extracorporeal clearance barely moves the level
    (Stadlbauer et al., Crit Care 2006).
    """
    clearance = 25.0
    return SoluteParams(
        name="il6",
        unit="pg/mL",
        initial=initial,
        extravascular_pv=1.0,
        exchange_per_h=0.20,
        generation_per_min=clearance * initial,
        clearance_ml_min=clearance,
        sieving=0.6,
        binding={
            # neutral resin (HA330 class) is the cytokine adsorber; capacity far above a
            # session's load (the patient holds ~3 ug): estimates
            "resin": Binding(extraction=0.5, half_load=1.0e8),
            "anion_resin": Binding(extraction=0.05, half_load=1.0e7),
            "charcoal": Binding(extraction=0.1, half_load=1.0e7),
        },
    )


def albumin(initial: float = 30.0) -> SoluteParams:
    """Albumin (g/L), for the albumin a circuit costs the patient (not a default solute).

    Synthesis and catabolism (half-life ~3 weeks) are negligible within a session. The
    columns bind about 1 g each (docs/validation.md: albumin left in DPMAS columns after
    the plasma in them was returned).
    """
    return SoluteParams(
        name="albumin",
        unit="g/L",
        initial=initial,
        extravascular_pv=ALBUMIN_EXTRAVASCULAR_PV,
        exchange_per_h=ALBUMIN_ESCAPE_PER_H,
        sieving=0.30,
        binding={
            "resin": Binding(extraction=0.01, half_load=300.0),
            "anion_resin": Binding(extraction=0.01, half_load=300.0),
        },
    )


def default_solutes(
    il6_pg_ml: float = 500.0, bilirubin_umol_l: float = 400.0
) -> tuple[SoluteParams, ...]:
    return (il6(il6_pg_ml), bilirubin(bilirubin_umol_l))


def confined_solute(name: str = "marker", initial: float = 100.0) -> SoluteParams:
    """A solute confined to plasma, neither made nor cleared: the exp(-V/PV) reference."""
    return SoluteParams(name=name, unit="a.u.", initial=initial)
