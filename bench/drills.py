"""Safety drills: one fault per hazard row, injected mid-treatment, the response measured.

A drill runs a short treatment on a rig (simulated, or `alsctl firmware-sim` behind a serial
port), injects its fault once the treatment has been in its phase for a while, and records
what happened: when the fault went in, when the firmware went safe, when the alarm was
raised, what the pumps did, and whether the treatment got back to its phase afterwards.
`tests/hazards/` asserts on the results; `bench/safety_latency.py` turns them into
docs/safety.md. The operator's part is played by `auto_resume_s`: acknowledge and resume
once the conditions are gone (or stop, for a fault that does not go away by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.app import CLEAR, RunOptions, midway, run_treatment
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import FaultEvent
from controller.control import Controller, View
from controller.control.checkpoint import Midway
from controller.hal.base import HalEventKind
from controller.journal import Journal
from controller.rig import Sample
from controller.summary import Summary


@dataclass(frozen=True, slots=True)
class Drill:
    hazard: str
    fault: str
    params: dict[str, Any]
    #: the alarm expected (hazard id, or hazard:target)
    alarm: str
    #: prescription: "pe" (exchange, blood side) or "loop" (purification, loop side)
    rx: str = "pe"
    phase: str = "exchange"
    after_s: float = 120.0
    #: how long the fault lasts; None: until the operator acts
    duration_s: float | None = 5.0
    #: what the operator does once it is clear: "resume", "stop" (rinse back and end),
    #: "notify" (an alarm that acts on nothing: the treatment goes on) or "hold" (nobody
    #: acts: the alarm stands until the fault ends and the run's time runs out)
    recovery: str = "resume"
    #: firmware-level hazards: the firmware goes safe within one tick
    firmware: bool = False
    #: pumps the response must have at zero (besides the safe state)
    stopped: tuple[str, ...] = ()
    #: pumps the response caps (commanded below the phase's rate, not zero)
    reduced: tuple[str, ...] = ()
    #: for gradual faults: the condition on a sample, to time the alarm from its onset
    onset: Callable[[Sample, float], bool] | None = None
    #: the response is judged after the alarm is "raised", or "escalated" to high priority
    response_after: str = "raised"
    #: an alarm detected on a trend rather than a limit: its own bound, from the fault
    detect_ms: int | None = None
    #: the test's name when hazard-fault is not enough (the same fault, other parameters)
    label: str = ""
    #: the blood flow, when the drill is about a flow (mL/min; default the prescription's)
    blood_ml_min: float | None = None
    #: a second fault 1 s after the first, lasting 2 s (a clamp that will not close is only
    #: seen when something asks it to)
    second: tuple[str, dict[str, Any]] | None = None
    #: how long after the fault the drill keeps samples to judge (a slow fault needs more)
    watch_s: float = 300.0

    @property
    def name(self) -> str:
        return self.label or f"{self.hazard}-{self.fault}"


def _tmp(s: Sample) -> float:
    v = s.sensors
    return (v["pre_separator"].value + v["return"].value) / 2 - v["plasma"].value


DRILLS: tuple[Drill, ...] = (
    Drill("air_return", "air_bubble", {}, "air_return", firmware=True, duration_s=2),
    Drill("return_low", "return_disconnection", {}, "return_low", firmware=True, duration_s=2),
    Drill("return_low", "needle_dislodgement", {"drop_mmhg": 25}, "return_low", duration_s=2),
    # a small drop, held below the expected level: seen within 5 s (docs/spec.md: 15 mmHg at 150)
    Drill("return_low", "needle_dislodgement", {"drop_mmhg": 15}, "return_low", duration_s=8,
          detect_ms=5000, label="return_low-needle_dislodgement_15mmHg", blood_ml_min=150),
    Drill("return_high", "return_occlusion", {"severity": 1.0}, "return_high", firmware=True,
          duration_s=2),
    Drill("access_low", "access_occlusion", {"severity": 1.0}, "access_low", firmware=True,
          duration_s=2),
    Drill("separator_tmp", "separator_fouling", {"mmhg_per_min": 60}, "separator_tmp",
          duration_s=None, recovery="stop", reduced=("plasma", "replacement"),
          onset=lambda s, _: s.pumps["plasma"].commanded > 0 and _tmp(s) > 60),
    Drill("blood_leak", "blood_leak", {}, "blood_leak", firmware=True, duration_s=2),
    Drill("clotting", "adsorber_clotting", {"mmhg_per_min": 100}, "clotting", rx="loop",
          phase="purification", duration_s=None, recovery="stop", reduced=("loop",),
          onset=lambda s, _: s.pumps["loop"].commanded > 0
          and s.sensors["pre_adsorber"].value - s.sensors["post_adsorber"].value > 150),
    Drill("fluid_imbalance", "scale_drift", {"bag": "waste_bag", "grams_per_min": 100},
          "fluid_imbalance", duration_s=90,
          stopped=("plasma", "replacement", "filtrate", "substitution", "return"),
          onset=lambda s, balance_error: abs(balance_error) > 100),
    Drill("bag", "bag_empty", {"bag": "replacement_bag"}, "bag:replacement_bag", duration_s=10,
          stopped=("replacement", "plasma")),
    Drill("hypotension", "hypotension", {"drop_mmhg": 30}, "hypotension", duration_s=60,
          reduced=("blood", "plasma", "replacement"),
          onset=lambda s, _: s.sensors["map"].value < 65),
    Drill("pump_fault", "pump_stall", {"pump": "replacement"}, "pump_fault:replacement",
          duration_s=10, stopped=("replacement", "plasma")),
    Drill("sensor_fault", "sensor_missing", {"sensor": "return"}, "sensor_fault:return",
          duration_s=2),
    Drill("plasma_temp", "plasma_too_hot", {"offset_c": 6}, "plasma_temp", duration_s=120,
          stopped=("return", "replacement", "plasma"), response_after="escalated",
          onset=lambda s, _: not 35 <= s.sensors["plasma_temp"].value <= 39),
    Drill("link_lost", "link_down", {}, "link_lost", duration_s=1),
    Drill("heartbeat", "controller_silence", {}, "firmware_safe:heartbeat", firmware=True,
          duration_s=2),
    # -- second pass (issue 15): faults as they happen on a bench
    Drill("pump_fault", "pump_delivery", {"pump": "replacement", "factor": 0.8,
          "encoder_sees": True}, "pump_fault:replacement", duration_s=10,
          stopped=("replacement", "plasma"), label="pump_fault-pump_delivery_seen"),
    # worn tubing the encoder cannot see: only the scales tell
    Drill("fluid_imbalance", "pump_delivery", {"pump": "replacement", "factor": 0.8},
          "fluid_imbalance", duration_s=None, recovery="stop", watch_s=1500,
          stopped=("plasma", "replacement", "filtrate", "substitution", "return"),
          onset=lambda s, balance_error: abs(balance_error) > 100,
          label="fluid_imbalance-pump_delivery_blind"),
    Drill("pump_fault", "heparin_occlusion", {}, "pump_fault:heparin", duration_s=10,
          stopped=("heparin",)),
    # stuck at waste: seen when collection sends it to the bag (10 min into the exchange)
    Drill("valve_fault", "route_stuck", {}, "valve_fault:plasma_route", rx="loop",
          after_s=590, duration_s=None, recovery="stop", detect_ms=20_000,
          stopped=("plasma", "replacement", "loop", "filtrate", "substitution", "return")),
    # will not close: seen when the safe state (air in the line) asks it to
    Drill("valve_fault", "clamp_stuck_open", {}, "valve_fault:venous_clamp", duration_s=6,
          second=("air_bubble", {}), detect_ms=1_000 + 500 + 100 + 10),
    Drill("bag_valve", "bag_valve_leak", {"per_s": 0.2}, "bag_valve", rx="loop",
          phase="exchange_collect", after_s=5, duration_s=None, recovery="notify",
          detect_ms=60_000),
    Drill("filter_rupture", "filter_rupture", {}, "filter_rupture", rx="loop",
          phase="purification", duration_s=None, recovery="stop",
          stopped=("loop", "filtrate", "substitution")),
    Drill("sensor_fault", "sensor_drift", {"sensor": "return", "mmhg_per_min": -3},
          "sensor_fault:blood_side_pair", duration_s=None, recovery="stop", watch_s=600,
          # 15 mmHg at 3 mmHg/min is 300 s (noise: +-10 s); then the 1 s average, the 5 s
          # hold, the delay, a cycle
          detect_ms=300_000 + 10_000 + 1_000 + 5_000 + 500 + 100 + 10),
    Drill("hypotension", "map_ramp", {"mmhg_per_min": 5, "drop_mmhg": 30}, "hypotension",
          duration_s=600, reduced=("blood", "plasma", "replacement"),
          onset=lambda s, _: s.sensors["map"].value < 65),
    Drill("heartbeat", "command_loss", {"fraction": 1.0}, "firmware_safe:heartbeat",
          firmware=True, duration_s=3),
    # every command corrupted on the line (its CRC fails): none is executed, heartbeats
    # included, so the firmware's watchdog takes the rig safe as when they are dropped
    Drill("heartbeat", "command_loss", {"fraction": 1.0, "corrupt": True},
          "firmware_safe:heartbeat", firmware=True, duration_s=3,
          label="heartbeat-command_loss_corrupt"),
)  # fmt: skip

SHORT: dict[str, dict[str, Any]] = {
    "pe": {"mode": "pe", "exchange_volume_pv": None, "exchange_volume_ml": 900},
    "loop": {
        "mode": "li_als",
        "exchange_volume_pv": None,
        "exchange_volume_ml": 700,
        "collection_threshold_ml": 400,
        "purification": {"processed_plasma_ml": 4000},
    },
}


KEEP_BEFORE = 10
KEEP_AFTER_MS = 300_000
LOOP_KEYS = ("loop_flow_multiple", "filtrate_ml_min", "adsorbers", "purification")


def drill_prescription(base: Prescription, kind: str) -> Prescription:
    """A short treatment built on `base`: a plasma exchange, or one with a loop."""
    data = base.model_dump(exclude_none=True, by_alias=True)
    if kind == "pe":
        for key in LOOP_KEYS:
            data.pop(key, None)
        data["net_fluid_removal_ml_h"] = 0
    return Prescription.model_validate({**data, **SHORT[kind]})


@dataclass(slots=True)
class DrillResult:
    drill: Drill
    summary: Summary
    fault_ms: int | None = None
    safe_ms: int | None = None
    alarm_ms: int | None = None
    escalated_ms: int | None = None
    onset_ms: int | None = None
    before: Sample | None = None
    response: Sample | None = None
    resumed: bool = False
    samples: list[Sample] = field(default_factory=list)
    #: when the machine left `alarm` after the fault (resume or stop), if it did
    left_alarm_ms: int | None = None
    #: the patient's balance moved off its prescribed trajectory by at most this while the
    #: response held (simulated rig: the simulator's truth, spill aside)
    balance_change_ml: float | None = None
    #: blood a lost line spilled over the drill (simulated rig)
    spilled_ml: float | None = None
    #: the farthest the patient's balance was off what the prescription allows by then,
    #: over every kept sample, alarm or not (simulated rig: its truth, spill aside)
    patient_off_ml: float | None = None
    #: kept samples where the firmware ran a pump faster than the controller had commanded
    #: it (t_ms, pump, the firmware's rate, the controller's), simulated rig: a command
    #: garbled on the line and acted on anyway would show here
    overruns: list[tuple[int, str, float, float]] = field(default_factory=list)

    @property
    def firmware_latency_ms(self) -> int | None:
        if self.safe_ms is None or self.fault_ms is None:
            return None
        return self.safe_ms - self.fault_ms

    @property
    def alarm_latency_ms(self) -> int | None:
        start = self.onset_ms if self.onset_ms is not None else self.fault_ms
        if self.alarm_ms is None or start is None:
            return None
        return self.alarm_ms - start


def prescription_of(
    drill: Drill, base: Prescription, exchange_ml: float | None = None
) -> Prescription:
    rx = drill_prescription(base, drill.rx)
    changes: dict[str, float] = {}
    if drill.blood_ml_min is not None:
        changes["blood_flow_ml_min"] = drill.blood_ml_min
    if exchange_ml is not None:
        changes["exchange_volume_ml"] = exchange_ml
    if not changes:
        return rx
    return Prescription.model_validate(
        {**rx.model_dump(exclude_none=True, by_alias=True), **changes}
    )


async def drill_start(drill: Drill, rig: RigConfig, base: Prescription) -> Midway:
    """The drill's treatment caught as it enters the drill's phase, for `run_drill(start=)`."""
    return await midway(rig, prescription_of(drill, base), drill.phase)


async def run_drill(
    drill: Drill,
    rig: RigConfig,
    base: Prescription,
    *,
    backend: str = "sim",
    port: str | None = None,
    exchange_ml: float | None = None,
    start: Midway | None = None,
    journal: Journal | None = None,
    max_rig_s: float = 4 * 3600,
) -> DrillResult:
    """`start`: begin where another run of the same prescription entered the drill's phase
    (`drill_start`), instead of going through self-test, priming and connection again.
    `journal`: record the drill as `alsctl run --journal` records a session (what the
    report is rendered from). `max_rig_s`: when a run that never leaves `alarm` ends."""
    rx = prescription_of(drill, base, exchange_ml)
    if start is not None and start.prescription != rx:
        raise ValueError("the drill must start from a run of its own prescription")
    refs: list[Controller] = []
    samples: list[Sample] = []
    balance: list[float] = []
    #: the simulator's truth per kept sample: (patient off what is allowed by now, spilled)
    patient: list[tuple[float, float]] = []
    state: dict[str, Any] = {"injected": None, "cleared": False, "stopped": False}
    tasks: list[asyncio.Task[None]] = []
    overruns: list[tuple[int, str, float, float]] = []
    #: what the controller had commanded (acknowledged) by the previous sample's view
    seen: dict[str, Any] = {}

    async def remote(op: str) -> None:
        hal: Any = refs[0].hal
        await hal.sim_fault(drill.fault, drill.params, clear=op == "clear")

    def act(op: str) -> None:
        hal: Any = refs[0].hal
        if backend != "sim":
            tasks.append(asyncio.create_task(remote(op)))
        elif op == "inject":
            # start and end in rig time: a fault that silences the link must end by itself
            now_s = hal.firmware.t_ms / 1000.0
            hal.faults.schedule(
                FaultEvent(
                    at_s=now_s, fault=drill.fault, duration_s=drill.duration_s, params=drill.params
                )
            )
            if drill.second is not None:
                fault, params = drill.second
                hal.faults.schedule(
                    FaultEvent(at_s=now_s + 1.0, fault=fault, duration_s=2.0, params=params)
                )
        else:
            hal.faults.clear(drill.fault)

    def operator(status: View) -> None:
        c = refs[0]
        t = status.t_ms
        # keep only what the analysis reads: a second before the fault to 5 min after
        if state["injected"] is None or t <= state["injected"] + drill.watch_s * 1000:
            if state["injected"] is None and len(samples) >= KEEP_BEFORE:
                del samples[0], balance[0]
                if patient:
                    del patient[0]
            if backend == "sim":
                _overruns(status.sample, c.actuator.sent, seen, overruns)
            v = c.volumes
            scales = c.safety.scale_balance_ml(status.sample, v.pumped_ml["heparin"])
            samples.append(status.sample)
            balance.append(v.fluid_balance_ml - scales)
            physics = getattr(c.hal, "physics", None)
            if physics is not None:
                spill = physics.volumes["spill"]
                # what the patient really gained, a spilled line's loss aside (blood lost is
                # its own figure), against what the prescription allows by now
                gained = physics.volumes["patient"] - physics._pv0() + spill
                patient.append((gained - c.accounting.allowed_balance_ml(c.rx), spill))
        if state["injected"] is None:
            if status.phase == drill.phase and c.machine.phase_s() >= drill.after_s:
                state["injected"] = t
                act("inject")
            return
        due = drill.duration_s is not None and t - state["injected"] >= drill.duration_s * 1000
        if backend != "sim" and due and not state["cleared"]:
            state["cleared"] = True
            act("clear")
        in_alarm = status.phase == "alarm" and c.machine.phase_s() >= 20
        if drill.recovery == "stop" and in_alarm and not state["stopped"]:
            state["stopped"] = True
            if backend == "sim":
                act("clear")  # the clot or fouling stays; the fault stops growing
            c.request("acknowledge", "drill: operator")
            c.request("stop", "drill: operator stops the treatment")

    opts = RunOptions(
        backend=backend,
        port=port,
        gate=CLEAR,
        on_view=operator,
        on_controller=refs.append,
        auto_resume_s=2.0 if drill.recovery == "resume" else None,
        max_rig_s=max_rig_s,
        start=start,
        journal=journal,
    )
    summary, controller = await run_treatment(rig, rx, opts)
    for task in tasks:
        await task
    result = _analyse(drill, summary, controller, samples, balance, state["injected"])
    _balance_during_response(result, patient)
    result.overruns = overruns
    if patient:
        result.patient_off_ml = max(abs(off) for off, _spill in patient)
    return result


def _overruns(
    sample: Sample,
    sent: dict[str, float | str],
    seen: dict[str, Any],
    into: list[tuple[int, str, float, float]],
) -> None:
    """Each pump the firmware runs faster than the controller commanded it.

    A sample is read before its cycle's commands go out, so its setpoints are those sent
    up to the previous sample's cycle or in this one (a rate lowered this cycle still
    shows the old one): the firmware may hold the higher of the two, never more. The
    same sample can be viewed twice (the run's last view): it is judged against what was
    sent before it, not since. On the simulated rig a command that got no
    acknowledgement was never executed, so what the controller holds as acknowledged is
    all the firmware may run; over a real line an executed command whose answers were all
    lost would look like an overrun, hence the simulated rig only.
    """
    if seen.get("t_ms") != sample.t_ms:
        seen["t_ms"] = sample.t_ms
        seen["before"] = seen.get("latest", {})
    before: dict[str, float | str] = seen["before"]
    for name, reading in sample.pumps.items():
        allowed = max(float(before.get(name, 0.0)), float(sent.get(name, 0.0)))
        if reading.commanded > allowed + 1e-9:
            into.append((sample.t_ms, name, reading.commanded, allowed))
    seen["latest"] = dict(sent)


#: The response is judged over this long after the alarm (or until the alarm is left).
RESPONSE_WINDOW_MS = 60_000


def _balance_during_response(r: DrillResult, patient: list[tuple[float, float]]) -> None:
    """How far the patient's balance moved off its prescribed trajectory while the response
    held, and the blood a lost line spilled (the simulator's truth)."""
    if not patient or r.alarm_ms is None:
        return
    pairs = list(zip(r.samples, patient, strict=True))
    start = next((off for s, (off, _sp) in pairs if s.t_ms >= r.alarm_ms), None)
    if start is None:
        return
    left = r.left_alarm_ms if r.left_alarm_ms is not None else r.alarm_ms + RESPONSE_WINDOW_MS
    end = min(left, r.alarm_ms + RESPONSE_WINDOW_MS)
    during = [off for s, (off, _sp) in pairs if r.alarm_ms <= s.t_ms <= end]
    r.balance_change_ml = max(abs(off - start) for off in during)
    r.spilled_ml = patient[-1][1] - patient[0][1]


def _analyse(
    drill: Drill,
    summary: Summary,
    controller: Controller,
    samples: list[Sample],
    balance: list[float],
    injected_ms: int | None,
) -> DrillResult:
    r = DrillResult(drill, summary, samples=samples)
    for e in controller.hal_log:
        if e.kind is HalEventKind.FAULT_INJECTED and e.detail == drill.fault and r.fault_ms is None:
            r.fault_ms = e.t_ms
        if e.kind is HalEventKind.ENTERED_SAFE and r.fault_ms is not None and r.safe_ms is None:
            r.safe_ms = e.t_ms
    if r.fault_ms is None:
        r.fault_ms = injected_ms
    raised = [e for e in controller.alarm_log if e.kind == "raised" and e.alarm == drill.alarm]
    r.alarm_ms = raised[0].t_ms if raised else None
    escalated = [
        e for e in controller.alarm_log if e.kind == "escalated" and e.alarm == drill.alarm
    ]
    r.escalated_ms = escalated[0].t_ms if escalated else None
    if r.fault_ms is not None:
        r.before = next((s for s in reversed(samples) if s.t_ms < r.fault_ms), None)
    judged = r.escalated_ms if drill.response_after == "escalated" else r.alarm_ms
    if judged is not None:
        after = [s for s in samples if s.t_ms > judged + 200]
        r.response = after[0] if after else None
    if drill.onset is not None and r.alarm_ms is not None:
        onset = None
        for s, err in zip(samples, balance, strict=True):
            if s.t_ms > r.alarm_ms:
                break
            held = drill.onset(s, err)
            onset = (s.t_ms if onset is None else onset) if held else None
        r.onset_ms = onset
    trail = [(t.source, t.dest) for t in summary.transitions]
    r.resumed = ("alarm", drill.phase) in trail
    if r.alarm_ms is not None:
        r.left_alarm_ms = next(
            (
                int(t.t_s * 1000)
                for t in summary.transitions
                if t.source == "alarm" and t.t_s * 1000 >= r.alarm_ms
            ),
            None,
        )
    return r
