"""Interlocks: every hazard of docs/spec.md 5.2 evaluated on every sample, before the state machine.

`Interlocks.evaluate` turns one sample into alarm-manager updates and a `Verdict`: whether the
rig must be in its safe state, which pumps must stop, which are capped. The controller
applies the verdict over whatever the phase asked for (safety overrides, never the reverse)
and moves the machine to `alarm` while a hazard that acts is active.

A sensor the firmware does not vouch for (missing, out of range) or that is stuck is treated
as the worst reading of its hazard: a blood-side pressure puts the rig in its safe state, a
loop pressure stops the loop, the MAP is taken as hypotension, the plasma temperature as too
hot, a scale as its bag being unusable.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import gt, itemgetter, lt, mul, sub

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.rig import PUMP_NAMES, SCALE_NAMES, PumpReading, SafeReason, Sample
from controller.safety.alarms import Alarm, AlarmManager, Priority
from controller.safety.balance import balanced
from controller.safety.hazards import Hazard, Response, hazard_table
from controller.safety.pressure_pair import PressurePair
from controller.safety.return_line import ReturnLine
from controller.safety.sensors import STUCK_WATCHED, SensorCheck
from controller.words import alarm_title

BLOOD_SIDE = ("access", "pre_separator", "plasma", "return")
LOOP_SIDE = ("pre_filter", "filtrate", "pre_adsorber", "post_adsorber")
#: What must stop with a pump (docs/spec.md 5.2 "stop that pump and the ones that depend on it").
DEPENDENTS: dict[str, tuple[str, ...]] = {
    "blood": PUMP_NAMES,
    "plasma": ("plasma", "replacement", "return"),
    "replacement": ("replacement", "plasma"),
    "loop": ("loop", "filtrate", "substitution"),
    "filtrate": ("filtrate", "substitution"),
    "substitution": ("substitution", "filtrate"),
    "return": ("return", "plasma"),
    "heparin": ("heparin",),
}
#: What flows through the warmer to the patient, stopped when it is too hot.
WARMED = ("return", "replacement", "plasma")
PLASMA_SIDE = ("plasma", "replacement", "loop", "filtrate", "substitution", "return")
#: Pumps drawing from or filling each bag, paused when it is empty or full.
BAG_PUMPS: dict[str, tuple[str, ...]] = {
    "replacement_bag": ("replacement", "plasma"),
    "substitution_bag": ("substitution", "filtrate"),
    "waste_bag": ("plasma", "filtrate", "replacement"),
    "outer_chamber": ("plasma", "replacement"),
    "inner_chamber": ("plasma", "replacement"),
}
#: Sensors fed as `sensor_fault:<name>` every cycle, in this order
SENSOR_FAULT_FED = (*STUCK_WATCHED, *SCALE_NAMES)
#: sets for the membership tests of every cycle (a tuple is searched element by element)
SCALES = frozenset(SCALE_NAMES)
#: what the separator's TMP, and the filter's, are computed from
TMP_SENSORS = frozenset(("pre_separator", "plasma", "return"))
FILTER_SENSORS = frozenset(("pre_filter", "pre_adsorber", "filtrate"))
#: bags that are drawn from (empty is their problem); the others fill
EMPTIED_BAGS = frozenset(("replacement_bag", "substitution_bag"))
#: the same, in a fixed order, and getters of their readings from a sample's sensors
DRAWN_BAGS = tuple(b for b in BAG_PUMPS if b in EMPTIED_BAGS)
FILLED_BAGS = tuple(b for b in BAG_PUMPS if b not in EMPTIED_BAGS)
_drawn_bags = itemgetter(*DRAWN_BAGS)
_filled_bags = itemgetter(*FILLED_BAGS)
_value = itemgetter(0)
#: alarm ids built once, not every cycle
SENSOR_FAULT_ID = {n: f"sensor_fault:{n}" for n in SENSOR_FAULT_FED}
PAIR_ID = "sensor_fault:blood_side_pair"
FIRMWARE_SAFE_ID = {r: f"firmware_safe:{r}" for r in SafeReason}
#: Safe states with no hazard of their own, raised as `firmware_safe:<reason>` (control/loop.py)
FIRMWARE_SAFE_RAISED = (SafeReason.HEARTBEAT, SafeReason.BOOT, SafeReason.SENSOR)
PUMP_FAULT_ID = {n: f"pump_fault:{n}" for n in PUMP_NAMES}
BAG_ID = {b: f"bag:{b}" for b in BAG_PUMPS}
VALVE_ID = {v: f"valve_fault:{v}" for v in ("plasma_route", "venous_clamp")}
#: The inner chamber rising this much in this long with the loop stopped: the valve leaks
BAG_VALVE_RISE_G = 5.0
BAG_VALVE_WINDOW_MS = 30_000
REDUCE_FACTOR = 0.5
CLOT_STOP_S = 30.0
TMP_HYSTERESIS_MMHG = 20.0
CLOT_HYSTERESIS = 0.5
#: a `PumpReading`'s fields (a named tuple: (commanded, measured))
_commanded = itemgetter(0)
_measured = itemgetter(1)
REASON_HAZARD = {
    SafeReason.AIR: "air_return",
    SafeReason.RETURN_LOW: "return_low",
    SafeReason.RETURN_HIGH: "return_high",
    SafeReason.ACCESS_LOW: "access_low",
    SafeReason.BLOOD_LEAK: "blood_leak",
}


@dataclass(slots=True)
class Verdict:
    """What safety demands this cycle, applied over the phase's setpoints."""

    safe_state: bool = False
    stop: set[str] = field(default_factory=set)
    caps: dict[str, float] = field(default_factory=dict)
    #: alarms (ids) whose response acts on the rig: the machine belongs in `alarm`
    acting: list[str] = field(default_factory=list)
    #: no net fluid removal from the patient (hypotension)
    no_removal: bool = False

    def cap(self, pump: str, rate: float) -> None:
        self.caps[pump] = min(rate, self.caps.get(pump, math.inf))

    def apply(self, pumps: dict[str, float]) -> dict[str, float]:
        out = dict(pumps)
        if not (self.stop or self.caps or self.no_removal):
            return out  # nothing demanded: most cycles
        for name in balanced(self.stop):  # never one pump of a pair alone (balance.py)
            out[name] = 0.0
        for name, top in self.caps.items():
            out[name] = min(out[name], top)
        if self.no_removal and out["return"] > 0:
            out["plasma"] = min(out["plasma"], out["return"])
            out["filtrate"] = min(out["filtrate"], out["substitution"])
        return out


