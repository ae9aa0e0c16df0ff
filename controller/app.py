"""The control loop: one sample in, commands out (ARCHITECTURE: data flow).

Each cycle reads a sample, accounts volumes, heartbeats the firmware, applies operator
requests, lets the state machine move on measured progress, and commands the setpoints of the
current phase (only what changed). Time is the samples' rig time, never the wall clock, so a
six-hour treatment runs in seconds on the simulated rig.

Any exception inside the loop ends with the firmware commanded safe and the machine in
`fault`, the traceback kept for the summary: never a silent crash with pumps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from controller import sizing
from controller.config.prescription import Prescription
from controller.config.rig import SELF_TEST_RATE, RigConfig
from controller.errors import AlsError, CommandRefused, LinkError
from controller.fsm import phases
from controller.fsm.machine import IllegalRequest, TransitionRecord, Treatment, leaf
from controller.hal.base import FirmwareLimits, Hal, HalEvent
from controller.outcome import Outcome, judge
from controller.protocol import PROTOCOL_VERSION
from controller.rig import (
    DETECTOR_NAMES,
    PRESSURE_NAMES,
    PUMP_NAMES,
    SENSOR_NAMES,
    SafeReason,
    Sample,
)
from controller.safety import balance, gate
from controller.safety.alarms import AlarmEvent
from controller.safety.interlocks import REASON_HAZARD, Interlocks, Verdict
from controller.summary import AlarmOut, GateOut, StopOut, Summary, TransitionOut, VolumesOut
from controller.volumes import Volumes

SELF_TEST_PUMP_S = sizing.SELF_TEST_PUMP_S
ENCODER_TOLERANCE = 0.10
VALVE_SETTLE_S = 0.5
#: A pressure reading further than this from zero at rest does not zero.
ZERO_TOLERANCE_MMHG = 50.0
#: The result of a request whose caller stopped waiting before the loop reached it.
EXPIRED = "expired: not applied, its caller stopped waiting"
VALVE_NAMES = ("plasma_route", "venous_clamp")
#: Hazards seen only while blood flows: a resume from them is checked at low flow first.
CHECKED_AT_LOW_FLOW = frozenset({"return_low", "return_high", "access_low", "air_return"})
#: States during which volumes are accounted (from connection on).
ACCOUNTED = frozenset(
    {"connecting", "exchange", "exchange_collect", "purification", "rinse_back", "paused", "alarm"}
)


class StepFailed(AlsError):
    """A self-test or priming step failed; the message names the part."""


class ResumeDeclined(AlsError):
    """The operator did not confirm a resume: nothing was armed, the rig stays safe."""

    exit_code = 1


class ResumeFailed(AlsError):
    """A resume refused before anything was restored: the session is left as it was."""

    exit_code = 1


class Interrupted(AlsError):
    """The process was told to end (Ctrl-C, SIGTERM): the rig is commanded safe first."""

    exit_code = 6  # EXIT_CODES[Outcome.INTERRUPTED]


#: After an interruption, how long (wall s) the loop has to notice it at its next sample
#: before its task is cancelled outright (a stalled link must not keep the process alive).
INTERRUPT_GRACE_S = 3.0


@dataclass(slots=True)
class Status:
    """What a progress display shows, once per cycle."""

    t_ms: int
    phase: str
    volumes: Volumes
    alarms: list[str]
    sample: Sample


@dataclass(slots=True)
class Request:
    """An operator's (or a dashboard's) request, as queued for the next cycle."""

    trigger: str
    cause: str
    answer: asyncio.Future[str] | None = None
    #: the loop has begun to apply it: it can no longer expire
    taken: bool = False


@dataclass(slots=True)
class _Run:
    alarms: list[AlarmOut] = field(default_factory=list)
    safe_ms: int = 0
    phase_ms: dict[str, int] = field(default_factory=dict)
    purification_ms: int = 0
    rinse_start_ml: float = 0.0
    error: str | None = None
    #: what ended the run early, when something did
    stop: StopOut | None = None
    interrupted: str | None = None


class Controller:
    """Runs one treatment on one HAL. `request()` is how an operator (or MQTT) acts."""

    def __init__(
        self,
        hal: Hal,
        rig: RigConfig,
        prescription: Prescription,
        *,
        on_status: Callable[[Status], None] | None = None,
        on_transition: Callable[[TransitionRecord], None] | None = None,
        on_event: Callable[[int, str, dict[str, Any]], None] | None = None,
        max_rig_s: float | None = None,
        auto_start: bool = True,
        gate_answers: gate.GateAnswers | None = None,
        auto_resume_s: float | None = None,
    ) -> None:
        self.hal = hal
        self.rig = rig
        self.rx = prescription
        self.on_status = on_status
        self.machine = Treatment(prescription.mode, on_transition=self._transition)
        self.on_transition = on_transition
        #: alarms, HAL events, operator requests, the gate, errors: (rig ms, kind, body)
        self.on_event = on_event
        self.volumes = Volumes()
        self.auto_start = auto_start
        plan = sizing.plan(
            prescription,
            blood_max_ml_min=rig.pumps.blood.max_rate,
            loop_max_ml_min=rig.pumps.loop.max_rate,
        )
        self.max_rig_ms = int(1000 * (max_rig_s if max_rig_s is not None else 2 * plan.total_s))
        self.sample: Sample | None = None
        self.limits = FirmwareLimits.from_rig(rig)
        self._requests: asyncio.Queue[Request] = asyncio.Queue()
        self._sent: dict[str, float | str] = {}
        self._run = _Run()
        self._last_state_ms = 0
        self.pressure_zero: dict[str, float] = {}
        #: operator requests refused, with the reason (also for MQTT answers)
        self.rejected: list[str] = []
        self.traceback: str | None = None
        self.safety = Interlocks(rig, prescription)
        self.machine.alarm_clear = self.safety.clear_to_resume
        self.gate_answers = gate_answers
        self.gate_result: gate.GateResult | None = None
        self.override_note: str | None = None
        #: unattended runs (demo, benches): acknowledge and resume once clear this long
        self.auto_resume_s = auto_resume_s
        #: every alarm event and HAL event, in order, for the journal and MQTT
        self.alarm_log: list[AlarmEvent] = []
        self.hal_log: list[HalEvent] = []
        self._clear_since_ms: int | None = None
        #: why --auto-resume holds back (an alarm that keeps coming back), once said
        self._auto_resume_held: str | None = None
        #: hazards raised since the machine last left `alarm` (what a resume must check)
        self._episode: set[str] = set()
        #: a resume being checked at low flow until then (session ms)
        self._check_until_ms: int | None = None
        self._losses_told = 0
        #: a resume in progress, not yet restored: nothing of it goes to the checkpoints
        self.resuming = False
        #: the journal session of this run, when journaled
        self.session_id: int | None = None
        #: the firmware's clock at the session's start: every time this controller shows,
        #: journals or publishes is session time, `sample.t_ms - t0_ms` (0 on the simulated
        #: rig, the firmware's uptime at the first sample over serial)
        self.t0_ms: int | None = None
        self._interrupt: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._running = False
        #: the run is over: its outcome is final
        self.ended = False

    # -- operator -----------------------------------------------------------------------
    def request(
        self, trigger: str, cause: str = "operator", answer: asyncio.Future[str] | None = None
    ) -> Request:
        """Queue an operator action; it is applied at the next cycle (refused if illegal).

        `answer` gets the result ("done", "refused: why", "failed: why") once applied. A
        remote caller that stops waiting cancels it before the loop has `taken` it, and the
        request then expires unapplied: an action must never land after whoever asked for
        it was told it would not. Once taken, the caller waits for the real result.
        """
        request = Request(trigger, cause, answer)
        self._requests.put_nowait(request)
        return request

    # -- one cycle ----------------------------------------------------------------------
    def interrupt(self, cause: str) -> None:
        """End the run at the next sample (a signal handler calls this): the rig is commanded
        safe, the interruption journaled, the summary made. A second call, or a loop that
        has not reached a sample within INTERRUPT_GRACE_S, cancels the run outright; the
        safe state is still commanded on the way out."""
        task = self._task
        first = self._interrupt is None
        self._interrupt = self._interrupt or cause
        if task is None or task.done():
            return
        if not first or not self._running:  # a second signal, or nothing runs yet to stop
            task.cancel()
        else:
            asyncio.get_running_loop().call_later(INTERRUPT_GRACE_S, task.cancel)

    @property
    def interrupt_cause(self) -> str | None:
        return self._interrupt

    def claim_task(self) -> None:
        """The task an interruption cancels if the loop does not notice it in time."""
        self._task = asyncio.current_task()

    def journal_unavailable(self, t_ms: int, reason: str | None) -> None:
        """The journal's health, from whoever writes it (the recorder): an alarm, raised or
        cleared at the next evaluation, that never stops the therapy by itself."""
        self.safety.journal_unavailable(t_ms, reason)

    def _rebased(self, sample: Sample) -> Sample:
        """The sample in session time (see `t0_ms`)."""
        if self.t0_ms is None:
            origin = self.hal.clock_origin_ms
            self.t0_ms = origin if origin is not None else sample.t_ms
        if self.t0_ms == 0:
            return sample  # the simulated rig: no copy on the hot path
        t = sample.t_ms - self.t0_ms
        if self.sample is not None and t < self.sample.t_ms - self.rig.sample_period_ms:
            # the firmware restarted (a power-on reset, a new process): its clock began
            # again; session time goes on from the last sample instead of jumping back
            self.t0_ms = sample.t_ms - self.sample.t_ms - self.rig.sample_period_ms
            t = sample.t_ms - self.t0_ms
        return dataclasses.replace(sample, t_ms=t)

    async def _cycle(self) -> Sample:
        """Read one sample and do the bookkeeping every cycle needs, in every state."""
        if self._interrupt is not None:
            raise Interrupted(self._interrupt)
        sample = self._rebased(await self.hal.next_sample())
        prev = self.sample
        self.sample = sample
        self.machine.now_ms = sample.t_ms
        dt = sample.t_ms - prev.t_ms if prev is not None else 0
        phase = self.machine.phase
        self._run.phase_ms[phase] = self._run.phase_ms.get(phase, 0) + dt
        if phase == "purification":
            self._run.purification_ms += dt
        if sample.safe and prev is not None:
            self._run.safe_ms += dt
        if phase in ACCOUNTED:
            # plasma still exchanged under an alarm's reduced flows counts for its phase
            self.volumes.update(sample, self._acting_phase())
        else:
            self.volumes.last_t_ms = sample.t_ms
        hal_events = self.hal.drain_events()
        if hal_events:
            t0 = self.t0_ms or 0
            if t0:  # over serial they carry the firmware's clock: session time, as the rest
                hal_events = [dataclasses.replace(h, t_ms=h.t_ms - t0) for h in hal_events]
            self.hal_log += hal_events
            for h in hal_events:
                self._emit(h.t_ms, "hal", {"kind": str(h.kind), "detail": h.detail})
        await self.hal.heartbeat()
        if self.on_status is not None:
            alarms = sorted(self.safety.alarms.active)
            self.on_status(Status(sample.t_ms, phase, self.volumes, alarms, sample))
        return sample

    async def _wait(self, seconds: float, check: Callable[[Sample], None] | None = None) -> Sample:
        """Let `seconds` of rig time pass, cycling; `check` may raise on every sample."""
        sample = await self._cycle()
        end = sample.t_ms + int(seconds * 1000)
        while sample.t_ms < end:
            sample = await self._cycle()
            if check is not None:
                check(sample)
        return sample

    async def _command(self, sp: phases.Setpoints) -> None:
        """Send what differs from what was last acknowledged, in a safe order.

        Commands reach the firmware one by one and it checks its limits between them, so
        the order matters: the clamp opens before any pump speeds up, pumps slow down
        before any speeds up, and the clamp closes only after the pumps have stopped
        (a blood pump against a closed clamp trips the return-pressure limit).
        """
        sent = self._sent
        closing = sp.valves.get("venous_clamp") == "closed" and sent.get("venous_clamp") != "closed"
        for name, position in sp.valves.items():
            if sent.get(name) != position and not (closing and name == "venous_clamp"):
                await self.hal.set_valve(name, position)
                sent[name] = position
        changes = [(n, r) for n, r in sp.pumps.items() if sent.get(n) != r]

        def order(change: tuple[str, float]) -> tuple[bool, bool]:
            name, rate = change
            rising = rate > float(sent.get(name, 0.0))
            # slowing: blood last, so plasma never exceeds its share; rising: blood first
            return (rising, (name == "blood") != rising)

        for name, rate in sorted(changes, key=order):
            await self.hal.set_pump(name, rate)
            sent[name] = rate
        if closing:
            await self.hal.set_valve("venous_clamp", "closed")
            sent["venous_clamp"] = "closed"

    async def _stop_all(self, clamp: str = "closed") -> None:
        await self._command(phases.Setpoints.stopped(clamp=clamp))

    # -- self-test and priming ----------------------------------------------------------
    async def self_test(self) -> None:
        """SPEC 4 self_test; each failure raises StepFailed naming the part."""
        info = self.hal.info
        if info.protocol_version != PROTOCOL_VERSION:
            raise StepFailed(
                f"link: firmware speaks protocol {info.protocol_version}, "
                f"controller {PROTOCOL_VERSION}"
            )
        await self._load_limits()
        sample = await self._cycle()
        for name in SENSOR_NAMES:
            reading = sample.sensors[name]
            if not reading.valid:
                raise StepFailed(f"sensor {name}: reading {reading.value:g} is not plausible")
        for name in DETECTOR_NAMES:
            if sample.detectors[name]:
                raise StepFailed(f"detector {name}: reports an alarm at rest")
        for name in PRESSURE_NAMES:
            value = sample.sensors[name].value
            if abs(value) > ZERO_TOLERANCE_MMHG:
                raise StepFailed(f"pressure sensor {name}: {value:.0f} mmHg at rest, cannot zero")
            self.pressure_zero[name] = value
        try:
            await self.hal.arm()
        except CommandRefused as exc:
            raise StepFailed(f"firmware refuses to arm: {exc.code}") from exc
        self._sent.clear()
        for position in ("open", "closed"):
            await self.hal.set_valve("venous_clamp", position)
            self._sent["venous_clamp"] = position
            seen = await self._valve_settles("venous_clamp", position)
            if seen != position:
                raise StepFailed(f"venous clamp: commanded {position}, reports {seen}")
        for name in PUMP_NAMES:
            await self._pump_check(name)

    async def _load_limits(self) -> None:
        """Upload the firmware's own limits and read them back; a mismatch refuses."""
        try:
            await self.hal.upload_limits(self.limits)
        except (CommandRefused, AlsError) as exc:
            raise StepFailed(f"firmware limits: {exc}") from exc

    async def _valve_settles(self, name: str, position: str) -> str:
        """The position the valve reports within VALVE_SETTLE_S of rig time.

        Over a serial line the next sample may have left the firmware before the command
        arrived, and a real clamp takes tens of milliseconds to move: one stale sample is
        not a failed clamp, a clamp that has not moved after the settle time is.
        """
        sample = await self._cycle()
        end = sample.t_ms + int(VALVE_SETTLE_S * 1000)
        while sample.valves[name] != position and sample.t_ms < end:
            sample = await self._cycle()
        return sample.valves[name]

    async def _pump_check(self, name: str) -> None:
        rate = SELF_TEST_RATE[name]
        if name == "blood":
            await self.hal.set_valve("venous_clamp", "open")
        await self.hal.set_pump(name, rate)
        sample = await self._wait(SELF_TEST_PUMP_S)
        measured = sample.pumps[name].measured
        await self.hal.set_pump(name, 0.0)
        if name == "blood":
            await self.hal.set_valve("venous_clamp", "closed")
        if sample.safe:
            raise StepFailed(f"pump {name}: firmware went safe ({sample.safe_reason})")
        if abs(measured - rate) > ENCODER_TOLERANCE * rate:
            raise StepFailed(f"pump {name}: commanded {rate:g}, encoder reads {measured:.1f}")

    async def prime(self) -> None:
        """Saline through the blood side (and the loop when the mode has one), no air."""

        def no_air(sample: Sample) -> None:
            if sample.detectors["air_return"]:
                raise StepFailed("priming: air detected in the return line")
            if sample.safe:
                raise StepFailed(f"priming: firmware went safe ({sample.safe_reason})")

        target = sizing.PRIME_BLOOD_SIDE_ML
        loop_target = sizing.PRIME_LOOP_ML if self.rx.has_loop else 0.0
        # a rig whose pumps are slower than the priming flow primes at their maximum (the
        # firmware refuses more); the loop runs until it holds its own volume too
        blood = min(sizing.PRIME_FLOW_ML_MIN, self.rig.pumps.blood.max_rate)
        pumps = dict.fromkeys(PUMP_NAMES, 0.0)
        pumps["blood"] = blood
        if loop_target:
            pumps["loop"] = min(blood * loop_target / target, self.rig.pumps.loop.max_rate)
        await self._command(
            phases.Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})
        )
        primed = looped = 0.0
        sample = await self._cycle()
        while primed < target or looped < loop_target:
            last = sample.t_ms
            sample = await self._cycle()
            no_air(sample)
            primed += sample.pumps["blood"].measured * (sample.t_ms - last) / 60000.0
            looped += sample.pumps["loop"].measured * (sample.t_ms - last) / 60000.0
        await self._stop_all()

    # -- treatment ----------------------------------------------------------------------
    def _progress(self, sample: Sample) -> phases.Progress:
        v = self.volumes
        return phases.Progress(
            phase_s=self.machine.phase_s(),
            exchanged_ml=v.exchanged_ml,
            processed_ml=v.processed_ml,
            patient_plasma_ml=v.patient_plasma_ml,
            heparin_ml=v.pumped_ml["heparin"],
            blood_rinsed_ml=v.pumped_ml["blood"] - self._run.rinse_start_ml,
            outer_chamber_ml=sample.sensors["outer_chamber"].value,
            inner_chamber_ml=sample.sensors["inner_chamber"].value,
            purification_s=self._run.purification_ms / 1000.0,
        )

    def _setpoints(self, phase: str, pr: phases.Progress) -> phases.Setpoints | None:
        rx = self.rx
        if phase == "connecting":
            return phases.connecting(rx, pr)
        if phase == "exchange":
            return phases.exchange(rx, pr)
        if phase == "exchange_collect":
            return phases.exchange_collect(rx, pr)
        if phase == "purification":
            return phases.purification(rx, pr)
        if phase == "rinse_back":
            return phases.rinse_back(rx, pr)
        if phase == "paused":
            return phases.paused(rx, pr, self.rig.alarms.minimum_blood_flow_ml_min)
        return None  # alarm, fault, done: nothing is commanded but the safe state

    async def _advance(self, phase: str, pr: phases.Progress) -> None:
        """Move on measured progress (SPEC 4), never on elapsed time alone."""
        rx = self.rx
        if phase == "connecting" and phases.connected(rx, pr):
            await self._fire("connected", "blood flow at prescription")
        elif phase == "exchange":
            if phases.exchange_done(rx, pr) and not rx.has_loop:
                await self._fire("exchange_complete", f"exchanged {pr.exchanged_ml:.0f} mL")
            elif phases.collection_due(rx, pr):
                await self._fire(
                    "collect", f"{rx.exchange_ml - pr.exchanged_ml:.0f} mL to exchange"
                )
        elif phase == "exchange_collect" and phases.exchange_done(rx, pr):
            await self._fire("exchange_complete", f"exchanged {pr.exchanged_ml:.0f} mL")
        elif phase == "purification" and phases.purification_done(rx, pr):
            await self._fire(
                "purification_complete",
                f"processed {pr.processed_ml:.0f} mL in {pr.purification_s / 60:.0f} min"
                + (
                    f", {pr.patient_plasma_ml:.0f} mL of the patient's plasma"
                    if rx.purification_end.patient_plasma_ml is not None
                    else ""
                ),
            )
        elif phase == "rinse_back" and phases.rinse_back_done(pr):
            await self._fire("rinsed", f"{pr.blood_rinsed_ml:.0f} mL rinsed back")

    async def _fire(self, trigger: str, cause: str) -> None:
        """A transition the phases call for must happen; the machine refusing it is a bug,
        and a bug ends in the safe state (`fault`), never in a treatment that runs on."""
        if not await getattr(self.machine, trigger)(cause=cause):
            raise StepFailed(f"the machine refused {trigger} in {self.machine.phase} ({cause})")

    async def _apply_requests(self) -> None:
        t = self.sample.t_ms if self.sample is not None else 0
        while not self._requests.empty():
            request = self._requests.get_nowait()
            trigger, cause, answer = request.trigger, request.cause, request.answer
            if answer is not None and answer.cancelled():
                self._emit(t, "operator", {"request": trigger, "cause": cause, "result": EXPIRED})
                continue
            request.taken = True
            result = "done"
            try:
                if trigger == "acknowledge":
                    self.safety.alarms.acknowledge(t)
                    continue
                if trigger == "pause_audio":
                    self.safety.alarms.pause_audio(t)
                    continue
                resuming = trigger == "resume" and self.machine.phase == "alarm"
                if resuming and not self.safety.clear_to_resume():
                    raise IllegalRequest(
                        "cannot resume: "
                        + (", ".join(self.safety.alarms.conditions_present()) or "")
                        + " (conditions present or alarms not acknowledged)"
                    )
                if trigger in ("resume", "stop") and self.sample is not None and self.sample.safe:
                    await self._arm_for(trigger)
                if trigger == "start" and self.machine.phase == "ready":
                    self._gate_still_passes()
                    self.safety.start_accounting(self.sample)  # type: ignore[arg-type]
                    cause = f"{cause}; {self.override_note}" if self.override_note else cause
                acting = self._interrupted_phase()
                episode = set(self._episode) if self.machine.phase == "alarm" else set()
                await self.machine.request(trigger, cause)
                if trigger == "resume" and episode & CHECKED_AT_LOW_FLOW:
                    self._check_until_ms = t + int(self.rig.alarms.resume_check_s * 1000)
                if trigger == "resume" and not cause.startswith("auto:"):
                    self._auto_resume_held = None  # a person looked: auto-resume may go on
                if trigger in ("stop", "end"):
                    self._note_stop(cause, acting)
            except (IllegalRequest, CommandRefused) as exc:
                self.rejected.append(f"{trigger}: {exc}")
                result = f"refused: {exc}"
            except Exception as exc:  # the loop's fault handler takes it from here
                result = f"failed: {exc}"
                raise
            finally:
                self._emit(t, "operator", {"request": trigger, "cause": cause, "result": result})
                if answer is not None and not answer.done():
                    answer.set_result(result)

    def _judge_gate(self, sample: Sample) -> gate.GateResult:
        """The checklist and this sample's MAP against starting."""
        reading = sample.sensors["map"]
        return gate.evaluate(
            self.rx,
            self.gate_answers,
            reading.value if reading.valid else None,
            self.rig.alarms.map_low_mmhg,
        )

    def _gate_still_passes(self) -> None:
        """A start held at `ready` may come long after the pre-start checks: the MAP and the
        alarms are judged again, now, and a start they would refuse is refused."""
        result = self._judge_gate(self.sample)  # type: ignore[arg-type]
        present = self.safety.alarms.conditions_present()
        reasons = result.reasons if not result.allowed else []
        if present:
            reasons = [*reasons, "alarm conditions present: " + ", ".join(present)]
        if reasons:
            raise IllegalRequest("cannot start: " + "; ".join(reasons))

    async def _arm_for(self, trigger: str) -> None:
        try:
            if self.sample is not None and self.sample.safe_reason is SafeReason.BOOT:
                await self.hal.upload_limits(self.limits)  # a reset forgot them
            await self.hal.arm()
        except CommandRefused as exc:
            raise IllegalRequest(f"cannot {trigger}: firmware refuses to arm ({exc.code})") from exc
        self._sent.clear()

    def _evaluate_safety(self, sample: Sample) -> Verdict:
        """Interlocks first, every cycle (ARCHITECTURE: safety before the state machine)."""
        v = self.volumes
        treating = self.machine.phase in ACCOUNTED
        verdict = self.safety.evaluate(
            sample,
            v.fluid_balance_ml,
            v.pumped_ml["heparin"],
            treating=treating,
            allowed_balance_ml=self._allowed_balance_ml(),
            commanded_valves={n: str(self._sent[n]) for n in VALVE_NAMES if n in self._sent},
        )
        for reason in (SafeReason.HEARTBEAT, SafeReason.BOOT, SafeReason.SENSOR):
            # raised when the firmware goes safe; latched: it waits for the operator
            fresh = self.safety.safe_edge and sample.safe_reason is reason
            self.safety.firmware_safe(sample.t_ms, reason, fresh)
        self._log_alarms()
        return verdict

    def _log_alarms(self) -> None:
        events = self.safety.alarms.drain()
        self.alarm_log += events
        for e in events:
            if e.kind == "raised":
                self._run.alarms.append(AlarmOut(t_s=e.t_ms / 1000.0, cause=e.alarm))
                self._episode.add(e.alarm.split(":", 1)[0])
            self._emit(e.t_ms, "alarm", asdict(e))
        losses = self.safety.return_line.losses
        while self._losses_told < len(losses):
            start, end, ml = losses[self._losses_told]
            self._losses_told += 1
            self._emit(end, "blood_loss", {"estimate_ml": ml, "from_ms": start, "to_ms": end})

    def _emit(self, t_ms: int, kind: str, body: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(t_ms, kind, body)

    def _allowed_balance_ml(self) -> float:
        v = self.volumes
        return balance.allowed_balance_ml(
            self.rx,
            v.pumped_ml["heparin"],
            self._run.purification_ms / 1000.0,
            v.patient_plasma_ml,
        )

    def _within_prescription(self, pumps: dict[str, float]) -> dict[str, float]:
        """The prescription's limits over whatever the phase and safety asked for: no more
        exchanged, processed or drawn than prescribed, in any state (balance.py), and the
        patient's balance held to what the prescription allows by now."""
        v = self.volumes
        done = {
            "exchanged_ml": v.exchanged_ml,
            "processed_ml": v.processed_ml,
            "patient_plasma_ml": v.patient_plasma_ml,
        }
        phase = self._interrupted_phase()
        for name in balance.over_prescription(
            self.rx, phase, done, self._run.purification_ms / 1000.0
        ):
            pumps[name] = 0.0
        balance.guard(
            pumps, v.fluid_balance_ml, self._allowed_balance_ml(), balance.margin_ml(self.rx)
        )
        return pumps

    async def _auto_resume(self, sample: Sample) -> None:
        if self.auto_resume_s is None or self.machine.phase != "alarm":
            self._clear_since_ms = None
            return
        if self.safety.alarms.conditions_present():
            self._clear_since_ms = None
            return
        if self._auto_resume_held is not None:
            return  # held until a person resumes (then it plays the operator again)
        recurring = self._recurring(sample.t_ms)
        if recurring is not None:
            self._auto_resume_held = recurring
            self._emit(sample.t_ms, "auto_resume_held", {"why": recurring})
            return
        if self._clear_since_ms is None:
            self._clear_since_ms = sample.t_ms
        elif sample.t_ms - self._clear_since_ms >= self.auto_resume_s * 1000:
            self.request("acknowledge", "auto: conditions gone")
            self.request("resume", "auto: conditions gone")
            self._clear_since_ms = None

    def _recurring(self, t_ms: int) -> str | None:
        """Why `--auto-resume` must not resume now: an alarm of this stop keeps coming back
        (the rig's auto_resume_max raises within auto_resume_window_s), so resuming would
        only loop into a fault that is still there. A person must look."""
        lim = self.rig.alarms
        since = t_ms - int(lim.auto_resume_window_s * 1000)
        raised: dict[str, int] = {}
        for e in self.alarm_log:
            if e.kind == "raised" and e.t_ms >= since:
                raised[e.alarm] = raised.get(e.alarm, 0) + 1
        for alarm_id in self.safety.alarms.active:
            count = raised.get(alarm_id, 0)
            if count >= lim.auto_resume_max:
                return (
                    f"{alarm_id} raised {count} times in {lim.auto_resume_window_s / 60:g} min:"
                    " not resumed automatically; the operator must find the cause"
                )
        return None

    async def _link_trouble(self, exc: LinkError) -> None:
        """A sample that did not come or a command that got no answer: the link is lost.

        Not the end of the treatment: the firmware stops the pumps by itself when the
        heartbeats stop (its watchdog), the backend reconnects with backoff, and the run
        waits in `alarm` with `link_lost` raised; once frames come again, the firmware's
        state is read from them and the operator (or `--auto-resume`) resumes as after any
        alarm. Only after the rig's `link_give_up_s` does the run end, `interrupted` and, on
        a serial rig, resumable with `--resume`.
        """
        self._link_timeouts += 1
        self._sent.clear()  # what the firmware holds is unknown: everything is sent again
        last = self.sample.t_ms if self.sample is not None else 0
        # stamped when it was noticed: the last sample plus the silence that told
        self.safety.link_lost(last + self._link_timeouts * self.rig.link_lost_ms, True)
        self._log_alarms()
        if self.machine.phase not in ("alarm", "fault", "done"):
            await self.machine.alarm(cause=f"link lost: {exc}")
        lost_s = self._link_timeouts * self.rig.link_lost_ms / 1000
        if lost_s >= self.rig.link_give_up_s:
            self._interrupt = (
                f"link lost for {lost_s:g} s (the firmware is safe by its watchdog): {exc}"
            )
            raise Interrupted(self._interrupt)

    async def _treat(self) -> None:
        m = self.machine
        self._link_timeouts = 0
        while m.phase != "done":
            try:
                sample = await self._cycle()
                if self._link_timeouts:
                    self._link_timeouts = 0
                    self.safety.link_lost(sample.t_ms, False)
                    self._sent.clear()
                if not await self._treat_cycle(sample):
                    break
            except LinkError as exc:
                await self._link_trouble(exc)

    async def _treat_cycle(self, sample: Sample) -> bool:
        """One cycle of the treatment; False when the run ends where it stands."""
        m = self.machine
        if sample.t_ms > self.max_rig_ms:
            if m.phase == "alarm":
                return False  # an unattended alarm ends the run where it stands
            raise StepFailed(f"treatment exceeded {self.max_rig_ms / 3.6e6:.1f} h of rig time")
        await self._apply_requests()  # first: an acknowledge must be seen by this cycle
        verdict = self._evaluate_safety(sample)
        await self._auto_resume(sample)
        phase = m.phase
        if phase == "connecting":  # the flow sweeps a range: what pressures do with it
            self.safety.return_line.learn_ramp(sample)
            self.safety.pressure_pair.learn_ramp(sample)
        if (
            verdict.acting
            and phase not in ("alarm", "fault", "done")
            and (phase != "rinse_back" or verdict.safe_state or "blood" in verdict.stop)
        ):  # rinse-back goes on unless the blood pump itself must stop
            await m.alarm(cause=", ".join(sorted(verdict.acting)))
            phase = m.phase
        if verdict.safe_state and not sample.safe:
            await self.hal.enter_safe()
            self._sent.clear()
        elif self.safety.safe_edge and phase not in ("alarm", "fault", "done"):
            hazard = REASON_HAZARD.get(sample.safe_reason, "firmware_safe")
            await m.alarm(cause=f"firmware safe state: {sample.safe_reason} ({hazard})")
            self._sent.clear()
            return True
        if sample.safe or verdict.safe_state:
            self._sent.clear()  # nothing can be commanded; everything is resent on resume
            return True
        pr = self._progress(sample)
        checking = self._checking(sample, phase)
        self.safety.return_line.checking = checking
        if (phase == "alarm" and not verdict.acting) or checking:
            # the hazard has gone but nobody resumed (or a resume is being checked at low
            # flow): blood circulating at minimum, the plasma side stopped
            sp: phases.Setpoints | None = phases.paused(
                self.rx, pr, self.rig.alarms.minimum_blood_flow_ml_min
            )
        else:
            sp = self._setpoints(self._acting_phase(), pr)
        if sp is not None:
            sp = phases.Setpoints(self._within_prescription(verdict.apply(sp.pumps)), sp.valves)
            try:
                await self._command(sp)
            except CommandRefused as exc:
                if exc.code != "in_safe_state":
                    raise
                self._sent.clear()  # it went safe since the sample: the next one says why
                return True
        if phase != "alarm" and not checking:
            await self._advance(phase, pr)
        return True

    def _checking(self, sample: Sample, phase: str) -> bool:
        """A resume from an alarm that only shows while blood flows (a lost or occluded
        return line, access, air) is checked first: `resume_check_s` at the minimum blood
        flow, the plasma side stopped, every detector judging (the return line against its
        expected level at that flow). An alarm meanwhile takes the run back to `alarm`
        before full flow ever returns; a quiet check lets the phase go on."""
        until = self._check_until_ms
        if until is None:
            return False
        if phase == "alarm":
            self._check_until_ms = None
            self._emit(sample.t_ms, "resume_check", {"result": "failed: the alarm came back"})
            return False
        if sample.t_ms < until:
            return True
        self._check_until_ms = None
        self._emit(
            sample.t_ms,
            "resume_check",
            {"result": f"passed: {self.rig.alarms.resume_check_s:g} s at minimum flow"},
        )
        return False

    def _interrupted_phase(self) -> str:
        """The treatment phase a pause or an alarm holds, else the phase itself."""
        m = self.machine
        if m.phase in ("alarm", "paused") and m.interrupted is not None:
            return leaf(m.interrupted)
        return m.phase

    def _acting_phase(self) -> str:
        """The phase whose setpoints apply: the interrupted one while in `alarm`."""
        phase = self.machine.phase
        if phase == "alarm" and self.machine.interrupted is not None:
            return self.machine.interrupted.rsplit(".", 1)[-1]
        return phase

    async def _gate(self) -> bool:
        """The pre-start gate at `ready`; False (and the run ends) when refused."""
        sample = await self._cycle()
        reading = sample.sensors["map"]
        result = self._judge_gate(sample)
        self.gate_result = result
        answers = self.gate_answers.checklist.model_dump() if self.gate_answers else None
        self._emit(
            sample.t_ms,
            "pre_start",
            {
                **result.as_event(),
                "checklist": answers,
                "map_mmhg": round(reading.value, 1) if reading.valid else None,
            },
        )
        if not result.allowed:
            why = "start refused: " + "; ".join(result.reasons)
            await self.machine.end(cause=why)
            self._note_stop(f"pre-start gate: {why}", "ready")
            return False
        if result.override is not None:
            self.rx = result.prescription
            self.safety.rx = result.prescription
            self.machine.mode = result.prescription.mode
            o = result.override
            self.override_note = (
                f"override by {o.clinician} ({o.reason}); consent confirmed; "
                f"mode {self.rx.mode}, blood {self.rx.blood_flow_ml_min:g} mL/min"
            )
        return True

    async def run(self) -> Summary:
        """Self-test, priming, then the treatment; always returns a summary."""
        return await self._guarded(self._run_all)

    async def _run_all(self) -> None:
        m = self.machine
        await m.begin(cause="run started")
        await self.self_test()
        await m.self_test_passed(cause="every part answered")
        await self.prime()
        await m.primed(cause="prime volume reached, no air")
        if await self._gate():
            if self.auto_start:
                # the scale baseline first: the checkpoint of `connecting` has it
                self.safety.start_accounting(self.sample)  # type: ignore[arg-type]
                await m.start(
                    cause="gate passed"
                    if self.gate_result and not self.gate_result.override
                    else getattr(self, "override_note", "gate passed")
                )
            if self.auto_start or await self._hold_at_ready():
                await self._treat()
        await self._stop_all()

    async def _hold_at_ready(self) -> bool:
        """Primed and checked, the rig waits at `ready` for an explicit start (a remote
        `start_treatment`, when a rig allows it) or an `end`; True once started."""
        while self.machine.phase == "ready":
            sample = await self._cycle()
            if sample.t_ms > self.max_rig_ms:
                raise StepFailed(f"nobody started the treatment in {self.max_rig_ms / 3.6e6:.1f} h")
            self._evaluate_safety(sample)
            await self._apply_requests()
        return self.machine.phase == "connecting"

    async def resume(
        self,
        checkpoint: dict[str, Any],
        history: list[TransitionRecord],
        confirm: Callable[[str], Awaitable[bool]],
    ) -> Summary:
        """Continue a session the journal kept after the controller died (`--resume`).

        The firmware went safe when the heartbeats stopped. Nothing moves until a person
        has seen the firmware's state and confirmed; then the limits are uploaded and read
        back, the firmware is armed explicitly, and the interrupted phase goes on from the
        journaled volumes.
        """

        self.resuming = True  # nothing of this run is checkpointed until restored

        async def body() -> None:
            info = self.hal.info
            if info.protocol_version != PROTOCOL_VERSION:
                raise ResumeFailed(
                    f"firmware speaks protocol {info.protocol_version}, "
                    f"controller {PROTOCOL_VERSION}"
                )
            if info.rig_id != self.rig.rig_id:
                raise ResumeFailed(
                    f"this is rig {info.rig_id!r}, the session ran on {self.rig.rig_id!r}"
                )
            # the session's clock goes on from where it was (a restart is caught below)
            self.t0_ms = int(checkpoint.get("t0_ms", 0))
            # read before any heartbeat: a firmware still running must not be kept running
            sample = self._rebased(await self.hal.next_sample())
            if not sample.safe:
                raise ResumeFailed(
                    "the firmware is running, so a controller may still be driving it;"
                    " nothing was commanded"
                )
            moved = self._moved_since(checkpoint, sample)
            if moved is None or sample.safe_reason is SafeReason.BOOT:
                raise ResumeFailed(
                    "the firmware restarted since the checkpoint (its clock and encoder totals"
                    " began again): what moved meanwhile is unknown; rinse back and end by hand"
                )
            await self._load_limits()
            seen = f"{sample.state} ({sample.safe_reason})"
            phase = leaf(checkpoint["state"])
            question = (
                f"firmware {seen}; resume {phase} at exchanged "
                f"{checkpoint['exchanged_ml']:.0f} mL, processed "
                f"{checkpoint['pumped_ml']['loop']:.0f} mL?"
            )
            if not await self._while_asking(confirm(question)):
                raise ResumeDeclined(f"resume of {phase} declined; the rig stays safe")
            if phase != "alarm":
                # an explicit arm, after the confirmation; in `alarm` the rig stays safe and
                # the operator's acknowledge and resume arm it, as in an uninterrupted run
                await self._arm_for("resume")
                sample = await self._cycle()
                end = sample.t_ms + int(VALVE_SETTLE_S * 1000)
                while sample.safe and sample.t_ms < end:  # in flight before the arm
                    sample = await self._cycle()
                if sample.safe:
                    raise ResumeFailed(f"firmware stays safe after arming ({sample.safe_reason})")
            self._restore(checkpoint, history, moved)
            self._emit(
                self.sample.t_ms if self.sample else 0,
                "resumed",
                {"phase": phase, "firmware_was": seen, "moved_while_away_ml": moved},
            )
            await self._treat()
            await self._stop_all()

        return await self._guarded(body)

    async def _while_asking(self, answer: Awaitable[bool]) -> bool:
        """Keep reading samples (and the link alive) while a person thinks."""
        task = asyncio.ensure_future(answer)
        try:
            while not task.done():
                await self._cycle()
        finally:
            if not task.done():
                task.cancel()
        return task.result()

    @staticmethod
    def _moved_since(cp: dict[str, Any], sample: Sample) -> dict[str, float] | None:
        """What the encoders counted after the checkpoint; None when the firmware's totals
        (or clock) went back, i.e. it restarted since."""
        then: dict[str, float] = cp.get("totals_ml") or {}
        now = sample.totals_ml
        if not then or not now or sample.t_ms < cp.get("t_ms", 0):
            return None
        if any(now[n] < then[n] for n in PUMP_NAMES):
            return None
        return {n: round(now[n] - then[n], 4) for n in PUMP_NAMES}

    def _restore(
        self, cp: dict[str, Any], history: list[TransitionRecord], moved: dict[str, float]
    ) -> None:
        """The journaled state back in place, plus what the pumps moved after the
        checkpoint until the watchdog stopped them (counted by the encoders)."""
        v = self.volumes
        v.pumped_ml.update(cp["pumped_ml"])
        v.exchanged_ml = cp["exchanged_ml"]
        v.collected_ml = cp["collected_ml"]
        v.last_t_ms = self.sample.t_ms if self.sample is not None else None
        state = leaf(cp["state"])
        acting = leaf(cp["interrupted"]) if state == "alarm" and cp["interrupted"] else state
        v.add_moved(moved, acting, bool(cp.get("collecting")))
        r = self._run
        r.phase_ms = dict(cp["phase_ms"])
        r.safe_ms = cp["safe_ms"]
        r.purification_ms = cp["purification_ms"]
        r.rinse_start_ml = cp["rinse_start_ml"]
        r.alarms = [AlarmOut(t_s=t, cause=cause) for t, cause in cp["raised"]]
        self.safety.restore(cp["scale_base"], cp["active_alarms"])
        self.safety.return_line.restore(cp.get("return_line"))
        self.safety.pressure_pair.restore(cp.get("pressure_pair"))
        now = self.sample.t_ms if self.sample is not None else 0
        self.machine.now_ms = now
        # `connecting` ramps the blood flow up from its entry: it starts again
        entered = now if state == "connecting" else cp["entered_ms"]
        self.machine.restore(cp["state"], cp["interrupted"], entered, history)
        self.resuming = False

    def checkpoint(self) -> dict[str, Any]:
        """All a resumed run needs, as plain data; the journal keeps the newest."""
        m = self.machine
        v = self.volumes
        r = self._run
        return {
            "t_ms": self.sample.t_ms if self.sample is not None else 0,
            "state": m.state,
            "interrupted": m.interrupted,
            "entered_ms": m.entered_ms,
            "pumped_ml": dict(v.pumped_ml),
            "exchanged_ml": v.exchanged_ml,
            "collected_ml": v.collected_ml,
            "phase_ms": dict(r.phase_ms),
            "safe_ms": r.safe_ms,
            "purification_ms": r.purification_ms,
            "rinse_start_ml": r.rinse_start_ml,
            "raised": [(a.t_s, a.cause) for a in r.alarms],
            "scale_base": self.safety.scale_base,
            "return_line": self.safety.return_line.state(),
            "pressure_pair": self.safety.pressure_pair.state(),
            "active_alarms": self.safety.alarms.snapshot(),
            # the encoders' own totals at this sample: a resume counts what moved after it
            "totals_ml": dict(self.sample.totals_ml) if self.sample is not None else {},
            # the firmware's clock at the session's start: session time = its clock - this
            "t0_ms": self.t0_ms or 0,
            "collecting": self.sample is not None
            and self.sample.valves.get("plasma_route") == "collect",
        }

    async def _guarded(self, body: Callable[[], Awaitable[None]]) -> Summary:
        m = self.machine
        self._task = asyncio.current_task()
        self._running = True
        try:
            await body()
        except (ResumeDeclined, ResumeFailed):
            raise  # refused before anything moved: the firmware is as it was found
        except Interrupted:
            await self._interrupted()
        except Exception as exc:  # the loop must end safe whatever happened
            self._run.error = "".join(traceback.format_exception_only(exc)).strip()
            self.traceback = traceback.format_exc()
            await self._safe_anyway()  # first: nothing below may stand in its way
            t = self.sample.t_ms if self.sample is not None else 0
            with contextlib.suppress(Exception):  # a dead journal must not hide the fault
                self._emit(t, "error", {"error": self._run.error, "traceback": self.traceback})
            if m.phase != "fault":
                with contextlib.suppress(Exception):
                    await m.fail(cause=self._run.error)
        except BaseException:  # cancelled, Ctrl-C: still command the safe state, then go
            await asyncio.shield(self._safe_anyway())
            task = self._task
            if self._interrupt is None or task is None or not task.cancelling():
                raise
            # cancelled because an interruption was not noticed in time (a stalled link,
            # a second Ctrl-C): the run still ends as an interruption, with its summary
            task.uncancel()
            await self._interrupted()
        self.ended = True  # the outcome holds from here (MQTT's final state says it)
        return self.summary()

    async def _interrupted(self) -> None:
        """The rig commanded safe, then the interruption journaled with its cause."""
        await self._safe_anyway()
        cause = self._interrupt or "interrupted"
        self._run.interrupted = cause
        t = self.sample.t_ms if self.sample is not None else 0
        with contextlib.suppress(Exception):  # a dead journal must not hide the stop
            self._emit(t, "interrupted", {"cause": cause, "phase": self.machine.phase})

    async def _safe_anyway(self) -> None:
        """Command the safe state; if even that fails, the firmware's watchdog takes over."""
        try:
            await self.hal.enter_safe()
        except Exception as exc:  # a dead link: nothing more can be sent
            failed = f"enter_safe failed: {exc}"
            self._run.error = f"{self._run.error}; {failed}" if self._run.error else failed

    # -- results ------------------------------------------------------------------------
    def _transition(self, record: TransitionRecord) -> None:
        if record.source == "alarm":
            self._episode = set()
        if record.dest == "rinse_back" and record.trigger != "resume":
            self._run.rinse_start_ml = self.volumes.pumped_ml["blood"]
        if self.on_transition is not None:
            self.on_transition(record)

    def _note_stop(self, cause: str, phase: str) -> None:
        """Who ended the treatment early and how far it had got (the summary's `stop`).

        `cause` is "who: why" as requests carry it ("mqtt dashboard: shift change")."""
        by, _, reason = cause.partition(": ")
        what, done, target, unit = self.target_progress(phase)
        progress = (
            f"{what} {done:.0f} of {target:.0f} {unit}" if target else f"{what} {done:.0f} {unit}"
        )
        self._run.stop = StopOut(
            by=by.strip() or "operator",
            reason=reason.strip(),
            phase=phase,
            t_s=(self.sample.t_ms / 1000.0) if self.sample is not None else 0.0,
            progress=progress,
            done=round(done, 1),
            target=round(target, 1) if target else None,
            unit=unit,
        )

    def target_progress(self, phase: str) -> tuple[str, float, float, str]:
        """(measure, done, prescribed, unit) of the phase's own goal: the exchange volume
        until the loop, then the purification's duration or processed volume."""
        rx, v = self.rx, self.volumes
        if phase == "purification" or (phase in ("rinse_back", "done") and rx.has_loop):
            end = rx.purification_end
            if end.duration_min is None and end.patient_plasma_ml is not None:
                return "patient plasma", v.patient_plasma_ml, end.patient_plasma_ml, "mL"
            if end.processed_plasma_ml is not None and end.duration_min is None:
                return "processed", v.processed_ml, end.processed_plasma_ml, "mL"
            minutes = self._run.purification_ms / 60000.0
            return "purification", minutes, end.duration_min or 0.0, "min"
        if rx.has_exchange:
            return "exchanged", v.exchanged_ml, rx.exchange_ml, "mL"
        return "processed", v.processed_ml, 0.0, "mL"

    def outcome(self) -> Outcome:
        return judge(self.machine.phase, self.machine.history, self._run.interrupted)

    def _outcome_detail(self, outcome: Outcome) -> str:
        """What the outcome word alone does not say (printed after it, never repeating it)."""
        r = self._run
        if outcome is Outcome.STOPPED and r.stop is not None:
            stop = r.stop
            why = f" ({stop.reason})" if stop.reason else ""
            return f"by {stop.by}{why} in {stop.phase} at {stop.progress}"
        if outcome is Outcome.INTERRUPTED:
            return f"{r.interrupted or 'the run did not end'} in {self.machine.phase}"
        if outcome is Outcome.FAULT:
            return r.error or "see the journal"
        if outcome is Outcome.ALARM:
            active = ", ".join(sorted(self.safety.alarms.active)) or "no alarm active"
            return f"{active} in {self._interrupted_phase()}"
        what, done, target, unit = self.target_progress("done")
        return f"{what} {done:.0f} of {target:.0f} {unit}, blood rinsed back"

    def summary(self) -> Summary:
        v = self.volumes
        outcome = self.outcome()
        held = max(v.collected_ml, 1.0)
        phases_s = {k: round(ms / 1000.0, 1) for k, ms in self._run.phase_ms.items()}
        return Summary(
            rig_id=self.rig.rig_id,
            backend=self.hal.backend,
            prescription=self.rx.name,
            mode=self.rx.mode,
            outcome=outcome,
            outcome_detail=self._outcome_detail(outcome),
            final_state=self.machine.phase,
            completed=outcome is Outcome.COMPLETED,
            stop=self._run.stop if outcome is Outcome.STOPPED else None,
            rig_time_s=(self.sample.t_ms / 1000.0) if self.sample else 0.0,
            phases_s=phases_s,
            volumes=VolumesOut(
                exchange_ml=round(v.exchanged_ml, 2),
                collected_ml=round(v.collected_ml, 2),
                processed_plasma_ml=round(v.processed_ml, 2),
                patient_plasma_ml=round(v.patient_plasma_ml, 2),
                passes=round(v.processed_ml / held, 2) if v.processed_ml else 0.0,
                filtrate_ml=round(v.pumped_ml["filtrate"], 2),
                substitution_ml=round(v.pumped_ml["substitution"], 2),
                replacement_ml=round(v.pumped_ml["replacement"], 2),
                return_ml=round(v.pumped_ml["return"], 2),
                plasma_ml=round(v.pumped_ml["plasma"], 2),
                blood_ml=round(v.pumped_ml["blood"], 2),
                heparin_ml=round(v.pumped_ml["heparin"], 3),
                fluid_balance_ml=round(v.fluid_balance_ml, 2),
            ),
            alarms=self._run.alarms,
            time_in_safe_s=round(self._run.safe_ms / 1000.0, 1),
            blood_lost_ml=round(self.safety.return_line.blood_lost_ml, 1),
            transitions=[
                TransitionOut(
                    t_s=t.t_ms / 1000.0,
                    source=t.source,
                    dest=t.dest,
                    trigger=t.trigger,
                    cause=t.cause,
                )
                for t in self.machine.history
            ],
            pre_start=GateOut(**self.gate_result.as_event()) if self.gate_result else None,
            error=self._run.error,
        )
