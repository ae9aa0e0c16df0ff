"""Circuit and patient physics of the simulated rig (docs/spec.md sections 2 and 3).

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
from itertools import repeat
from operator import add, itemgetter, mul

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES
from firmware_sim.kinetics import (
    ADSORBER_NAMES,
    FOULING_FILTRATE_ML,
    SoluteParams,
    confined_solute,  # noqa: F401 (re-exported: the exp(-V/PV) reference of the tests)
    default_solutes,
)

# pump indices, in PUMP_NAMES order
BLOOD, PLASMA, REPLACEMENT, LOOP, FILTRATE, SUBSTITUTION, RETURN, HEPARIN = range(8)
PUMP_INDEX = {name: i for i, name in enumerate(PUMP_NAMES)}
PRESSURE_INDEX = {name: i for i, name in enumerate(PRESSURE_NAMES)}
_TWO_PI = 2.0 * math.pi
#: the scales' entries of a dict keyed by place (volumes, offsets), in SCALE_NAMES order
_scales = itemgetter(*SCALE_NAMES)


def normals(rng: random.Random, n: int) -> list[float]:
    """`n` standard normal draws: the very numbers `n` calls of `rng.gauss(0.0, 1.0)` give,
    in that order, leaving `rng` as they would (CPython's Box-Muller pairs, the second of
    a pair kept for the next call), at a fraction of the cost. Every sample draws ten, and
    the simulated rig samples thousands of times a second of wall time: whole pairs in a
    plain loop, the odd one's partner kept."""
    # `gauss_next` is CPython's cached second value of a pair (random.py), not in typeshed
    z: float | None = rng.gauss_next  # type: ignore[attr-defined]  # see above
    rng.gauss_next = None  # type: ignore[attr-defined]  # see above
    out: list[float] = [] if z is None else [z]
    rand, log, sqrt, cos, sin = rng.random, math.log, math.sqrt, math.cos, math.sin
    pairs, odd = divmod(max(0, n - len(out)), 2)
    for _ in range(pairs):
        x2pi = rand() * _TWO_PI
        g2rad = sqrt(-2.0 * log(1.0 - rand()))
        out.append(cos(x2pi) * g2rad)
        out.append(sin(x2pi) * g2rad)
    if odd:
        x2pi = rand() * _TWO_PI
        g2rad = sqrt(-2.0 * log(1.0 - rand()))
        out.append(cos(x2pi) * g2rad)
        rng.gauss_next = sin(x2pi) * g2rad  # type: ignore[attr-defined]  # see above
    return out


#: Largest fraction of blood flow the separator can take as plasma (it cannot take cells).
MAX_SEPARATION = 0.45
#: Inner -> outer one-way valve conductance, 1/s: flow = k x (inner - outer) when positive.
VALVE_K_PER_S = 0.1
OVERSPEED_FACTOR = 1.3
#: Encoder resolution, mL per count: peristaltic pumps, and the syringe's lead screw.
ENCODER_ML = [1e-4] * 7 + [1e-6]
PRESSURE_NOISE_MMHG = 0.8