def _any_mismatch(pumps: Mapping[str, PumpReading], fraction: float) -> bool:
    """Whether any pump's measured flow is off its command by more than `fraction` of it
    (`abs(measured - commanded) > fraction x commanded`, the very test of a pump fault, whose
    `commanded > 0` it only leaves out): False says at once, in C, that no pump is at fault,
    which is what nearly every cycle finds."""
    readings = pumps.values()
    commanded = list(map(_commanded, readings))
    off = map(abs, map(sub, map(_measured, readings), commanded))
    return any(map(gt, off, map(mul, repeat(fraction), commanded)))


class Interlocks:
    def __init__(self, rig: RigConfig, prescription: Prescription) -> None:
        self.rig = rig
        self.rx = prescription
        self.lim = rig.alarms
        self.table: dict[str, Hazard] = {h.id: h for h in hazard_table(self.lim, rig.link_lost_ms)}
        #: (priority, delay ms, clear ms, latched) per alarm id, filled as ids are first fed
        self._params: dict[str, tuple[Priority, int, int, bool]] = {}
        self.alarms = AlarmManager()
        self._scale_base: dict[str, float] | None = None
        #: the return line's expected pressure, its drop, the blood a lost line spills
        self.return_line = ReturnLine(self.lim)
        #: pre_separator and return, which must agree with the blood flow
        self.pressure_pair = PressurePair()
        self._inner_history: deque[tuple[int, float]] = deque()
        #: readings not to be compared with any limit (not vouched for, or stuck)
        self.sensors = SensorCheck(rig.sensors.stuck_after_s)
        self._since: dict[str, int] = {}
        self.balance_error_ml = 0.0
        self._was_safe = False
        #: the firmware went safe on this very sample
        self.safe_edge = False
        #: per bag: drawn from (else filled), and the level past which it is a problem
        self._bag_limits: dict[str, tuple[bool, float]] = {
            bag: (True, self.lim.bag_empty_g)
            if bag in EMPTIED_BAGS
            else (False, self._capacity(bag) - self.lim.bag_full_margin_g)
            for bag in BAG_PUMPS
        }
        #: the limits of the bags drawn from, and of those filled (the orders of _drawn_bags
        #: and _filled_bags)
        self._drawn_limits = [self._bag_limits[b][1] for b in DRAWN_BAGS]
        self._filled_limits = [self._bag_limits[b][1] for b in FILLED_BAGS]

    # -- helpers ------------------------------------------------------------------------
    def hazard_of(self, alarm_id: str) -> Hazard:
        return self.table[alarm_id.split(":", 1)[0]]

    def _params_of(self, alarm_id: str) -> tuple[Priority, int, int, bool]:
        """The alarm manager's parameters of an alarm id, from its hazard's row."""
        params = self._params.get(alarm_id)
        if params is None:
            h = self.hazard_of(alarm_id)
            params = (h.priority, int(h.delay_s * 1000), int(h.clear_s * 1000), h.latched)
            self._params[alarm_id] = params
        return params

    def _update(
        self,
        t: int,
        alarm_id: str,
        present: bool,
        detail: str = "",
        priority: Priority | None = None,
    ) -> bool:
        """Feed one condition with its hazard's delays (`priority` overrides the row's).

        Dozens of conditions are judged every cycle, almost all absent with no alarm:
        `evaluate` feeds only those present or `watched`, and builds a detail only for them.
        """
        alarms = self.alarms
        if not present and alarm_id not in alarms.active:
            alarms.absent(alarm_id)
            return False
        row_priority, delay_ms, clear_ms, latched = self._params_of(alarm_id)
        alarm = alarms.update(
            t,
            alarm_id,
            present,
            priority=row_priority if priority is None else priority,
            delay_ms=delay_ms,
            clear_ms=clear_ms,
            latched=latched,
            detail=detail,
        )
        return alarm is not None

    def _held(self, key: str, present: bool, t: int) -> float:
        """Seconds `key` has been continuously present (0 when not)."""
        if not present:
            self._since.pop(key, None)
            return 0.0
        return (t - self._since.setdefault(key, t)) / 1000.0

    def start_accounting(self, sample: Sample) -> None:
        """The scale levels at connection: the fluid balance by scales starts from them."""
        self._scale_base = {n: sample.sensors[n].value for n in SCALE_NAMES}

    @property
    def scale_base(self) -> dict[str, float] | None:
        return self._scale_base

    def restore(self, scale_base: dict[str, float] | None, active: list[dict[str, object]]) -> None:
        """A resumed run: the balance by scales from the same start, the same alarms."""
        self._scale_base = scale_base
        self.alarms.restore(active)

    def scale_balance_ml(self, sample: Sample, heparin_ml: float) -> float:
        """Into the patient by the scales: what left the bags and did not land in another."""
        base = self._scale_base
        if base is None:
            return 0.0
        s = sample.sensors
        return (
            -(s["replacement_bag"].value - base["replacement_bag"])
            - (s["substitution_bag"].value - base["substitution_bag"])
            - (s["waste_bag"].value - base["waste_bag"])
            - (s["outer_chamber"].value - base["outer_chamber"])
            - (s["inner_chamber"].value - base["inner_chamber"])
            + heparin_ml
        )

    # -- the evaluation -----------------------------------------------------------------
    def evaluate(
        self,
        sample: Sample,
        encoder_balance_ml: float,
        heparin_ml: float,
        treating: bool,
        allowed_balance_ml: float = 0.0,
        commanded_valves: Mapping[str, str] | None = None,
    ) -> Verdict:
        """Judge every hazard on this sample, then say what safety demands.

        Each condition is judged every cycle, but fed to the alarm manager only when it is
        present or its id is `watched` (an alarm, or a condition delay running): feeding an
        idle condition as absent changes nothing. That, and building the detail text only
        for what is fed, is what keeps a cycle cheap; the judgement itself is unchanged.
        """
        t = sample.t_ms
        lim = self.lim
        s = sample.sensors
        pumps = sample.pumps
        safe = sample.safe
        feed = self._update
        #: live: an alarm raised earlier in this cycle shows in it
        active = self.alarms.active
        #: taken once: each condition is fed once a cycle, and feeding one never changes
        #: whether another is watched
        watched = self.alarms.watched()
        blood_flowing = pumps["blood"].commanded >= lim.minimum_blood_flow_ml_min * 0.4
        # the firmware's reason raises its hazard when it goes safe (the edge); after that
        # the measurement decides: the reason stays until the next arm, long after the
        # cause has gone, and samples already on the line still show it after an arm
        edge = safe and not self._was_safe
        self._was_safe = safe
        reason_hazard = REASON_HAZARD.get(sample.safe_reason) if edge else None
        self.safe_edge = edge

        # sensors first: an invalid reading is not compared with any limit
        bad = self.sensors.judge(s, t, blood_flowing)
        if bad or watched:
            for name in SENSOR_FAULT_FED:
                alarm_id = SENSOR_FAULT_ID[name]
                if name in bad or alarm_id in watched:
                    feed(t, alarm_id, name in bad, bad.get(name, ""))

        air = sample.detectors["air_return"] or reason_hazard == "air_return"
        if air or "air_return" in watched:
            feed(t, "air_return", air, "air detected in the return line")
        ret = s["return"].value
        dropped, averaged, expected = self.return_line.judge(sample, blood_flowing)
        fixed_low = ret < lim.return_low_mmhg
        low = reason_hazard == "return_low" or (
            "return" not in bad and blood_flowing and (fixed_low or dropped)
        )
        if low or "return_low" in watched:
            was_low = "return_low" in active
            feed(
                t,
                "return_low",
                low,
                f"return {ret:.0f} mmHg below {lim.return_low_mmhg:g}"
                if fixed_low or reason_hazard == "return_low"
                else f"return {averaged:.0f} mmHg, {expected - averaged:.0f} below the"
                f" {expected:.0f} expected at this flow: a needle out of the vein?",
            )
            if not was_low and "return_low" in active:
                self.return_line.lost_line(t)
        high = reason_hazard == "return_high" or (
            "return" not in bad and ret > lim.return_high_mmhg
        )
        if high or "return_high" in watched:
            feed(t, "return_high", high, f"return {ret:.0f} mmHg")
        acc = s["access"].value
        access_low = reason_hazard == "access_low" or (
            "access" not in bad and blood_flowing and acc < lim.access_low_mmhg
        )
        if access_low or "access_low" in watched:
            feed(t, "access_low", access_low, f"access {acc:.0f} mmHg")

        tmp_ok = not bad or TMP_SENSORS.isdisjoint(bad)
        tmp = (s["pre_separator"].value + ret) / 2 - s["plasma"].value
        tmp_raised = "separator_tmp" in active
        plasma_on = pumps["plasma"].commanded > 0 or tmp_raised
        # hysteresis in value: once raised, it holds until TMP is well below the limit, or
        # the reduced plasma flow would clear it, restore the flow, and raise it again
        tmp_limit = lim.separator_tmp_high_mmhg - (TMP_HYSTERESIS_MMHG if tmp_raised else 0.0)
        tmp_high = tmp_ok and plasma_on and tmp > tmp_limit
        tmp_for = self._held("tmp", tmp_high, t)
        if tmp_high or "separator_tmp" in watched:
            feed(
                t,
                "separator_tmp",
                tmp_high,
                f"separator TMP {tmp:.0f} mmHg",
                Priority.HIGH if tmp_for >= lim.separator_tmp_stop_s else Priority.MEDIUM,
            )
        leak = sample.detectors["blood_leak"] or reason_hazard == "blood_leak"
        if leak or "blood_leak" in watched:
            feed(t, "blood_leak", leak, "blood in the plasma line")

        clotting = "clotting" in active
        loop_on = pumps["loop"].commanded > 0 or clotting
        dp = s["pre_adsorber"].value - s["post_adsorber"].value
        ftmp = (s["pre_filter"].value + s["pre_adsorber"].value) / 2 - s["filtrate"].value
        keep = CLOT_HYSTERESIS if clotting else 1.0  # the slowed loop must not clear it
        clot = loop_on and (
            dp > keep * lim.adsorber_dp_high_mmhg or ftmp > keep * lim.filter_tmp_high_mmhg
        )
        if clot or "clotting" in watched:
            feed(t, "clotting", clot, f"adsorber drop {dp:.0f}, filter TMP {ftmp:.0f} mmHg")
        filtering = pumps["filtrate"].commanded > 0 and pumps["loop"].commanded > 0
        ftmp_ok = not bad or FILTER_SENSORS.isdisjoint(bad)
        torn = ftmp_ok and filtering and ftmp < lim.filter_tmp_low_mmhg
        if torn or "filter_rupture" in watched:
            feed(
                t,
                "filter_rupture",
                torn,
                f"filter TMP {ftmp:.0f} mmHg while filtrate is drawn: a torn membrane?",
            )
        self._valves(sample, commanded_valves or {}, watched)
        self._bag_valve(sample, watched)

        disagree, pair_off = self.pressure_pair.judge(sample)
        pair = disagree or (PAIR_ID in active and abs(pair_off) > 5)
        if pair or PAIR_ID in watched:
            feed(
                t,
                PAIR_ID,
                pair,
                f"pre_separator and return disagree by {pair_off:+.0f} mmHg with what"
                " the blood flow sets: one of them reads wrong",
            )

        scales = self.scale_balance_ml(sample, heparin_ml)
        self.balance_error_ml = encoder_balance_ml - scales
        scales_ok = not bad or SCALES.isdisjoint(bad)
        accounting = treating and self._scale_base is not None
        imbalance = accounting and scales_ok and abs(self.balance_error_ml) > lim.fluid_imbalance_ml
        if imbalance or "fluid_imbalance" in watched:
            feed(
                t,
                "fluid_imbalance",
                imbalance,
                f"encoders {encoder_balance_ml:+.0f} mL, scales {scales:+.0f} mL",
            )
        off = max(
            abs(encoder_balance_ml - allowed_balance_ml),
            abs(scales - allowed_balance_ml) if scales_ok else 0.0,
        )
        net = accounting and off > lim.net_balance_ml
        if net or "net_balance" in watched:
            feed(
                t,
                "net_balance",
                net,
                f"patient {encoder_balance_ml:+.0f} mL by encoders, {scales:+.0f} mL by"
                f" scales; the prescription allows {allowed_balance_ml:+.0f} mL by now",
            )

        self._bags(sample, watched)
        hypotension = treating and "map" not in bad and s["map"].value < lim.map_low_mmhg
        if hypotension or "hypotension" in watched:
            feed(t, "hypotension", hypotension, f"MAP {s['map'].value:.0f} mmHg")
        mismatch = lim.pump_mismatch_fraction
        # the safe state stops every pump whatever it was sent: no pump fault then
        if watched or (not safe and _any_mismatch(pumps, mismatch)):
            for name in PUMP_NAMES:
                p = pumps[name]
                alarm_id = PUMP_FAULT_ID[name]
                fault = (
                    not safe
                    and p.commanded > 0
                    and abs(p.measured - p.commanded) > (mismatch * p.commanded)
                )
                if fault or alarm_id in watched:
                    feed(
                        t,
                        alarm_id,
                        fault,
                        f"{name} commanded {p.commanded:g}, measured {p.measured:.1f}",
                    )
        temp = s["plasma_temp"].value
        temp_ok = "plasma_temp" not in bad and (
            pumps["plasma"].commanded > 0 or "plasma_temp" in active
        )
        out_of_range = temp_ok and not lim.plasma_temp_low_c <= temp <= lim.plasma_temp_high_c
        if out_of_range or "plasma_temp" in watched:
            feed(
                t,
                "plasma_temp",
                out_of_range,
                f"plasma {temp:.1f} degC",
                Priority.HIGH if temp > lim.plasma_temp_cutoff_c else Priority.MEDIUM,
            )
        return self._verdict(sample)

    def _valves(self, sample: Sample, commanded: Mapping[str, str], watched: set[str]) -> None:
        """A valve not where it was sent (its position sensor says so): in the safe state
        the clamp must be closed whatever was sent last."""
        safe = sample.safe
        if not safe and not watched and commanded == sample.valves:
            return  # each where it was sent, and no valve alarm to feed: the usual cycle
        t = sample.t_ms
        for name in ("plasma_route", "venous_clamp"):
            want = "closed" if name == "venous_clamp" and safe else commanded.get(name)
            seen = sample.valves.get(name)
            off = want is not None and seen != want
            alarm_id = VALVE_ID[name]
            if off or alarm_id in watched:
                self._update(
                    t,
                    alarm_id,
                    off,
                    f"{name} sent {want}, reports {seen}"
                    + (": clamp the venous line by hand" if name == "venous_clamp" else ""),
                )

    def _bag_valve(self, sample: Sample, watched: set[str]) -> None:
        """The inner chamber fills while the loop is stopped: only the one-way valve, leaking
        back from the outer chamber, can fill it then."""
        t = sample.t_ms
        inner = sample.sensors["inner_chamber"]
        loop = sample.pumps["loop"]
        loop_stopped = loop.measured <= 0 and loop.commanded <= 0
        history = self._inner_history
        rise = 0.0
        if not loop_stopped or not inner.valid:
            history.clear()
            rising = False
        else:
            history.append((t, inner.value))
            while history and history[0][0] < t - BAG_VALVE_WINDOW_MS:
                history.popleft()
            rise = inner.value - history[0][1]
            rising = t - history[0][0] >= BAG_VALVE_WINDOW_MS * 0.9 and rise > BAG_VALVE_RISE_G
        leaking = rising or ("bag_valve" in self.alarms.active and loop_stopped)
        if leaking or "bag_valve" in watched:
            self._update(
                t,
                "bag_valve",
                leaking,
                f"inner chamber +{rise:.0f} g in {BAG_VALVE_WINDOW_MS // 1000} s with the"
                " loop stopped: the one-way valve leaks back, returned plasma is not purified",
            )

    def link_lost(self, t_ms: int, lost: bool) -> None:
        self._update(t_ms, "link_lost", lost, "no frame from the firmware")

    def journal_unavailable(self, t_ms: int, reason: str | None) -> None:
        """The journal cannot be written (reason) or can again (None): the operator must
        know, the therapy must not stop for it."""
        self._update(t_ms, "journal_unavailable", reason is not None, reason or "")

    def firmware_safe(self, t_ms: int, reason: SafeReason, present: bool) -> None:
        """A safe state with no hazard of its own (heartbeat, an unexpected reset).

        Called for each such reason every cycle, almost always absent with no alarm: that
        case returns before anything is built."""
        alarm_id = FIRMWARE_SAFE_ID.get(reason) or f"firmware_safe:{reason}"
        if not present and self.alarms.idle(alarm_id):
            return
        self.alarms.update(
            t_ms,
            alarm_id,
            present,
            priority=Priority.HIGH,
            latched=True,
            detail=f"firmware in its safe state: {reason}",
        )

    # -- conditions -----------------------------------------------------------------------
    def _active(self, alarm_id: str) -> bool:
        """Already raised: a condition that the response itself hides (a pump it stopped)
        must not clear, re-start the pump and raise again (chatter)."""
        return alarm_id in self.alarms.active

    def _bags(self, sample: Sample, watched: set[str]) -> None:
        """A bag in use empty (drawn from) or nearly full (filled): its pumps pause. The
        level is judged first: a bag is almost never at its limit, and then nothing else
        needs looking at."""
        s = sample.sensors
        if not watched:
            # no bag alarm to feed: only a level past its limit matters, and the levels are
            # compared with their limits in C first (the same comparisons; a NaN fails them)
            values = list(map(_value, _drawn_bags(s)))
            if not any(map(lt, values, self._drawn_limits)):
                values = list(map(_value, _filled_bags(s)))
                if not any(map(gt, values, self._filled_limits)):
                    return
        t = sample.t_ms
        active = self.alarms.active
        for bag, (drawn, limit) in self._bag_limits.items():
            alarm_id = BAG_ID[bag]
            reading = s[bag]
            value = reading.value
            problem = (
                (value < limit if drawn else value > limit)
                and reading.valid  # else a sensor fault, handled as such
                and self._bag_in_use(sample, bag, alarm_id in active)
            )
            if problem or alarm_id in watched:
                self._update(t, alarm_id, problem, f"{bag} {value:.0f} g")

    @staticmethod
    def _bag_in_use(sample: Sample, bag: str, raised: bool) -> bool:
        """Drawn from or filled now; or its alarm is raised, which stopped the pumps that
        would show it in use (see `_active`)."""
        if raised:
            return True
        pumps = sample.pumps
        if bag in EMPTIED_BAGS:
            return pumps[BAG_PUMPS[bag][0]].commanded > 0
        if bag == "waste_bag":
            return (
                pumps["plasma"].commanded > 0 and sample.valves["plasma_route"] == "waste"
            ) or pumps["filtrate"].commanded > 0
        if bag == "outer_chamber":
            return pumps["plasma"].commanded > 0 and sample.valves["plasma_route"] == "collect"
        return pumps["loop"].commanded > 0  # the inner chamber

    def _capacity(self, bag: str) -> float:
        if bag == "waste_bag":
            return self.rig.sim.waste_bag_capacity_ml
        return 2000.0  # each chamber of the double-chamber bag

    # -- responses ------------------------------------------------------------------------
    def _verdict(self, sample: Sample) -> Verdict:
        v = Verdict()
        t = sample.t_ms
        for alarm in self.alarms.active.values():
            if alarm.id.startswith("firmware_safe:"):
                continue
            if self._respond(v, alarm, t):
                v.acting.append(alarm.id)
        for alarm_id in self.alarms.active:
            if alarm_id.startswith("firmware_safe:"):
                v.acting.append(alarm_id)
        return v

    def verdict_of(self, alarm: Alarm, t_ms: int) -> Verdict:
        """What one alarm alone demands at `t_ms`, by the very code every cycle runs.

        docs/safety.md's table of balanced stops is generated from this (bench/
        safety_latency.py), so what it says each hazard stops cannot drift from what the
        controller does. A `firmware_safe:` alarm demands nothing of its own (the firmware
        is already safe) and only holds the machine in `alarm`.
        """
        v = Verdict()
        if alarm.id.startswith("firmware_safe:") or self._respond(v, alarm, t_ms):
            v.acting.append(alarm.id)
        return v

    def _respond(self, v: Verdict, alarm: Alarm, t_ms: int) -> bool:
        """Add one alarm's response to `v`; True when it acts on the rig (the machine
        belongs in `alarm`), False when it only informs."""
        p = self.rx
        h = self.hazard_of(alarm.id)
        target = alarm.id.split(":", 1)[1] if ":" in alarm.id else ""
        acts = True
        match h.response:
            case Response.SAFE_STATE:
                v.safe_state = True
            case Response.STOP_BLOOD:
                v.stop.update(PUMP_NAMES)
            case Response.REDUCE_PLASMA:
                if alarm.priority is Priority.HIGH:
                    v.stop.update(("plasma", "replacement", "return"))
                else:
                    top = p.plasma_flow * REDUCE_FACTOR
                    for name in ("plasma", "replacement", "return"):
                        v.cap(name, top)
            case Response.STOP_PLASMA_SIDE:
                v.stop.update(PLASMA_SIDE)
            case Response.SLOW_LOOP:
                if t_ms - alarm.raised_ms >= CLOT_STOP_S * 1000:
                    v.stop.update(DEPENDENTS["loop"])  # slowed long enough: stopped
                else:
                    v.cap("loop", p.loop_flow * REDUCE_FACTOR)
            case Response.STOP_EXCHANGE_FILTRATION:
                v.stop.update(("plasma", "replacement", "filtrate", "substitution", "return"))
            case Response.PAUSE_BAG_PUMP:
                v.stop.update(BAG_PUMPS[target])
            case Response.BLOOD_MIN_NO_REMOVAL:
                self._blood_minimum(v)
            case Response.STOP_PUMP:
                v.stop.update(DEPENDENTS[target])
            case Response.WORST_READING:
                self._worst_reading(v, target)
            case Response.TEMP:
                acts = alarm.priority is Priority.HIGH
                if acts:  # nothing warmed may reach the patient
                    v.stop.update(WARMED)
            case Response.ALARM_STATE:
                pass
            case Response.NOTIFY:
                acts = False
            case Response.VALVE:
                if target == "venous_clamp":
                    v.safe_state = True
                else:
                    v.stop.update(PLASMA_SIDE)
            case Response.STOP_LOOP:
                v.stop.update(DEPENDENTS["loop"])
        return acts

    def _blood_minimum(self, v: Verdict) -> None:
        p = self.rx
        blood = min(self.lim.minimum_blood_flow_ml_min, p.blood_flow_ml_min)
        v.cap("blood", blood)
        plasma = p.plasma_flow * blood / p.blood_flow_ml_min
        for name in ("plasma", "replacement", "return"):
            v.cap(name, plasma)
        # no net removal: substitution gives back all the filtrate takes, and no more plasma
        # leaves the patient than returns (applied after the caps, in `Verdict.apply`)
        v.cap("filtrate", p.substitution_flow)
        v.no_removal = True

    def _worst_reading(self, v: Verdict, sensor: str) -> None:
        if sensor in BLOOD_SIDE or sensor == "blood_side_pair":
            v.safe_state = True
        elif sensor in LOOP_SIDE:
            v.stop.update(DEPENDENTS["loop"])
        elif sensor == "map":
            self._blood_minimum(v)
        elif sensor == "plasma_temp":
            v.stop.update(WARMED)
        elif sensor in BAG_PUMPS:
            v.stop.update(BAG_PUMPS[sensor])

    # -- operator -----------------------------------------------------------------------
    def clear_to_resume(self) -> bool:
        """No acting condition present and every latched alarm acknowledged."""
        return not self.resume_blockers()

    def resume_blockers(self) -> list[str]:
        """What holds a resume back, each naming its alarm in words (the refusal says
        them): an acting condition still present, or a latched alarm not acknowledged."""
        blockers = []
        for alarm in self.alarms.active.values():
            if alarm.condition:
                h = self.table.get(alarm.id.split(":", 1)[0])
                if h is not None and h.response is Response.NOTIFY:
                    continue  # it acts on nothing: it cannot hold the treatment
                if h is None or h.response is not Response.TEMP or alarm.priority is Priority.HIGH:
                    blockers.append(f"{alarm_title(alarm.id)} is still present")
            elif alarm.latched and not alarm.acknowledged:
                blockers.append(f"{alarm_title(alarm.id)} is not acknowledged (A)")
        return blockers
