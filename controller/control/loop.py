"""The control loop: one sample in, commands out (docs/architecture.md: data flow).

Each cycle reads a sample, accounts volumes, heartbeats the firmware, applies operator
requests, evaluates the interlocks, lets the state machine advance on measured progress, and
commands the current phase's setpoints as safety allows (only what changed); then it
publishes the cycle's view. Time is the samples' rig time, never the wall clock, so a
six-hour treatment runs in seconds on the simulated rig.

Any exception inside the loop ends with the firmware commanded safe and the machine in
`fault`, the traceback kept for the summary: never a silent crash with pumps running.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.control import checkpoint as cps
from controller.control import gate as pre_start
from controller.control import steps
from controller.control import summary as summaries
from controller.control.accounting import ACCOUNTED, Accounting, Volumes
from controller.control.actuator import Actuator
from controller.control.checkpoint import Checkpoint
from controller.control.events import (
    Alarmed,
    Event,
    EventBus,
    HalReported,
    Occurred,
    Request,
    View,
)
from controller.control.guard import Guard
from controller.control.link import HELD, LinkWatch
from controller.control.operator import AutoResume, Operator, ResumeCheck, act
from controller.control.publisher import Publisher
from controller.control.resume import resume as resume_session
from controller.control.steps import StepFailed
from controller.errors import CommandRefused, LinkError
from controller.fsm import phases, plan
from controller.fsm.machine import IllegalRequest, TransitionRecord, Treatment
from controller.fsm.phases import PHASES, Setpoints
from controller.hal.base import FirmwareLimits, Hal, HalEvent
from controller.outcome import Outcome
from controller.rig import SafeReason, Sample
from controller.safety import gate
from controller.safety.alarms import AlarmEvent
from controller.safety.interlocks import FIRMWARE_SAFE_RAISED, REASON_HAZARD, Interlocks, Verdict
from controller.summary import AlarmOut, Summary


class Controller:
    """Runs one treatment on one HAL and publishes it on `bus`; `request()` (the request
    port) is how an operator, a dashboard or `--auto-resume` acts on it."""

    def __init__(
        self,
        hal: Hal,
        rig: RigConfig,
        prescription: Prescription,
        *,
        bus: EventBus | None = None,
        max_rig_s: float | None = None,
        auto_start: bool = True,
        gate_answers: gate.GateAnswers | None = None,
        auto_resume_s: float | None = None,
    ) -> None:
        self.hal = hal
        self.rig = rig
        self.rx = prescription
        self.bus = bus if bus is not None else EventBus()
        self.machine = Treatment(prescription, on_transition=self._transition)
        self.accounting = Accounting()
        self.actuator = Actuator(hal)
        self.operator = Operator(self.emit)
        #: unattended runs (demo, benches): acknowledge and resume once clear this long
        self.auto_resume = AutoResume(auto_resume_s, rig.alarms) if auto_resume_s else None
        self.auto_start = auto_start
        total_s = plan.plan(
            prescription,
            blood_max_ml_min=rig.pumps.blood.max_rate,
            loop_max_ml_min=rig.pumps.loop.max_rate,
        ).total_s
        self.max_rig_ms = int(1000 * (max_rig_s if max_rig_s is not None else 2 * total_s))
        self.sample: Sample | None = None
        self.limits = FirmwareLimits.from_rig(rig)
        self.pressure_zero: dict[str, float] = {}
        self.traceback: str | None = None
        self.safety = Interlocks(rig, prescription)
        self.machine.alarm_clear = self.safety.clear_to_resume
        self.gate_answers = gate_answers
        self.gate_result: gate.GateResult | None = None
        self.override_note: str | None = None
        #: every alarm event and HAL event, in order
        self.alarm_log: list[AlarmEvent] = []
        self.hal_log: list[HalEvent] = []
        #: hazards raised since the machine last left `alarm` (what a resume must check)
        self.episode: set[str] = set()
        #: a resume being checked at low flow
        self.resume_check = ResumeCheck(self.rig.alarms, self.emit)
        self._losses_told = 0
        self.link = LinkWatch(self)
        #: a resume in progress, not yet restored: nothing of it is checkpointed
        self.resuming = False
        #: the firmware's clock at the session's start: every time this controller shows,
        #: journals or publishes is session time, `sample.t_ms - t0_ms` (0 on the simulated
        #: rig, the firmware's uptime at the first sample over serial)
        self.t0_ms: int | None = None
        #: whatever happens, the run ends safe, with its summary
        self.guard = Guard(self)
        #: the run is over: its outcome is final
        self.ended = False
        self.publisher = Publisher(self)
        #: each phase's setpoints by (phase, regime): see `_setpoints`
        self._setpoints_by_regime: dict[tuple[str, tuple[bool, bool, bool]], Setpoints] = {}
        self._regimes_of: Prescription | None = None

    # -- the request port ---------------------------------------------------------------
    def request(
        self,
        trigger: str,
        cause: str = "operator",
        answer: asyncio.Future[str] | None = None,
        *,
        value: float | None = None,
    ) -> Request:
        return self.operator.request(trigger, cause, answer, value=value)

    def journal_unavailable(self, t_ms: int, reason: str | None) -> None:
        self.safety.journal_unavailable(t_ms, reason)

    # -- what others read -----------------------------------------------------------------
    @property
    def volumes(self) -> Volumes:
        return self.accounting.volumes

    @property
    def rejected(self) -> list[str]:
        return self.operator.rejected

    def treatment_phase(self) -> str:
        """The treatment phase a pause or an alarm holds, else the phase itself."""
        m = self.machine
        if m.phase in ("alarm", "paused") and m.interrupted is not None:
            return m.interrupted.rsplit(".", 1)[-1]
        return m.phase

    def acting_phase(self) -> str:
        """The phase whose setpoints apply: the interrupted one while in `alarm`."""
        m = self.machine
        if m.phase == "alarm" and m.interrupted is not None:
            return m.interrupted.rsplit(".", 1)[-1]
        return m.phase

    def outcome(self) -> Outcome:
        return summaries.outcome(self)

    def summary(self) -> Summary:
        return summaries.summarize(self)

    def checkpoint(self) -> Checkpoint:
        return cps.take(self)

    # -- publishing -----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if isinstance(event, Alarmed):
            self.publisher.checkpoint()  # the journal never holds an alarm its checkpoint missed
        self.bus.event(event)

    def publish(self) -> None:
        """After a cycle: the checkpoint when due, then the view."""
        self.publisher.cycle()

    def publish_checkpoint(self) -> None:
        self.publisher.checkpoint()

    def view(self) -> View:
        return self.publisher.view()

    async def _act(self, trigger: str, cause: str, value: float | None) -> str | None:
        return await act(self, trigger, cause, value)

    def _transition(self, record: TransitionRecord) -> None:
        if record.source == "alarm":
            self.episode = set()
        if record.dest == "rinse_back" and record.trigger != "resume":
            self.accounting.rinse_started()
        if self.resuming:
            return  # a resume that failed before restoring: its `fault` is not the session's
        # the checkpoint (already in the new state) goes first: the journal never holds a
        # transition that its newest checkpoint has not seen
        self.publisher.checkpoint()
        if record.dest == "connecting":
            self.bus.prescription(self.rx)
        self.bus.transition(record)

    # -- one cycle ----------------------------------------------------------------------
    def rebased(self, sample: Sample) -> Sample:
        """The sample in session time (see `t0_ms`)."""
        if self.t0_ms is None:
            origin = self.hal.clock_origin_ms
            self.t0_ms = origin if origin is not None else sample.t_ms
        prev = self.sample
        if self.t0_ms == 0 and (prev is None or sample.t_ms >= prev.t_ms):
            return sample  # the simulated rig: no copy on the hot path
        t = sample.t_ms - self.t0_ms
        if prev is not None and t < prev.t_ms - self.rig.sample_period_ms:
            # the firmware restarted (a power-on reset, a new process): its clock began
            # again; session time goes on from the last sample instead of jumping back
            self.t0_ms = sample.t_ms - prev.t_ms - self.rig.sample_period_ms
            t = sample.t_ms - self.t0_ms
        return dataclasses.replace(sample, t_ms=t)

    async def cycle(self) -> Sample:
        """Read one sample and do the bookkeeping every cycle needs, in every state."""
        self.guard.check()
        sample = self.rebased(await self.hal.next_sample())
        prev = self.sample
        self.sample = sample
        self.machine.now_ms = sample.t_ms
        self.accounting.update(sample, prev, self.machine.phase, self.acting_phase())
        hal_events = self.hal.drain_events()
        if hal_events:
            t0 = self.t0_ms or 0
            if t0:  # over serial they carry the firmware's clock: session time, as the rest
                hal_events = [dataclasses.replace(h, t_ms=h.t_ms - t0) for h in hal_events]
            self.hal_log += hal_events
            for h in hal_events:
                self.emit(HalReported(h))
        await self.hal.heartbeat()
        return sample

    async def step(self) -> Sample:
        """A cycle of a step (self-test, priming, a resume's checks): read and publish."""
        sample = await self.cycle()
        self.publish()
        return sample

    # -- safety ---------------------------------------------------------------------------
    def _evaluate_safety(self, sample: Sample, allowed_ml: float | None = None) -> Verdict:
        """Interlocks first, every cycle (docs/architecture.md: safety before the state machine).
        `allowed_ml`: the balance the prescription allows by now, when the caller has it."""
        v = self.accounting.volumes
        if allowed_ml is None:
            allowed_ml = self.accounting.allowed_balance_ml(self.rx)
        verdict = self.safety.evaluate(
            sample,
            v.fluid_balance_ml,
            v.pumped_ml["heparin"],
            treating=self.machine.phase in ACCOUNTED,
            allowed_balance_ml=allowed_ml,
            commanded_valves=self.actuator.valves,
        )
        edge = self.safety.safe_edge
        if edge or not self.safety.alarms.quiet:  # else each is absent and idle: a no-op
            for reason in FIRMWARE_SAFE_RAISED:
                # raised when the firmware goes safe; latched: it waits for the operator
                self.safety.firmware_safe(
                    sample.t_ms, reason, edge and sample.safe_reason is reason
                )
        self.log_alarms()
        return verdict

    def log_alarms(self) -> None:
        events = self.safety.alarms.drain()
        if events:
            self.alarm_log += events
            for e in events:
                if e.kind == "raised":
                    self.accounting.run.alarms.append(AlarmOut(t_s=e.t_ms / 1000.0, cause=e.alarm))
                    self.episode.add(e.alarm.split(":", 1)[0])
                self.emit(Alarmed(e))
        losses = self.safety.return_line.losses
        while self._losses_told < len(losses):
            start, end, ml = losses[self._losses_told]
            self._losses_told += 1
            self.emit(
                Occurred(end, "blood_loss", {"estimate_ml": ml, "from_ms": start, "to_ms": end})
            )

    async def arm_for(self, trigger: str) -> None:
        assert self.sample is not None
        try:
            await self.actuator.arm(
                self.limits, after_reset=self.sample.safe_reason is SafeReason.BOOT
            )
        except CommandRefused as exc:
            raise IllegalRequest(f"cannot {trigger}: firmware refuses to arm ({exc.code})") from exc

    # -- the treatment ---------------------------------------------------------------------
    async def treat(self) -> None:
        m = self.machine
        self.link.reset()
        while m.phase != "done":
            try:
                sample = await self.cycle()
                self.link.restored(sample)
                going = await self._treat_cycle(sample)
                self.publish()
                if not going:
                    break
            except LinkError as exc:
                await self.link.lost(exc)

    async def _treat_cycle(self, sample: Sample) -> bool:
        """One cycle of the treatment; False when the run ends where it stands."""
        m = self.machine
        if sample.t_ms > self.max_rig_ms:
            if m.phase == "alarm":
                return False  # an unattended alarm ends the run where it stands
            raise StepFailed(f"treatment exceeded {self.max_rig_ms / 3.6e6:.1f} h of rig time")
        if self.operator.pending:  # first: an acknowledge counts now
            await self.operator.apply(sample.t_ms, self._act)
        # volumes change only with the next sample: what the prescription allows by now
        # serves both the interlocks and the cap of the setpoints below
        allowed_ml = self.accounting.allowed_balance_ml(self.rx)
        verdict = self._evaluate_safety(sample, allowed_ml)
        if self.auto_resume is not None:
            alarms = self.safety.alarms
            self.auto_resume.judge(
                sample.t_ms,
                m.phase == "alarm",
                bool(alarms.conditions_present()),
                alarms.active,
                self.alarm_log,
                self.operator,
                self.emit,
            )
        phase = m.phase
        if phase == "connecting":  # the flow sweeps a range: what pressures do with it
            self.safety.return_line.learn_ramp(sample)
            self.safety.pressure_pair.learn_ramp(sample)
        if (
            verdict.acting
            and phase not in HELD
            and (phase != "rinse_back" or verdict.safe_state or "blood" in verdict.stop)
        ):  # rinse-back goes on unless the blood pump itself must stop
            await m.alarm(cause=", ".join(sorted(verdict.acting)))
            phase = m.phase
        if verdict.safe_state and not sample.safe:
            await self.actuator.enter_safe()
        elif self.safety.safe_edge and phase not in HELD:
            hazard = REASON_HAZARD.get(sample.safe_reason, "firmware_safe")
            await m.alarm(cause=f"firmware safe state: {sample.safe_reason} ({hazard})")
            self.actuator.forget()
            return True
        if sample.safe or verdict.safe_state:
            self.actuator.forget()  # nothing can be commanded; all is sent again on resume
            return True
        pr = self.accounting.progress(sample, m.phase_s())
        checking = self.resume_check.judge(sample, phase)
        self.safety.return_line.checking = checking
        sp = self._setpoints(phase, verdict, checking, pr)
        if sp is not None:
            sp = Setpoints(
                self.accounting.within_prescription(
                    self.rx, self.treatment_phase(), verdict.apply(sp.pumps), allowed_ml
                ),
                sp.valves,
            )
            try:
                if not self.actuator.holds(sp):
                    await self.actuator.command(sp)
            except CommandRefused as exc:
                if exc.code != "in_safe_state":
                    raise
                self.actuator.forget()  # it went safe since the sample: the next one says why
                return True
        if phase != "alarm" and not checking and self._goal_reached(phase, pr):
            await self._advance(phase, pr)
        return True

    def _setpoints(
        self, phase: str, verdict: Verdict, checking: bool, pr: phases.Progress
    ) -> Setpoints | None:
        """What the phase asks for; None when nothing is commanded but the safe state."""
        rx = self.rx
        if (phase == "alarm" and not verdict.acting) or checking or phase == "paused":
            # paused, or the hazard has gone but nobody resumed, or a resume is being
            # checked at low flow: blood circulating at minimum, the plasma side stopped
            name, step = "paused", None
        else:
            name = self.acting_phase()
            step = PHASES.get(name)
            if step is None:
                return None
            if not step.by_regime:
                return step.setpoints(rx, pr)
        # the same regime, the same setpoints (phases.regime): built once per regime, and
        # never changed by anyone (the loop caps a copy of the pumps)
        if self._regimes_of is not rx:  # another prescription (a gate override): anew
            self._regimes_of = rx
            self._setpoints_by_regime.clear()
        key = (name, phases.regime(rx, pr))
        sp = self._setpoints_by_regime.get(key)
        if sp is None:
            if step is None:
                sp = phases.paused(rx, pr, self.rig.alarms.minimum_blood_flow_ml_min)
            else:
                sp = step.setpoints(rx, pr)
            self._setpoints_by_regime[key] = sp
        return sp

    def _goal_reached(self, phase: str, pr: phases.Progress) -> bool:
        """The phase table says this phase's goal is reached (tested every cycle, in
        place: most cycles it is not, and nothing is awaited)."""
        step = PHASES.get(phase)
        return step is not None and step.done(self.rx, pr)

    async def _advance(self, phase: str, pr: phases.Progress) -> None:
        """Move on measured progress (docs/spec.md 4), never on elapsed time alone: the phase table
        says when its goal is reached, the machine's guarded `advance` where it leads."""
        if not self._goal_reached(phase, pr):
            return
        step = PHASES[phase]
        m = self.machine
        m.progress = pr
        cause = step.cause(self.rx, pr)
        await m.advance(cause=cause)
        if m.phase == phase:
            # the phases call for it and the machine refused: a bug, and a bug ends in the
            # safe state (`fault`), never in a treatment that runs on
            raise StepFailed(f"the machine refused to advance from {phase} ({cause})")

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> Summary:
        """Self-test, priming, then the treatment; always returns a summary."""
        return await self.guard.run(self._run_all)

    async def _run_all(self) -> None:
        m = self.machine
        await m.begin(cause="run started")
        self.pressure_zero = await steps.self_test(self.hal, self.actuator, self.step, self.limits)
        await m.self_test_passed(cause="every part answered")
        await steps.prime(self.rig, self.rx, self.actuator, self.step)
        await m.primed(cause="prime volume reached, no air")
        if await pre_start.pre_start(self):
            if self.auto_start:
                # the scale baseline first: the checkpoint of `connecting` has it
                assert self.sample is not None
                self.safety.start_accounting(self.sample)
                await m.start(cause=self.override_note or "gate passed")
            if self.auto_start or await self._hold_at_ready():
                await self.treat()
        await self.actuator.stop_all()

    async def _hold_at_ready(self) -> bool:
        """Primed and checked, the rig waits at `ready` for an explicit start (a remote
        `start_treatment`, when a rig allows it) or an `end`; True once started."""
        while self.machine.phase == "ready":
            sample = await self.cycle()
            if sample.t_ms > self.max_rig_ms:
                raise StepFailed(f"nobody started the treatment in {self.max_rig_ms / 3.6e6:.1f} h")
            self._evaluate_safety(sample)
            await self.operator.apply(sample.t_ms, self._act)
            self.publish()
        return self.machine.phase == "connecting"

    async def resume(
        self,
        checkpoint: Checkpoint,
        history: list[TransitionRecord],
        confirm: Callable[[str], Awaitable[bool]],
    ) -> Summary:
        """Continue a session the journal kept after the controller died (`--resume`)."""
        self.resuming = True  # nothing of this run is checkpointed until restored

        async def body() -> None:
            await resume_session(self, checkpoint, history, confirm)

        return await self.guard.run(body)

    async def run_from(self, midway: cps.Midway) -> Summary:
        """The treatment from where `midway` caught another run (tests, benches): the rig
        must have been started from the same instant (its own snapshot)."""

        async def body() -> None:
            cps.carry_on(self, midway)
            await self.treat()
            await self.actuator.stop_all()

        return await self.guard.run(body)

    # -- interruption -----------------------------------------------------------------------
    def interrupt(self, cause: str) -> None:
        """End the run at the next sample (a signal handler calls this); see Guard."""
        self.guard.interrupt(cause)

    @property
    def interrupt_cause(self) -> str | None:
        return self.guard.cause

    def claim_task(self) -> None:
        """The task an interruption cancels if the loop does not notice it in time."""
        self.guard.claim_task()
