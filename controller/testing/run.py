"""A treatment run by the real controller, in a task of its own, as a test sees it.

The run is `controller.app.run_treatment`, as `alsctl run` runs it: the same loop, safety,
state machine, edges. What the test adds is one edge that reads the event stream (the view
after every cycle, transitions, typed events) and a hold on the rig's clock: the HAL's
`gate`. The rig moves only while the test awaits `until`, `run_for`, `request` or `finish`;
when what it waits for is seen after a cycle, the clock stops at the next sample. So what a
test asserts on is that cycle's view, and what it requests is applied at the next cycle,
at one known rig time, whatever the machine's load: no sleeps, no races.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from controller.app import RunOptions, run_treatment
from controller.config.checklist import GateAnswers
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.control.checkpoint import Midway
from controller.control.events import Alarmed, Edge, Event, View
from controller.control.loop import Controller
from controller.fsm import plan
from controller.fsm.machine import TransitionRecord
from controller.hal.sim import SimHal
from controller.journal import Journal
from controller.rig import Sample
from controller.safety.alarms import AlarmEvent
from controller.summary import Summary
from controller.testing.balance import BalanceWatch
from controller.testing.errors import RunEnded, UntilTimeout
from controller.testing.faults import Injector
from firmware_sim.server import FirmwareServer

#: A run with no `max_rig_s` ends this long (rig s) after its plan says it should: a run
#: left in an alarm nobody resolves ends there, not at twice the plan.
OVERRUN_S = 600.0
#: How long (rig s) a request may wait for the loop to take it.
REQUEST_WITHIN_S = 5.0


@dataclass(slots=True)
class _Waiter:
    check: Callable[[View], bool]
    what: str
    within_ms: float
    deadline_ms: float | None
    future: asyncio.Future[View]


class _Stream(Edge):
    """The run's event stream, kept for the test; it decides when the clock is held."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def view(self, view: View) -> None:
        self.run._seen(view)

    def transition(self, record: TransitionRecord) -> None:
        self.run.transitions.append(record)
        server = self.run._server
        if server is not None:  # firmware-sim is not told the phases over the wire
            server.faults.phase_started(record.dest)

    def event(self, event: Event) -> None:
        self.run.events.append(event)


