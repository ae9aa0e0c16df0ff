"""Operator requests: the queue every front-end feeds, how each request is answered, and the
unattended `--auto-resume` that plays the operator in demos and benches.

Every request shares the same handling: applied in order at the start of a cycle, never
after its caller stopped waiting, refused with a reason rather than ignored, and every one
journaled with its result (`Operator`); what each does to the run is `act`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from controller.config.compat import blood_flow_bounds, require_pair
from controller.config.prescription import Prescription
from controller.config.rig import AlarmLimits
from controller.control.events import EXPIRED, Event, Occurred, Operated, Request
from controller.control.gate import gate_still_passes
from controller.control.summary import stop_record
from controller.errors import CommandRefused, ConfigError
from controller.fsm import plan
from controller.fsm.machine import IllegalRequest
from controller.rig import Sample
from controller.safety.alarms import AlarmEvent
from controller.safety.gate import OVERRIDE_BLOOD_MAX_ML_MIN

if TYPE_CHECKING:
    from controller.control.loop import Controller

#: Hazards seen only while blood flows: a resume from them is checked at low flow first.
CHECKED_AT_LOW_FLOW = frozenset({"return_low", "return_high", "access_low", "air_return"})

#: What the loop does for one request (trigger, cause, value); raises IllegalRequest or
#: CommandRefused to refuse.
Act = Callable[[str, str, float | None], Awaitable[str | None]]
#: The treatment phases whose blood flow an operator may change (also while a pause or an
#: alarm holds them): before, the connection ramps to the prescribed flow; after, rinse-back
#: runs at its own.
BLOOD_FLOW_PHASES = frozenset({"exchange", "exchange_collect", "purification"})


class Operator:
    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        #: operator requests refused, with the reason
        self.rejected: list[str] = []

    def request(
        self,
        trigger: str,
        cause: str = "operator",
        answer: asyncio.Future[str] | None = None,
        *,
        value: float | None = None,
    ) -> Request:
        """Queue a request for the next cycle (see `RequestPort.request`)."""
        request = Request(trigger, cause, answer, value=value)
        self._queue.put_nowait(request)
        return request

    @property
    def pending(self) -> bool:
        """A request waits for the next cycle (most cycles none: `apply` need not run)."""
        return not self._queue.empty()

    async def apply(self, t_ms: int, act: Act) -> None:
        """Every queued request, in order. `act` returns the cause as journaled (the loop
        adds to it, e.g. an override's note on a start) or None for the cause as given."""
        queue = self._queue
        while not queue.empty():
            request = queue.get_nowait()
            trigger, cause, answer = request.trigger, request.cause, request.answer
            if answer is not None and answer.cancelled():
                self._emit(Operated(t_ms, trigger, cause, EXPIRED))
                continue
            request.taken = True
            result = "done"
            try:
                cause = await act(trigger, cause, request.value) or cause
            except (IllegalRequest, CommandRefused) as exc:
                self.rejected.append(f"{trigger}: {exc}")
                result = f"refused: {exc}"
            except Exception as exc:  # the loop's fault handler takes it from here
                result = f"failed: {exc}"
                raise
            finally:
                self._emit(Operated(t_ms, trigger, cause, result))
                if answer is not None and not answer.done():
                    answer.set_result(result)


async def act(c: Controller, trigger: str, cause: str, value: float | None = None) -> str | None:
    """What one request does; raises IllegalRequest (or CommandRefused) to refuse it."""
    t = c.sample.t_ms if c.sample is not None else 0
    m = c.machine
    if trigger == "set_blood_flow":
        return set_blood_flow(c, cause, value)
    if trigger == "acknowledge":
        c.safety.alarms.acknowledge(t)
        return None
    if trigger == "pause_audio":
        c.safety.alarms.pause_audio(t)
        return None
    if trigger == "resume" and m.phase == "alarm":
        blockers = c.safety.resume_blockers()
        if blockers:
            raise IllegalRequest("cannot resume: " + "; ".join(blockers))
    if trigger in ("resume", "stop") and c.sample is not None and c.sample.safe:
        await c.arm_for(trigger)
    if trigger == "start" and m.phase == "ready":
        assert c.sample is not None
        gate_still_passes(c, c.sample)
        c.safety.start_accounting(c.sample)
        cause = f"{cause}; {c.override_note}" if c.override_note else cause
    acting = c.treatment_phase()
    episode = set(c.episode) if m.phase == "alarm" else set()
    await m.request(trigger, cause)
    if trigger == "resume" and episode & CHECKED_AT_LOW_FLOW:
        c.resume_check.start(t)
    if trigger == "resume" and not cause.startswith("auto:") and c.auto_resume:
        c.auto_resume.person_resumed()
    if trigger in ("stop", "end"):
        c.accounting.run.stop = stop_record(c, cause, acting)
    return cause


def set_blood_flow(c: Controller, cause: str, value: float | None) -> str:
    """The prescription's blood flow changed mid-treatment, within bounds; the whole
    prescription is validated again (a plasma flow given in mL/min must stay within 30 % of
    the blood flow) and checked against the rig, as `alsctl validate` would. The effective
    prescription is published (journaled: a resume continues with it); the phase's
    setpoints follow from the next cycle on. Journaled with the old and the new flow."""
    phase = c.treatment_phase()
    if phase not in BLOOD_FLOW_PHASES:
        raise IllegalRequest(
            f"cannot change the blood flow in {c.machine.phase}: only during exchange,"
            " collection or purification (also while paused or in alarm)"
        )
    if value is None or not math.isfinite(value):
        raise IllegalRequest("cannot change the blood flow: give the new flow in mL/min")
    overridden = c.gate_result is not None and c.gate_result.override is not None
    low, high = blood_flow_bounds(c.rig, OVERRIDE_BLOOD_MAX_ML_MIN if overridden else None)
    if not low <= value <= high:
        raise IllegalRequest(
            f"cannot set the blood flow to {value:g} mL/min: allowed {low:g}..{high:g} mL/min"
            " (the rig's minimum flow and pump maximum, the prescription's bounds)"
        )
    old = c.rx.blood_flow_ml_min
    body = c.rx.model_dump(mode="json", exclude_none=True, by_alias=True)
    try:
        new = Prescription.model_validate({**body, "blood_flow_ml_min": value})
        require_pair(c.rig, new, "rig", "prescription")
    except ValidationError as exc:
        issue = exc.errors()[0]
        raise IllegalRequest(
            f"cannot set the blood flow to {value:g} mL/min: {issue['msg']}"
        ) from None
    except ConfigError as exc:
        raise IllegalRequest(
            f"cannot set the blood flow to {value:g} mL/min: {'; '.join(exc.lines())}"
        ) from None
    c.rx = c.safety.rx = c.machine.rx = new
    total_s = plan.plan(
        new, blood_max_ml_min=c.rig.pumps.blood.max_rate, loop_max_ml_min=c.rig.pumps.loop.max_rate
    ).total_s
    c.max_rig_ms = max(c.max_rig_ms, t_now(c) + int(2000 * total_s))
    c.bus.prescription(new)
    return f"{cause}; blood flow {old:g} -> {value:g} mL/min"


def t_now(c: Controller) -> int:
    return c.sample.t_ms if c.sample is not None else 0


class ResumeCheck:
    """A resume from an alarm that only shows while blood flows (a lost or occluded return
    line, access, air) is checked first: `resume_check_s` at the minimum blood flow, the
    plasma side stopped, every detector judging (the return line against its expected level
    at that flow). An alarm meanwhile takes the run back to `alarm` before full flow ever
    returns; a quiet check lets the phase go on."""

    def __init__(self, lim: AlarmLimits, emit: Callable[[Event], None]) -> None:
        self.lim = lim
        self.emit = emit
        #: checking until then (session ms)
        self.until_ms: int | None = None

    def start(self, t_ms: int) -> None:
        self.until_ms = t_ms + int(self.lim.resume_check_s * 1000)

    def judge(self, sample: Sample, phase: str) -> bool:
        """Whether this cycle is still part of the check (journaled when it ends)."""
        until = self.until_ms
        if until is None:
            return False
        if phase == "alarm":
            self.until_ms = None
            self.emit(
                Occurred(sample.t_ms, "resume_check", {"result": "failed: the alarm came back"})
            )
            return False
        if sample.t_ms < until:
            return True
        self.until_ms = None
        result = f"passed: {self.lim.resume_check_s:g} s at minimum flow"
        self.emit(Occurred(sample.t_ms, "resume_check", {"result": result}))
        return False


class AutoResume:
    """Unattended runs: acknowledge and resume an alarm once its conditions have been gone
    for `after_s` of rig time, unless it keeps coming back (then a person must look)."""

    def __init__(self, after_s: float, lim: AlarmLimits) -> None:
        self.after_s = after_s
        self.lim = lim
        self._clear_since_ms: int | None = None
        #: why it holds back (an alarm that keeps coming back), once said
        self.held: str | None = None

    def person_resumed(self) -> None:
        """A person looked: auto-resume may play the operator again."""
        self.held = None

    def judge(
        self,
        t_ms: int,
        in_alarm: bool,
        conditions_present: bool,
        active: Iterable[str],
        raised: list[AlarmEvent],
        operator: Operator,
        emit: Callable[[Event], None],
    ) -> None:
        if not in_alarm or conditions_present:
            self._clear_since_ms = None
            return
        if self.held is not None:
            return  # held until a person resumes
        recurring = self.recurring(t_ms, active, raised)
        if recurring is not None:
            self.held = recurring
            emit(Occurred(t_ms, "auto_resume_held", {"why": recurring}))
            return
        if self._clear_since_ms is None:
            self._clear_since_ms = t_ms
        elif t_ms - self._clear_since_ms >= self.after_s * 1000:
            operator.request("acknowledge", "auto: conditions gone")
            operator.request("resume", "auto: conditions gone")
            self._clear_since_ms = None

    def recurring(self, t_ms: int, active: Iterable[str], raised: list[AlarmEvent]) -> str | None:
        """Why it must not resume now: an alarm of this stop keeps coming back (the rig's
        auto_resume_max raises within auto_resume_window_s), so resuming would only loop into
        a fault that is still there."""
        lim = self.lim
        since = t_ms - int(lim.auto_resume_window_s * 1000)
        counts: dict[str, int] = {}
        for e in raised:
            if e.kind == "raised" and e.t_ms >= since:
                counts[e.alarm] = counts.get(e.alarm, 0) + 1
        for alarm_id in active:
            count = counts.get(alarm_id, 0)
            if count >= lim.auto_resume_max:
                return (
                    f"{alarm_id} raised {count} times in {lim.auto_resume_window_s / 60:g} min:"
                    " not resumed automatically; the operator must find the cause"
                )
        return None