def patient_plasma_ml(weight_kg: float, hematocrit: float) -> float:
    """The simulated patient's plasma volume: blood 65 mL/kg, less its cells.

    Written here, not taken from the controller's estimator (controller/clinical.py): the
    patient is the truth the controller estimates, so a bug in the estimate shows as a
    difference from it instead of agreeing with itself.
    """
    blood_ml = 65.0 * weight_kg
    return blood_ml * (1.0 - hematocrit)


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
        "_cl",
        "_column_flow",
        "_conductance",
        "_e0",
        "_gen",
        "_inv_half_load",
        "_kex",
        "_rng",
        "_sieving",
        "_start_amount",
        "access_occlusion",
        "adsorber_bound",
        "adsorber_clot_mmhg",
        "adsorber_clot_rate",
        "air_return",
        "bag_valve_leak_k",
        "blood_leak",
        "clamp_stuck_open",
        "commanded",
        "encoder_blind",
        "ev_amount",
        "ev_volume_ml",
        "filter_clot_mmhg",
        "filter_clot_rate",
        "filter_ruptured",
        "flow",
        "fouling",
        "hypotension_max_mmhg",
        "hypotension_mmhg",
        "hypotension_rate",
        "inner_amount",
        "map_mmhg",
        "needle_out_mmhg",
        "outer_amount",
        "outside_ml",
        "params",
        "patient_amount",
        "plasma_temp_c",
        "pressure_drift",
        "pressure_offset",
        "pressures",
        "pump_factor",
        "pumped_ml",
        "removed_amount",
        "return_disconnected",
        "return_occlusion",
        "rotor_ml",
        "route_stuck",
        "scale_drift_g_s",
        "scale_offset_g",
        "separator_fouling_mmhg",
        "separator_fouling_rate",
        "solute_index",
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
        pv = patient_plasma_ml(p.weight_kg, p.hematocrit)
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
        #: a MAP that falls gradually (mmHg/s) down to a deepest drop
        self.hypotension_rate = 0.0
        self.hypotension_max_mmhg = 0.0
        #: a pump whose encoder counts its rotor, not what worn tubing really delivers
        self.encoder_blind = [False] * len(PUMP_NAMES)
        #: valves that do not move: the plasma route, the venous clamp (stays open)
        self.route_stuck = False
        self.clamp_stuck_open = False
        #: the bag's one-way valve lets plasma back from the outer to the inner chamber
        self.bag_valve_leak_k = 0.0
        #: a torn hemofilter membrane: plasma, proteins and all, goes to the filtrate
        self.filter_ruptured = False
        #: pressure sensors drifting (mmHg/s) and how far they have drifted (mmHg)
        self.pressure_drift = [0.0] * len(PRESSURE_NAMES)
        self.pressure_offset = [0.0] * len(PRESSURE_NAMES)
        self.temp_offset_c = 0.0
        self.scale_offset_g = dict.fromkeys(SCALE_NAMES, 0.0)
        self.scale_drift_g_s = dict.fromkeys(SCALE_NAMES, 0.0)
        # solutes, as amounts (docs/simulator.md, "Patient")
        solutes = p.solutes
        self.solute_index = {s.name: j for j, s in enumerate(solutes)}
        self._adsorbers = tuple(a for a in p.adsorbers if a in ADSORBER_NAMES)
        self.ev_volume_ml = [s.extravascular_pv * pv for s in solutes]
        self.patient_amount = [s.initial * pv for s in solutes]
        self.ev_amount = [s.initial * s.extravascular_pv * pv for s in solutes]
        self.outer_amount = [0.0] * len(solutes)
        self.inner_amount = [0.0] * len(solutes)
        self.waste_amount = [0.0] * len(solutes)
        #: amount cleared by the body minus amount it made, plus what a lost line spilled
        self.removed_amount = [0.0] * len(solutes)
        #: amount bound on each column (solute x column), a place of the solute audit
        self.adsorber_bound = [[0.0] * len(self._adsorbers) for _ in solutes]
        self._start_amount = [
            m + e for m, e in zip(self.patient_amount, self.ev_amount, strict=True)
        ]
        self._kex = [s.exchange_per_h * pv / 3600.0 for s in solutes]  # mL/s
        self._gen = [s.generation_per_min / 60.0 for s in solutes]  # amount/s
        self._cl = [s.clearance_ml_min / 60.0 for s in solutes]  # mL/s
        self._sieving = [s.sieving for s in solutes]
        self._conductance = [
            [s.binding[a].conductance_ml_min if a in s.binding else 0.0 for a in self._adsorbers]
            for s in solutes
        ]
        self._inv_half_load = [
            [1.0 / s.binding[a].half_load if a in s.binding else 0.0 for a in self._adsorbers]
            for s in solutes
        ]
        #: fresh single-pass extraction at the column flow `_column_flow` (mL/min)
        self._e0 = [[0.0] * len(self._adsorbers) for _ in solutes]
        self._column_flow = 0.0
        #: hemofilter fouling: every sieving coefficient is scaled by this (1 = clean)
        self.fouling = 1.0
        self.update_pressures()

    # -- actuators ----------------------------------------------------------------------
    def set_pump(self, name: str, rate_ml_min: float) -> None:
        self.commanded[PUMP_INDEX[name]] = rate_ml_min

    def set_valve(self, name: str, position: str) -> None:
        if name == "plasma_route":
            if not self.route_stuck:
                self.valve_collect = position == "collect"
        elif name == "venous_clamp":
            if not (self.clamp_stuck_open and position == "closed"):
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
        flow[:] = map(mul, cmd, fac)
        blind = self.encoder_blind
        if any(blind):
            for i in range(7):
                rotor[i] += (cmd[i] if blind[i] else flow[i]) * k
        else:  # rotor += flow x k for the seven peristaltic pumps, by map
            rotor[:7] = map(add, rotor, map(mul, flow, repeat(k, 7)))
        rotor[HEPARIN] += (cmd[HEPARIN] if blind[HEPARIN] else flow[HEPARIN]) * k / 60.0
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
        if diff > 0.0:
            vv = min(diff * VALVE_K_PER_S * dt_s, diff * 0.5)
        elif self.bag_valve_leak_k > 0.0:  # a leaking valve: back, outer -> inner
            vv = max(diff * self.bag_valve_leak_k * dt_s, diff * 0.5)
        else:
            vv = 0.0
        v["inner_chamber"] -= vv
        v["outer_chamber"] += vv
        self._solutes(dt_s, before, vp, vl, vf, vret, vv)
        # slow processes
        self.separator_fouling_mmhg += self.separator_fouling_rate * dt_s * (qb > 0.0)
        self.adsorber_clot_mmhg += self.adsorber_clot_rate * dt_s
        self.filter_clot_mmhg += self.filter_clot_rate * dt_s
        if any(self.scale_drift_g_s.values()):
            for name, rate in self.scale_drift_g_s.items():
                if rate:
                    self.scale_offset_g[name] += rate * dt_s
        if self.hypotension_rate:
            self.hypotension_mmhg = min(
                self.hypotension_max_mmhg, self.hypotension_mmhg + self.hypotension_rate * dt_s
            )
        drift = self.pressure_drift
        if any(drift):
            for i in range(len(drift)):
                if drift[i]:
                    self.pressure_offset[i] += drift[i] * dt_s
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
        return patient_plasma_ml(self.params.weight_kg, self.params.hematocrit)

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
        """Move solute amounts with the volumes, at the concentrations the step began with.

        Per solute: plasma out through the separator; in the loop the filter takes
        `sieving x fouling` of the filtrate's share, then each column in series binds
        `e0 / (1 + bound/half_load)` of what reaches it; on the patient side the
        extravascular pool exchanges, the body makes and clears. Every amount moved is taken
        from one place and put in another (`solute_total` is conserved).
        """
        pv_before, outer_before, inner_before = before
        collect = self.valve_collect
        lost = self.return_disconnected or self.needle_out_mmhg > 0.0
        flow = self.flow
        column_flow = flow[LOOP] - flow[FILTRATE] + flow[SUBSTITUTION] if vl > 0.0 else 0.0
        if column_flow != self._column_flow:
            self._column_rates(column_flow)
        inv_pv = 1.0 / pv_before if pv_before > 0.0 else 0.0
        inv_outer = 1.0 / outer_before if outer_before > 1e-9 else 0.0
        inv_inner = 1.0 / inner_before if inner_before > 1e-9 else 0.0
        foul_vf = self.fouling * vf
        # a torn membrane holds nothing back: the filtrate carries the plasma's own levels
        torn = self.filter_ruptured
        pa = self.patient_amount
        ea = self.ev_amount
        oa = self.outer_amount
        ia = self.inner_amount
        wa = self.waste_amount
        ra = self.removed_amount
        for j in range(len(pa)):
            mp = pa[j]
            cp = mp * inv_pv
            mo = oa[j]
            co = mo * inv_outer
            mi = ia[j]
            ci = mi * inv_inner
            out_plasma = cp * vp
            # loop: outer -> filter (filtrate off) -> adsorbers in series -> inner
            loop_in = co * vl
            m = loop_in
            if foul_vf > 0.0:
                to_filtrate = min(loop_in, co * vf if torn else self._sieving[j] * co * foul_vf)
                m -= to_filtrate
                wa[j] += to_filtrate
            if m > 0.0:
                bound = self.adsorber_bound[j]
                e0 = self._e0[j]
                inv_h = self._inv_half_load[j]
                for a in range(len(bound)):
                    e = e0[a]
                    if e > 0.0:
                        b = bound[a]
                        taken = e * m / (1.0 + b * inv_h[a])
                        bound[a] = b + taken
                        m -= taken
            back = (ci if vv >= 0.0 else co) * vv
            returned = ci * vret
            # the patient: extravascular exchange, generation, endogenous clearance
            ev_vol = self.ev_volume_ml[j]
            exchange = self._kex[j] * (ea[j] / ev_vol - cp) * dt_s if ev_vol else 0.0
            made = self._gen[j] * dt_s
            cleared = self._cl[j] * cp * dt_s
            ea[j] -= exchange
            if lost:
                pa[j] = mp - out_plasma + exchange + made - cleared
                ra[j] += cleared - made + returned
            else:
                pa[j] = mp - out_plasma + exchange + made - cleared + returned
                ra[j] += cleared - made
            if collect:
                oa[j] = mo - loop_in + out_plasma + back
            else:
                oa[j] = mo - loop_in + back
                wa[j] += out_plasma
            ia[j] = mi + m - back - returned
        if foul_vf > 0.0:
            self.fouling -= foul_vf / FOULING_FILTRATE_ML

    def _column_rates(self, column_flow: float) -> None:
        """Fresh single-pass extraction of every column at this flow: computed when the
        pumps change speed, not every step (the hot path stays free of exp())."""
        self._column_flow = column_flow
        for j, row in enumerate(self._conductance):
            e0 = self._e0[j]
            for a, k in enumerate(row):
                e0[a] = 1.0 - math.exp(-k / column_flow) if column_flow > 0.0 and k else 0.0

    def update_pressures(self) -> None:
        """Pressures from the pumps' speeds and the fault knobs, as they are right now."""
        f = self.flow
        f[:] = map(mul, self.commanded, self.pump_factor)
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
        if self.filter_ruptured:
            filter_tmp = 2.0 * (ql > 0.0)  # nothing holds the plasma back any more
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
        """Noise-free pressure: what the firmware's protective comparisons use (a drifting
        sensor drifts for the firmware too: it is the same sensor)."""
        i = PRESSURE_INDEX[name]
        return self.pressures[i] + self.pressure_offset[i]

    def pressure_sample(self, name: str) -> float:
        i = PRESSURE_INDEX[name]
        return (
            self.pressures[i] + self.pressure_offset[i] + self._rng.gauss(0.0, PRESSURE_NOISE_MMHG)
        )

    def readings(self) -> list[float]:
        """Every sensor's reading in SENSOR_NAMES order (pressures, scales, plasma_temp,
        map), the noise drawn in that order: what `pressure_sample`, `scale_g`,
        `temp_sample` and `map_sample` give one by one, the same numbers, in one call (it
        runs on every sample, thousands of times a second of wall time)."""
        noise = normals(self._rng, len(self.pressures) + 2)
        # p + o + (0.0 + z x noise) for each pressure, by map: the same operations, in C
        noisy = map(add, repeat(0.0), map(mul, noise, repeat(PRESSURE_NOISE_MMHG)))
        values = list(map(add, map(add, self.pressures, self.pressure_offset), noisy))
        values += map(add, _scales(self.volumes), _scales(self.scale_offset_g))
        values.append(self.plasma_temp_c + (0.0 + noise[-2] * 0.02))
        values.append(self.map_mmhg + (0.0 + noise[-1] * 0.3))
        return values

    def map_sample(self) -> float:
        """The patient monitor's MAP, with its own small noise."""
        return self.map_mmhg + self._rng.gauss(0.0, 0.3)

    def temp_sample(self) -> float:
        return self.plasma_temp_c + self._rng.gauss(0.0, 0.02)

    def measured_flow(self, name: str) -> float:
        """The rotor's speed now (mL/min; heparin mL/h), as its encoder would show it: the
        command when the encoder is blind to what the tubing delivers."""
        i = PUMP_INDEX[name]
        return self.commanded[i] * (1.0 if self.encoder_blind[i] else self.pump_factor[i])

    def scale_g(self, name: str) -> float:
        return self.volumes[name] + self.scale_offset_g[name]

    # -- truth, for tests, the summary and docs -----------------------------------------
    def total_volume_ml(self) -> float:
        """Every place fluid can be, minus what faults put in from outside: constant."""
        return sum(self.volumes.values()) - self.outside_ml

    def concentration(self, solute: str) -> float:
        """The patient's plasma concentration of `solute` in its clinical unit."""
        return self.patient_amount[self.solute_index[solute]] / self.volumes["patient"]

    def removal_fraction(self, solute: str) -> float:
        """Fraction removed since the start; 0 for a solute that started at 0 (a rig file
        may set a simulated level to 0: nothing to remove, not a division by zero)."""
        initial = self.params.solutes[self.solute_index[solute]].initial
        return 1.0 - self.concentration(solute) / initial if initial else 0.0

    def hang_plasma(self, chamber: str, volume_ml: float, levels: dict[str, float]) -> None:
        """Put `volume_ml` of plasma at `levels` into a chamber, as an operator would hang it
        (bench experiments on a column or the bag alone). Counted as coming from outside,
        so the volume and solute audits stay exact."""
        self.volumes[chamber] += volume_ml
        self.outside_ml += volume_ml
        amounts = self.outer_amount if chamber == "outer_chamber" else self.inner_amount
        for name, level in levels.items():
            j = self.solute_index[name]
            amounts[j] += level * volume_ml
            self._start_amount[j] += level * volume_ml

    def bound(self, solute: str) -> dict[str, float]:
        """Amount of `solute` bound on each column (unit x mL)."""
        row = self.adsorber_bound[self.solute_index[solute]]
        return dict(zip(self._adsorbers, row, strict=True))

    def solute_total(self, solute: str) -> float:
        """Every place the solute can be, plus what the body cleared net of what it made:
        equal to the starting amount at all times (tested)."""
        j = self.solute_index[solute]
        return (
            self.patient_amount[j]
            + self.ev_amount[j]
            + self.outer_amount[j]
            + self.inner_amount[j]
            + self.waste_amount[j]
            + sum(self.adsorber_bound[j])
            + self.removed_amount[j]
        )

    def solute_start(self, solute: str) -> float:
        return self._start_amount[self.solute_index[solute]]

    def column_profile(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Each column's inlet and outlet concentration of each solute, now.

        What a sampling port before and after each column would read: the outer chamber's
        plasma after the filter (its share of the solute leaves with the filtrate) and the
        post-dilution, then each column's single-pass extraction in turn. Empty while the
        loop does not run. Built on demand (the journal's 1 Hz trend), never in `step`.
        """
        f = self.flow
        outer = self.volumes["outer_chamber"]
        q_loop = f[LOOP]
        column_flow = q_loop - f[FILTRATE] + f[SUBSTITUTION]
        if q_loop <= 0.0 or outer <= 1e-9 or column_flow <= 0.0 or not self._adsorbers:
            return {}
        if column_flow != self._column_flow:
            self._column_rates(column_flow)
        out: dict[str, dict[str, tuple[float, float]]] = {a: {} for a in self._adsorbers}
        for s, j in self.solute_index.items():
            co = self.outer_amount[j] / outer
            filtered = min(co * q_loop, self._sieving[j] * self.fouling * co * f[FILTRATE])
            c = (co * q_loop - filtered) / column_flow
            for a, name in enumerate(self._adsorbers):
                e = self._e0[j][a] / (1.0 + self.adsorber_bound[j][a] * self._inv_half_load[j][a])
                out[name][s] = (c, c * (1.0 - e))
                c *= 1.0 - e
        return out


def physics_for(
    rig: RigConfig,
    prescription: Prescription | None = None,
    extra_solutes: tuple[SoluteParams, ...] = (),
) -> Physics:
    """The simulated rig and patient that a rig file and a prescription describe.

    `extra_solutes` are tracked besides IL-6 and bilirubin (bench/validation.py adds albumin).
    """
    sim = rig.sim
    params = PhysicsParams(
        map_baseline_mmhg=sim.map_baseline_mmhg,
        substitution_bag_ml=sim.substitution_bag_ml,
        waste_capacity_ml=sim.waste_bag_capacity_ml,
        seed=sim.seed,
        solutes=default_solutes(sim.il6_pg_ml, sim.bilirubin_umol_l) + extra_solutes,
    )
    if prescription is not None:
        params.weight_kg = prescription.patient.weight_kg
        params.hematocrit = prescription.patient.hematocrit
        params.replacement_bag_ml = prescription.replacement.bag_volume_ml
        params.adsorbers = prescription.adsorber_train
    return Physics(params)