class Run:
    """One treatment, started by `start_run` (the `treatment` fixture), held at its latest
    view between the test's awaits.

    - `view`: the latest cycle's `View` (phase, sample, volumes, target, active alarms, the
      requests allowed now, the outcome once ended); `sample` its sample.
    - `transitions`, `events`: everything the loop published since the run began (events:
      `Alarmed`, `Operated`, `HalReported`, `Failed`, `Occurred`); `alarms`: alarm events.
    - `faults`: an `Injector` for the simulated firmware; `balance`: the patient's balance
      against its prescribed trajectory, every cycle; `controller`: the loop itself.
    """

    def __init__(
        self,
        rig: RigConfig,
        rx: Prescription,
        opts: RunOptions,
        server: FirmwareServer | None = None,
        earlier: frozenset[str] = frozenset(),
    ) -> None:
        self.rig = rig
        self.rx = rx
        self.transitions: list[TransitionRecord] = []
        self.events: list[Event] = []
        self.summary: Summary | None = None
        self._view: View | None = None
        self._server = server
        self._earlier = earlier
        self._controller: Controller | None = None
        self._faults: Injector | None = None
        self._balance: BalanceWatch | None = None
        self._waiter: _Waiter | None = None
        self._gate = asyncio.Event()  # cleared: the rig's clock is held
        opts.edges = [*opts.edges, _Stream(self)]
        opts.on_controller = self._attach
        self._task = asyncio.create_task(run_treatment(rig, rx, opts), name="alsctl-test-run")

    # -- what the test reads --------------------------------------------------------------
    @property
    def view(self) -> View:
        if self._view is None:
            raise AssertionError("the run has not published a view yet")
        return self._view

    @property
    def sample(self) -> Sample:
        """The latest view's sample: what the rig reported at that cycle."""
        return self.view.sample

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            raise AssertionError("the run's controller is not built yet")
        return self._controller

    @property
    def faults(self) -> Injector:
        if self._faults is None:
            raise AssertionError(f"no fault injection on this rig ({self.controller.hal.backend})")
        return self._faults

    @property
    def balance(self) -> BalanceWatch:
        if self._balance is None:
            raise AssertionError("the run's controller is not built yet")
        return self._balance

    @property
    def alarms(self) -> list[AlarmEvent]:
        """Every alarm event (raised, escalated, acknowledged, cleared), in order."""
        return [e.alarm for e in self.events if isinstance(e, Alarmed)]

    # -- moving the rig's clock -----------------------------------------------------------
    async def until(
        self,
        condition: Callable[[View], bool] | None = None,
        *,
        phase: str | None = None,
        alarm: str | None = None,
        within_s: float,
    ) -> View:
        """Run until a view where `phase` is the state (`"alarm"`, `"exchange"` ...), `alarm`
        is active (`"air_return"`, `"pump_fault:replacement"`) and `condition(view)` holds,
        and hold the clock there. Already true now: returns at once, nothing runs.

        `within_s` is rig time, counted from now (the simulated rig runs about 1000 x real
        time, so 60 s costs about 60 ms); past it, `UntilTimeout`, naming the phase and the
        alarms at the deadline. A run that ends first raises `RunEnded` with its outcome."""
        checks: list[Callable[[View], bool]] = []
        said: list[str] = []
        if phase is not None:
            checks.append(lambda v: v.phase == phase)
            said.append(f"phase {phase}")
        if alarm is not None:
            checks.append(lambda v: any(a.id == alarm for a in v.alarms))
            said.append(f"alarm {alarm}")
        if condition is not None:
            checks.append(condition)
            said.append(getattr(condition, "__name__", "the condition"))
        if not checks:
            raise TypeError("until() needs phase=, alarm= or a condition")
        return await self._until(lambda v: all(c(v) for c in checks), " and ".join(said), within_s)

    async def run_for(self, seconds: float) -> View:
        """Run `seconds` of rig time and hold there."""
        target = self.view.t_ms + seconds * 1000

        def elapsed(v: View) -> bool:
            return v.t_ms >= target

        return await self._until(elapsed, f"{seconds:g} s later", seconds + 1.0)

    async def request(
        self, trigger: str, cause: str = "test", *, within_s: float = REQUEST_WITHIN_S
    ) -> str:
        """What an operator does, through the request port every front-end uses:
        `acknowledge`, `resume`, `pause`, `stop`, `end`, `pause_audio`, `start`. Runs until
        the loop has applied it (the next cycle, from `connecting` on) and returns its
        answer: `"done"`, or `"refused: why"`."""
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.controller.request(trigger, cause, answer)
        try:
            await self._until(lambda _: answer.done(), f"the answer to {trigger}", within_s)
        finally:
            if not answer.done():
                answer.cancel()  # never applied after the test stopped waiting for it
        return answer.result()

    async def finish(self, *, within_s: float | None = None) -> Summary:
        """Let the treatment run to its end and return its summary (`within_s`: rig time
        it may take, else `UntilTimeout`; None: until the run's `max_rig_s`)."""
        if within_s is not None and not self._task.done():
            await self._until(lambda v: v.outcome is not None, "the end of the run", within_s)
        else:
            self._waiter = None
            self._gate.set()
        summary, _ = await self._task
        self.summary = summary
        return summary

    async def close(self, cause: str = "the test ended") -> None:
        """End the run if it is still going (interrupted: the rig commanded safe, as on
        Ctrl-C) and wait for it."""
        if not self._task.done():
            if self._controller is not None:
                self._controller.interrupt(cause)
            else:
                self._task.cancel()
            self._waiter = None
            self._gate.set()
        with contextlib.suppress(asyncio.CancelledError):
            summary, _ = await self._task
            self.summary = self.summary or summary

    # -- the stream's side ----------------------------------------------------------------
    def _attach(self, controller: Controller) -> None:
        """Before the run's first sample: the clock held, the faults and balance wired."""
        self._controller = controller
        controller.hal.gate = self._gate
        self._balance = BalanceWatch(controller)
        if isinstance(controller.hal, SimHal):
            self._faults = Injector(controller.hal.faults, earlier=self._earlier)
        elif self._server is not None:
            self._faults = Injector(self._server.faults, earlier=self._earlier)

    def _seen(self, view: View) -> None:
        """After every cycle, from the loop's task: must not raise into it."""
        self._view = view
        if self._balance is not None:
            self._balance.observe(view)
        w = self._waiter
        if w is None:
            return
        if w.deadline_ms is None:
            w.deadline_ms = view.t_ms + w.within_ms
        try:
            met = w.check(view)
        except Exception as exc:  # the test's condition failed: the test's error
            self._hold(w)
            w.future.set_exception(exc)
            return
        if met:
            self._hold(w)
            w.future.set_result(view)
        elif view.t_ms >= w.deadline_ms:
            self._hold(w)
            w.future.set_exception(UntilTimeout(f"{w.what}: not within {_within(w)}; {_now(view)}"))

    def _hold(self, waiter: _Waiter) -> None:
        self._gate.clear()  # the loop waits at its next sample
        if self._waiter is waiter:
            self._waiter = None

    async def _until(self, check: Callable[[View], bool], what: str, within_s: float) -> View:
        if self._view is not None and check(self._view):
            return self._view
        if self._task.done():
            self._ended(what)
        future: asyncio.Future[View] = asyncio.get_running_loop().create_future()
        start = self._view.t_ms if self._view is not None else None
        within_ms = within_s * 1000
        self._waiter = _Waiter(
            check, what, within_ms, None if start is None else start + within_ms, future
        )
        self._gate.set()
        try:
            either: set[asyncio.Future[Any]] = {future, self._task}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not future.done():  # the run ended, or the test was cancelled
                self._waiter = None
                self._gate.clear()
                future.cancel()
        if not future.cancelled():
            return future.result()
        self._ended(what)

    def _ended(self, what: str) -> NoReturn:
        """The run ended before `what`: its own error if it crashed, else RunEnded."""
        summary, _ = self._task.result()
        self.summary = self.summary or summary
        raise RunEnded(
            f"{what}: the run ended first, {summary.outcome} ({summary.outcome_detail}) in"
            f" {summary.final_state} at {summary.rig_time_s:g} s"
        )


