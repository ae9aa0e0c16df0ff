"""Circuit and patient physics of the simulated rig (SPEC sections 2 and 3).

Every volume moves from one named place to another in the same step, so the sum of all
volumes (patient, bags, chambers, syringe, spill) is conserved up to float rounding: the
simulator's truth can be audited. Solutes are tracked as amounts (concentration x mL) for
the same reason. Pressures are algebraic functions of the actual flows and of slowly growing
fouling terms; the patient's MAP and the plasma temperature are first-order lags.

Flows are mL/min at the edges (as commanded) and mL/s inside `step`. Scales read grams with
a density of 1.0 g/mL for every fluid (documented in docs/simulator.md).

`step` is the hot path (hundreds of thousands of calls per simulated treatment), so it is
written flat with locals and `__slots__`; noise is only drawn when a sample is read.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from controller import sizing
from controller.config.prescription import Prescription
from controller.config.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES, RigConfig

# pump indices, in PUMP_NAMES order
BLOOD, PLASMA, REPLACEMENT, LOOP, FILTRATE, SUBSTITUTION, RETURN, HEPARIN = range(8)
PUMP_INDEX = {name: i for i, name in enumerate(PUMP_NAMES)}
PRESSURE_INDEX = {name: i for i, name in enumerate(PRESSURE_NAMES)}
SOLUTES = ("il6", "bilirubin")
ADSORBER_NAMES = ("resin", "anion_resin", "charcoal")
#: Largest fraction of blood flow the separator can take as plasma (it cannot take cells).
MAX_SEPARATION = 0.45
#: Inner -> outer one-way valve conductance, 1/s: flow = k x (inner - outer) when positive.
VALVE_K_PER_S = 0.1
OVERSPEED_FACTOR = 1.3
#: Encoder resolution, mL per count: peristaltic pumps, and the syringe's lead screw.
ENCODER_ML = [1e-4] * 7 + [1e-6]
PRESSURE_NOISE_MMHG = 0.8


@dataclass(frozen=True, slots=True)
class SoluteParams:
    """One plasma solute. Units: concentration in its clinical unit, amounts in unit x mL."""

    name: str
    unit: str
    initial: float
    #: extravascular pool as a multiple of plasma volume, and the clearance between them
    extravascular_pv: float
    intercompartment_ml_min: float
    #: endogenous elimination, 1/min; generation keeps the initial level in steady state
    elimination_per_min: float
    extra_generation_per_min: float
    #: hemofilter sieving coefficient (fresh membrane) and adsorber first-pass extraction
    sieving: float
    extraction: dict[str, float]
    #: adsorber capacity (amount) after which it captures nothing
    capacity: dict[str, float]


def default_solutes(il6: float = 500.0, bilirubin: float = 400.0) -> tuple[SoluteParams, ...]:
    """IL-6 (pg/mL, free, small) and bilirubin (umol/L, albumin-bound), REFERENCE.md figures."""
    return (
        SoluteParams(
            name="il6",
            unit="pg/mL",
            initial=il6,
            extravascular_pv=1.0,
            intercompartment_ml_min=10.0,
            elimination_per_min=0.005,
            extra_generation_per_min=0.0,
            sieving=0.4,
            extraction={"resin": 0.6, "anion_resin": 0.05, "charcoal": 0.1},
            capacity={"resin": 2.0e7, "anion_resin": 1.0e6, "charcoal": 2.0e6},
        ),
        SoluteParams(
            name="bilirubin",
            unit="umol/L",
            initial=bilirubin,
            extravascular_pv=1.5,
            intercompartment_ml_min=1.0,
            elimination_per_min=0.0,
            # a failing liver: production not cleared, about 0.05 umol/min (~ 40 mg/day)
            extra_generation_per_min=50.0,
            sieving=0.1,
            extraction={"resin": 0.3, "anion_resin": 0.9, "charcoal": 0.4},
            # umol/L x mL = nmol; anion resin about 1.5 mmol (~ 0.9 g) before it is spent
            capacity={"resin": 4.0e5, "anion_resin": 1.5e6, "charcoal": 5.0e5},
        ),
    )


def confined_solute(name: str = "marker", initial: float = 100.0) -> SoluteParams:
    """A solute confined to plasma, neither made nor cleared: the exp(-V/PV) reference."""
    return SoluteParams(
        name=name,
        unit="a.u.",
        initial=initial,
        extravascular_pv=0.0,
        intercompartment_ml_min=0.0,
        elimination_per_min=0.0,
        extra_generation_per_min=0.0,
        sieving=0.0,
        extraction={},
        capacity={},
    )


@dataclass(slots=True)
class PhysicsParams:
    weight_kg: float = 70.0
    hematocrit: float = 0.30
    map_baseline_mmhg: float = 80.0
    #: mmHg of MAP per mL of net fluid gained (negative balance lowers MAP)
    map_per_ml: float = 0.02
    #: mmHg of MAP lost per mL/min of blood drawn into the circuit
    map_per_blood_flow: float = 0.02
    map_tau_s: float = 30.0
    warmer_c: float = 37.0
    temp_tau_s: float = 20.0
    replacement_bag_ml: float = 5000.0
    substitution_bag_ml: float = 5000.0
    waste_capacity_ml: float = 10000.0
    chamber_capacity_ml: float = 2000.0
    heparin_syringe_ml: float = 50.0
    #: fixed extracorporeal volumes, primed before connection (they never change)
    blood_circuit_ml: float = 180.0
    loop_circuit_ml: float = 250.0
    adsorbers: tuple[str, ...] = ADSORBER_NAMES
    #: separator TMP rise with time on a clean membrane, mmHg/min
    separator_fouling_mmhg_min: float = 0.01
    seed: int = 0
    solutes: tuple[SoluteParams, ...] = field(default_factory=default_solutes)


class Physics:
    """The circuit and the patient. Mutable fault knobs are plain attributes."""

    __slots__ = (
        "_adsorbers",
        "_capacity",
        "_extraction",
        "_gen",
        "_kel",
        "_kev",
        "_rng",
        "_sieving",
        "access_occlusion",
        "adsorber_bound",
        "adsorber_clot_mmhg",
        "adsorber_clot_rate",
        "air_return",
        "blood_leak",
        "commanded",
        "ev_amount",
        "ev_volume_ml",
        "filter_clot_mmhg",
        "filter_clot_rate",
        "flow",
        "hypotension_mmhg",
        "inner_amount",
        "map_mmhg",
        "needle_out_mmhg",
        "outer_amount",
        "outside_ml",
        "params",
        "patient_amount",
        "plasma_temp_c",
        "pressures",
        "pump_factor",
        "pumped_ml",
        "removed_amount",
        "return_disconnected",
        "return_occlusion",
        "rotor_ml",
        "scale_drift_g_s",
        "scale_offset_g",
        "separator_fouling_mmhg",
        "separator_fouling_rate",
        "t_s",
        "temp_offset_c",
        "valve_collect",
        "valve_open",
        "volumes",
        "waste_amount",
    )

    def __init__(self, params: PhysicsParams | None = None) -> None:
        p = params or PhysicsParams()
        self.params = p
        self._rng = random.Random(p.seed)
        pv = sizing.plasma_volume_ml(p.weight_kg, p.hematocrit)
        #: volumes in mL; "patient" is the patient's plasma water that exchanges with the rig
        self.volumes: dict[str, float] = {
            "patient": pv,
            "replacement_bag": p.replacement_bag_ml,
            "waste_bag": 0.0,
            "substitution_bag": p.substitution_bag_ml,
            "outer_chamber": 0.0,
            "inner_chamber": 0.0,
            "heparin_syringe": p.heparin_syringe_ml,
            "blood_circuit": p.blood_circuit_ml,
            "loop_circuit": p.loop_circuit_ml,
            "spill": 0.0,
        }
        #: volume put in or taken out by faults that stand for the operator (a bag removed);
        #: counted so the audit stays exact
        self.outside_ml = 0.0
        self.t_s = 0.0
        self.commanded = [0.0] * len(PUMP_NAMES)
        self.pump_factor = [1.0] * len(PUMP_NAMES)
        self.flow = [0.0] * len(PUMP_NAMES)  # actual mL/min of the last step
        #: fluid each pump really moved since the start (truth for the accounting tests)
        self.pumped_ml = [0.0] * len(PUMP_NAMES)
        #: volume each rotor displaced (mL), what its encoder counts, fluid behind it or not
        self.rotor_ml = [0.0] * len(PUMP_NAMES)
        self.valve_collect = False
        self.valve_open = False
        self.pressures = [0.0] * len(PRESSURE_NAMES)
        self.map_mmhg = p.map_baseline_mmhg
        self.plasma_temp_c = p.warmer_c
        # fault knobs
        self.air_return = False
        self.blood_leak = False
        self.return_disconnected = False
        #: return needle out of the vein: blood lost, return pressure only this much lower
        self.needle_out_mmhg = 0.0
        self.return_occlusion = 0.0
        self.access_occlusion = 0.0
        self.separator_fouling_mmhg = 0.0
        self.separator_fouling_rate = p.separator_fouling_mmhg_min / 60.0
        self.adsorber_clot_mmhg = 0.0
        self.adsorber_clot_rate = 0.0
        self.filter_clot_mmhg = 0.0
        self.filter_clot_rate = 0.0
        self.hypotension_mmhg = 0.0
        self.temp_offset_c = 0.0
        self.scale_offset_g = dict.fromkeys(SCALE_NAMES, 0.0)
        self.scale_drift_g_s = dict.fromkeys(SCALE_NAMES, 0.0)
        # solutes, as amounts
        solutes = p.solutes
        self._adsorbers = tuple(a for a in p.adsorbers if a in ADSORBER_NAMES)
        self.ev_volume_ml = [s.extravascular_pv * pv for s in solutes]
        self.patient_amount = [s.initial * pv for s in solutes]
        self.ev_amount = [s.initial * s.extravascular_pv * pv for s in solutes]
        self.outer_amount = [0.0] * len(solutes)
        self.inner_amount = [0.0] * len(solutes)
        self.waste_amount = [0.0] * len(solutes)
        #: amount cleared by the body (elimination) minus amount generated
        self.removed_amount = [0.0] * len(solutes)
        self.adsorber_bound = [[0.0] * len(self._adsorbers) for _ in solutes]
        self._kel = [s.elimination_per_min / 60.0 for s in solutes]
        self._kev = [s.intercompartment_ml_min / 60.0 for s in solutes]
        self._gen = [
            (s.elimination_per_min * s.initial * pv + s.extra_generation_per_min) / 60.0
            for s in solutes
        ]
        self._sieving = [s.sieving for s in solutes]
        self._extraction = [[s.extraction.get(a, 0.0) for a in self._adsorbers] for s in solutes]
        self._capacity = [[s.capacity.get(a, math.inf) for a in self._adsorbers] for s in solutes]
        self.update_pressures()

    # -- actuators ----------------------------------------------------------------------
    def set_pump(self, name: str, rate_ml_min: float) -> None:
        self.commanded[PUMP_INDEX[name]] = rate_ml_min

    def set_valve(self, name: str, position: str) -> None:
        if name == "plasma_route":
            self.valve_collect = position == "collect"
        elif name == "venous_clamp":
            self.valve_open = position == "open"
        else:
            raise KeyError(name)

    # -- integration --------------------------------------------------------------------
    def step(self, dt_s: float) -> None:
        """Advance `dt_s` seconds with the flows held constant."""
        if dt_s <= 0.0:
            return
        v = self.volumes
        cmd = self.commanded
        fac = self.pump_factor
        flow = self.flow
        before = (v["patient"], v["outer_chamber"], v["inner_chamber"])
        # actual pump flows, mL/min: what the rotor turns at
        rotor = self.rotor_ml
        k = dt_s / 60.0
        for i in range(8):
            flow[i] = cmd[i] * fac[i]
        for i in range(7):
            rotor[i] += flow[i] * k
        rotor[HEPARIN] += flow[HEPARIN] * k / 60.0  # heparin is mL/h
        qb = flow[BLOOD]
        if not self.valve_open:
            # the clamp is closed: nothing reaches the patient through the return line
            qb = 0.0
        qp = min(flow[PLASMA], qb * MAX_SEPARATION)
        # volumes moved this step, limited by what the source holds
        vp = qp * k
        vr = min(flow[REPLACEMENT] * k, v["replacement_bag"]) if qb > 0.0 else 0.0
        vl = min(flow[LOOP] * k, v["outer_chamber"])
        vf = min(flow[FILTRATE] * k, 0.5 * vl)
        vs = min(flow[SUBSTITUTION] * k, v["substitution_bag"]) if vl > 0.0 else 0.0
        vret = min(flow[RETURN] * k, v["inner_chamber"]) if qb > 0.0 else 0.0
        vh = min(flow[HEPARIN] * k / 60.0, v["heparin_syringe"])  # heparin is mL/h
        pumped = self.pumped_ml
        pumped[BLOOD] += qb * k
        pumped[PLASMA] += vp
        pumped[REPLACEMENT] += vr
        pumped[LOOP] += vl
        pumped[FILTRATE] += vf
        pumped[SUBSTITUTION] += vs
        pumped[RETURN] += vret
        pumped[HEPARIN] += vh
        # the patient loses plasma, gets replacement, return and heparin back
        into_patient = vr + vret + vh
        v["patient"] -= vp
        if self.return_disconnected or self.needle_out_mmhg > 0.0:
            v["spill"] += into_patient
            v["patient"] -= qb * k - vp  # blood cells and plasma leave through the open line
            v["spill"] += qb * k - vp
        else:
            v["patient"] += into_patient
        v["replacement_bag"] -= vr
        v["substitution_bag"] -= vs
        v["heparin_syringe"] -= vh
        if self.valve_collect:
            v["outer_chamber"] += vp
        else:
            v["waste_bag"] += vp
        v["outer_chamber"] -= vl
        v["waste_bag"] += vf
        into_inner = vl - vf + vs
        v["inner_chamber"] += into_inner - vret
        diff = v["inner_chamber"] - v["outer_chamber"]
        vv = min(diff * VALVE_K_PER_S * dt_s, diff * 0.5) if diff > 0.0 else 0.0
        v["inner_chamber"] -= vv
        v["outer_chamber"] += vv
        self._solutes(dt_s, before, vp, vl, vf, vret, vv)
        # slow processes
        self.separator_fouling_mmhg += self.separator_fouling_rate * dt_s * (qb > 0.0)
        self.adsorber_clot_mmhg += self.adsorber_clot_rate * dt_s
        self.filter_clot_mmhg += self.filter_clot_rate * dt_s
        for name, rate in self.scale_drift_g_s.items():
            if rate:
                self.scale_offset_g[name] += rate * dt_s
        p = self.params
        target_map = (
            p.map_baseline_mmhg
            + p.map_per_ml * (v["patient"] - self._pv0())
            - p.map_per_blood_flow * qb
            - self.hypotension_mmhg
        )
        self.map_mmhg += (target_map - self.map_mmhg) * min(1.0, dt_s / p.map_tau_s)
        target_t = p.warmer_c + self.temp_offset_c
        self.plasma_temp_c += (target_t - self.plasma_temp_c) * min(1.0, dt_s / p.temp_tau_s)
        self.t_s += dt_s
        self.update_pressures()

    def _pv0(self) -> float:
        return sizing.plasma_volume_ml(self.params.weight_kg, self.params.hematocrit)

    def _solutes(
        self,
        dt_s: float,
        before: tuple[float, float, float],
        vp: float,
        vl: float,
        vf: float,
        vret: float,
        vv: float,
    ) -> None:
        """Move solute amounts with the volumes, at the concentrations the step began with."""
        pv_before, outer_before, inner_before = before
        collect = self.valve_collect
        lost = self.return_disconnected or self.needle_out_mmhg > 0.0
        for j in range(len(self.patient_amount)):
            mp = self.patient_amount[j]
            cp = mp / pv_before if pv_before > 0.0 else 0.0
            mo = self.outer_amount[j]
            co = mo / outer_before if outer_before > 1e-9 else 0.0
            mi = self.inner_amount[j]
            ci = mi / inner_before if inner_before > 1e-9 else 0.0
            out_plasma = cp * vp
            # loop: outer -> filter (filtrate off) -> adsorbers in series -> inner
            loop_in = co * vl
            to_filtrate = min(loop_in, self._sieving[j] * co * vf)
            m = loop_in - to_filtrate
            bound = self.adsorber_bound[j]
            ext = self._extraction[j]
            cap = self._capacity[j]
            for a in range(len(bound)):
                e = ext[a] * max(0.0, 1.0 - bound[a] / cap[a])
                taken = e * m
                bound[a] += taken
                m -= taken
            back = ci * vv
            returned = ci * vret
            # extravascular exchange, generation and elimination on the patient side
            cev = self.ev_amount[j] / self.ev_volume_ml[j] if self.ev_volume_ml[j] else 0.0
            exchange = self._kev[j] * (cev - cp) * dt_s
            made = self._gen[j] * dt_s
            cleared = self._kel[j] * mp * dt_s
            self.ev_amount[j] -= exchange
            self.patient_amount[j] = (
                mp - out_plasma + exchange + made - cleared + (0.0 if lost else returned)
            )
            self.removed_amount[j] += cleared - made + (returned if lost else 0.0)
            if collect:
                self.outer_amount[j] = mo - loop_in + out_plasma + back
            else:
                self.outer_amount[j] = mo - loop_in + back
                self.waste_amount[j] += out_plasma
            self.waste_amount[j] += to_filtrate
            self.inner_amount[j] = mi + m - back - returned

    def update_pressures(self) -> None:
        """Pressures from the pumps' speeds and the fault knobs, as they are right now."""
        f = self.flow
        cmd = self.commanded
        fac = self.pump_factor
        for i in range(8):
            f[i] = cmd[i] * fac[i]
        qb = f[BLOOD]
        ps = self.pressures
        # access: negative, falling with blood flow; an occlusion pulls it towards -280
        access = -15.0 - 0.9 * qb
        access += self.access_occlusion * (-280.0 - access)
        qret = qb - f[PLASMA] + f[REPLACEMENT] + f[RETURN] if qb > 0.0 else 0.0
        if self.return_disconnected:
            ret = 2.0 + 0.02 * qret
        elif not self.valve_open and qb > 0.0:
            ret = 500.0  # pumping against the closed clamp
        else:
            ret = 15.0 + 0.5 * qret
            ret += self.return_occlusion * (450.0 - ret)
            ret -= self.needle_out_mmhg
        fraction = f[PLASMA] / qb if qb > 0.0 else 0.0
        tmp = (8.0 + 80.0 * fraction) * (qb > 0.0) + self.separator_fouling_mmhg
        pre_sep = ret + 0.35 * qb
        plasma = (pre_sep + ret) / 2.0 - tmp
        ql = f[LOOP]
        post_ads = 5.0 + 0.02 * ql
        dp_ads = 0.08 * ql * len(self._adsorbers) + self.adsorber_clot_mmhg * (ql > 0.0)
        pre_ads = post_ads + dp_ads
        pre_filter = pre_ads + 0.1 * ql + self.filter_clot_mmhg * (ql > 0.0)
        filter_tmp = (20.0 + 1.5 * f[FILTRATE]) * (ql > 0.0) + self.filter_clot_mmhg
        filtrate = (pre_filter + pre_ads) / 2.0 - filter_tmp
        ps[0] = access
        ps[1] = pre_sep
        ps[2] = plasma
        ps[3] = ret
        ps[4] = pre_filter
        ps[5] = filtrate
        ps[6] = pre_ads
        ps[7] = post_ads

    # -- readings -----------------------------------------------------------------------
    def pressure(self, name: str) -> float:
        """Noise-free pressure: what the firmware's protective comparisons use."""
        return self.pressures[PRESSURE_INDEX[name]]

    def pressure_sample(self, name: str) -> float:
        return self.pressures[PRESSURE_INDEX[name]] + self._rng.gauss(0.0, PRESSURE_NOISE_MMHG)

    def map_sample(self) -> float:
        """The patient monitor's MAP, with its own small noise."""
        return self.map_mmhg + self._rng.gauss(0.0, 0.3)

    def temp_sample(self) -> float:
        return self.plasma_temp_c + self._rng.gauss(0.0, 0.02)

    def measured_flow(self, name: str) -> float:
        """The rotor's speed now (mL/min; heparin mL/h), as its encoder would show it."""
        return self.commanded[PUMP_INDEX[name]] * self.pump_factor[PUMP_INDEX[name]]

    def scale_g(self, name: str) -> float:
        return self.volumes[name] + self.scale_offset_g[name]

    # -- truth, for tests, the summary and docs -----------------------------------------
    def total_volume_ml(self) -> float:
        """Every place fluid can be, minus what faults put in from outside: constant."""
        return sum(self.volumes.values()) - self.outside_ml

    def concentration(self, solute: str) -> float:
        j = [s.name for s in self.params.solutes].index(solute)
        return self.patient_amount[j] / self.volumes["patient"]

    def removal_fraction(self, solute: str) -> float:
        """Fraction removed since the start; 0 for a solute that started at 0 (a rig file
        may set a simulated level to 0: nothing to remove, not a division by zero)."""
        j = [s.name for s in self.params.solutes].index(solute)
        initial = self.params.solutes[j].initial
        return 1.0 - self.concentration(solute) / initial if initial else 0.0


def physics_for(rig: RigConfig, prescription: Prescription | None = None) -> Physics:
    """The simulated rig and patient that a rig file and a prescription describe."""
    sim = rig.sim
    params = PhysicsParams(
        map_baseline_mmhg=sim.map_baseline_mmhg,
        substitution_bag_ml=sim.substitution_bag_ml,
        waste_capacity_ml=sim.waste_bag_capacity_ml,
        seed=sim.seed,
        solutes=default_solutes(sim.il6_pg_ml, sim.bilirubin_umol_l),
    )
    if prescription is not None:
        params.weight_kg = prescription.patient.weight_kg
        params.hematocrit = prescription.patient.hematocrit
        params.replacement_bag_ml = prescription.replacement.bag_volume_ml
        params.adsorbers = prescription.adsorber_train
    return Physics(params)