def _within(w: _Waiter) -> str:
    return f"{w.within_ms / 1000:g} s of rig time"


def _now(view: View) -> str:
    alarms = ", ".join(view.alarm_ids()) or "none"
    held = f" (holding {view.interrupted})" if view.interrupted else ""
    return f"at {view.t_ms / 1000:g} s the run is in {view.phase}{held}, alarms: {alarms}"


async def start_run(
    rig: RigConfig,
    rx: Prescription,
    *,
    gate: GateAnswers,
    start: Midway | None = None,
    scenario: Scenario | None = None,
    auto_resume_s: float | None = None,
    max_rig_s: float | None = None,
    server: FirmwareServer | None = None,
    journal: Journal | None = None,
) -> Run:
    """A run started and held at its first view: self-test's first cycle, or the first
    cycle after `start` (a checkpoint; the simulated rig only). With `server`, the run goes
    over a serial link to it (`rig.serial.url` its pty), the scenario given to it instead."""
    if max_rig_s is None:
        total = plan.plan(
            rx, blood_max_ml_min=rig.pumps.blood.max_rate, loop_max_ml_min=rig.pumps.loop.max_rate
        ).total_s
        max_rig_s = total + OVERRUN_S
    opts = RunOptions(
        backend="serial" if server is not None else "sim",
        port=rig.serial.url if server is not None else None,
        scenario=scenario if server is None else None,
        gate=gate,
        auto_resume_s=auto_resume_s,
        max_rig_s=max_rig_s,
        start=start,
        journal=journal,
    )
    earlier: frozenset[str] = frozenset()
    if start is not None:
        earlier = frozenset(t.dest for t in start.history) - {start.checkpoint.phase}
    run = Run(rig, rx, opts, server, earlier)
    try:
        await run._until(lambda _: True, "the run's first cycle", max_rig_s)
    except BaseException:
        await run.close()
        raise
    return run
