"""The composition root: one treatment from config to summary. The HAL chosen by name, the
control loop, the edges subscribed to its event bus (journal recorder, and whatever the
caller brings: progress lines, the MQTT bridge, a console, a test's probe), the results.

Shared by `alsctl run`, the tests and the benches so they all run the same thing. In
simulation the summary also gets the simulator's truth (solute removal, what each pump really
moved since connection); that is read here, at the edge, never by the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.control import ACCOUNTED, Controller, Interrupted, ResumeFailed
from controller.control.checkpoint import Checkpoint, Midway
from controller.control.events import Attachment, Edge, EventBus, View
from controller.errors import HalError
from controller.fsm.machine import TransitionRecord, leaf
from controller.hal import backend_class, open_hal
from controller.hal.base import Hal
from controller.hal.sim import SimHal
from controller.journal import Journal, JournalError, SessionRecord, SessionRow
from controller.outcome import Outcome
from controller.recorder import Recorder
from controller.rig import PUMP_NAMES
from controller.safety.gate import Checklist, GateAnswers, GateResult
from controller.summary import JournalOut, SoluteOut, Summary

if TYPE_CHECKING:
    from firmware_sim.physics import Physics

#: The checklist with every answer "no": for simulated runs and tests that are not about it.
CLEAR = GateAnswers(
    checklist=Checklist(
        severe_active_bleeding=False,
        uncontrolled_map_below_65=False,
        severe_allergy_with_shock=False,
    )
)


@dataclass(slots=True)
class RunOptions:
    backend: str = "sim"
    port: str | None = None
    scenario: Scenario | None = None
    #: simulation pace: None = as fast as possible, N = N x real time
    speed: float | None = None
    #: the loop's view after every cycle (a test's probe; front-ends are `edges`)
    on_view: Callable[[View], None] | None = None
    on_transition: Callable[[TransitionRecord], None] | None = None
    max_rig_s: float | None = None
    #: called with the controller before it runs (a test that drives it)
    on_controller: Callable[[Controller], None] | None = None
    #: what else subscribes to the run: progress lines, the MQTT bridge, a console
    edges: Sequence[Edge] = field(default_factory=list)
    #: the pre-start checklist (and any override); None = not answered: start refused
    gate: GateAnswers | None = None
    #: unattended: acknowledge and resume an alarm once its conditions are gone this long
    auto_resume_s: float | None = None
    #: where the session is journaled (None: not journaled, as in most tests)
    journal: Journal | None = None
    #: after the pre-start checks, wait at `ready` for an explicit (remote) start
    hold_at_ready: bool = False
    #: SIGINT and SIGTERM end the run safely, with its summary (the CLI; not in tests)
    handle_signals: bool = False
    #: simulated rig only: the circuit and patient to run on (default: built from the rig
    #: file and the prescription); bench/validation.py gives its own patients
    physics: Physics | None = None
    #: simulated rig only: start where another run entered a phase (`midway`), without
    #: self-test, priming and connection
    start: Midway | None = None


#: The signals that end a run, and how the journal names them.
SIGNALS = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def resume_refusal(row: SessionRow) -> str | None:
    """Why `--resume` cannot continue this session, or None when it can: the one rule that
    both `alsctl sessions` (which offers it) and the resume itself (which refuses) apply."""
    try:
        outlives = backend_class(row.backend).capabilities.outlives_controller
    except HalError:
        outlives = False
    if not outlives:
        return (
            f"session {row.id} ran on {row.backend}: that rig ends with its controller's"
            " process, there is nothing to resume"
        )
    if row.ended_utc is not None:
        return f"session {row.id} ended ({row.outcome or row.state}): nothing to resume"
    if row.running():
        return f"session {row.id} is running (process {row.pid} on {row.host})"
    if leaf(row.state) not in ACCOUNTED:
        return (
            f"session {row.id} stopped in {leaf(row.state)}, before the treatment began:"
            " start a new run (self-test and priming are repeated, not resumed)"
        )
    return None


def build_hal(rig: RigConfig, rx: Prescription, opts: RunOptions) -> Hal:
    if opts.backend == "sim":
        return open_hal(
            "sim",
            rig,
            prescription=rx,
            scenario=opts.scenario,
            speed=opts.speed,
            physics=opts.physics,
            snapshot=opts.start.rig if opts.start is not None else None,
        )
    if opts.start is not None:
        raise HalError("a run starts midway only on the simulated rig (it takes snapshots)")
    if opts.backend == "serial":
        if opts.scenario is not None:
            raise HalError("a scenario drives the simulated firmware: give it to firmware-sim")
        return open_hal("serial", rig, port=opts.port)
    return open_hal(opts.backend, rig)  # unknown names fail with the list of backends


async def run_treatment(
    rig: RigConfig, rx: Prescription, opts: RunOptions | None = None
) -> tuple[Summary, Controller]:
    opts = opts or RunOptions()
    hal = build_hal(rig, rx, opts)
    physics = getattr(hal, "physics", None)
    at_connection: list[float] = []

    faults = getattr(hal, "faults", None)

    class Simulation(Edge):
        """The simulated rig's side of a transition: the truth at connection, and faults
        timed from a phase start with it."""

        def transition(self, record: TransitionRecord) -> None:
            if record.dest == "connecting" and physics is not None:
                at_connection[:] = physics.pumped_ml
            if faults is not None:
                faults.phase_started(record.dest)

    if faults is not None and opts.start is not None:
        # the run begins as its phase did (`midway` caught it entering): faults timed from
        # that phase count from here, as they would have in the run it was caught from
        faults.phase_started(opts.start.checkpoint.phase)
    bus = EventBus()
    bus.subscribe(Simulation())
    controller = Controller(
        hal,
        rig,
        rx,
        bus=bus,
        max_rig_s=opts.max_rig_s,
        gate_answers=opts.gate,
        auto_resume_s=opts.auto_resume_s,
        auto_start=not opts.hold_at_ready,
    )
    journal = opts.journal

    def start_session() -> int | None:
        """Only once the rig answered: a run that never connected leaves no session."""
        if journal is None:
            return None
        if opts.port is not None:  # the port it ran on: what a `--resume` needs again
            serial = rig.serial.model_copy(update={"url": opts.port})
            snap_rig = rig.model_copy(update={"serial": serial})
        else:
            snap_rig = rig
        return journal.start_session(
            rig_id=rig.rig_id,
            backend=hal.backend,
            prescription=rx.name or "(unnamed)",
            mode=rx.mode,
            snapshots={
                "rig": snap_rig.model_dump(mode="json"),
                "prescription": rx.model_dump(mode="json", exclude_none=True, by_alias=True),
                "scenario": opts.scenario.model_dump(mode="json") if opts.scenario else None,
            },
        )

    session: list[int | None] = [None]

    def started() -> int | None:
        session[0] = start_session()
        return session[0]

    if opts.start is not None:
        start = opts.start
        summary = await _run(controller, hal, opts, started, lambda: controller.run_from(start))
    else:
        summary = await _run(controller, hal, opts, started, controller.run)
    if physics is not None:
        summary = summary.model_copy(update=_simulation_truth(physics, at_connection))
    summary = _finish(opts, session[0], summary)
    return summary, controller


async def resume_treatment(
    record: SessionRecord,
    opts: RunOptions,
    confirm: Callable[[str], Awaitable[bool]],
) -> tuple[Summary, Controller]:
    """Continue a journaled session on a rig that outlived its controller (serial)."""
    if opts.journal is None:
        raise JournalError("a resume needs the journal it continues")
    refusal = resume_refusal(record.row)
    cp = Checkpoint.model_validate(record.checkpoint) if record.checkpoint else None
    if refusal is None and (cp is None or cp.phase not in ACCOUNTED):
        refusal = f"session {record.row.id} has no checkpoint of a treatment to resume"
    if refusal is not None:
        raise JournalError(refusal)
    assert cp is not None
    snaps = record.snapshots
    rig = RigConfig.model_validate(snaps["rig"])
    if opts.backend == "serial":
        rig = rig.model_copy(update={"backend": "serial"})
    rx = Prescription.model_validate(snaps.get("prescription_effective") or snaps["prescription"])
    hal = build_hal(rig, rx, opts)
    controller = Controller(
        hal, rig, rx, max_rig_s=opts.max_rig_s, auto_resume_s=opts.auto_resume_s
    )
    controller.resuming = True  # nothing is checkpointed (nor the session claimed) yet
    history = [TransitionRecord(e.t_ms, **e.body) for e in record.events if e.kind == "transition"]
    gate = next((e.body for e in record.events if e.kind == "pre_start"), None)
    if gate is not None:
        controller.gate_result = GateResult.from_event(gate, rx)

    async def body() -> Summary:
        return await controller.resume(cp, history, confirm)

    summary = await _run(controller, hal, opts, record.row.id, body)
    if controller.resuming:
        # refused or failed before anything was restored: the session stays as it was
        opts.journal.flush()
        raise ResumeFailed(
            f"resume of session {record.row.id} failed before anything was restored:"
            f" {summary.error or summary.outcome_detail}; the session is unchanged"
        )
    summary = _finish(opts, record.row.id, summary)
    return summary, controller


@contextlib.contextmanager
def _signals(controller: Controller, on: bool) -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the run through the controller (safe state, journal,
    summary) instead of killing the process with the pumps as they were."""
    if not on:
        yield
        return
    loop = asyncio.get_running_loop()
    for sig, name in SIGNALS.items():
        loop.add_signal_handler(sig, controller.interrupt, name)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


async def _run(
    controller: Controller,
    hal: Hal,
    opts: RunOptions,
    session_or_start: int | Callable[[], int | None] | None,
    body: Callable[[], Awaitable[Summary]],
) -> Summary:
    controller.claim_task()
    # what exists now lives as long as the run: frozen, a full garbage collection never
    # walks it, so it cannot pause the control loop past the firmware's watchdog. Before
    # connecting: a collection takes tens of ms, which the firmware would spend sampling.
    gc.collect()
    gc.freeze()
    with _signals(controller, opts.handle_signals):
        try:
            async with hal:
                session = session_or_start() if callable(session_or_start) else session_or_start
                return await _wired(controller, hal, opts, session, body)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if controller.interrupt_cause is None or task is None or not task.cancelling():
                raise
            task.uncancel()  # interrupted before the run began: nothing was commanded
            raise Interrupted(
                f"{controller.interrupt_cause} before the treatment began; nothing was commanded"
            ) from None
        finally:
            gc.unfreeze()


class _Probe(Edge):
    """A caller's plain callbacks (tests, benches) as an edge."""

    def __init__(self, opts: RunOptions) -> None:
        self._view = opts.on_view
        self._transition = opts.on_transition

    def view(self, view: View) -> None:
        if self._view is not None:
            self._view(view)

    def transition(self, record: TransitionRecord) -> None:
        if self._transition is not None:
            self._transition(record)


async def _wired(
    controller: Controller,
    hal: Hal,
    opts: RunOptions,
    session: int | None,
    body: Callable[[], Awaitable[Summary]],
) -> Summary:
    """The edges subscribed (the recorder first: what others show is queued for the journal
    before) and attached; the run; the edges closed, whatever happened."""
    bus = controller.bus
    journal = opts.journal if session is not None else None
    solutes = columns = None
    physics = getattr(hal, "physics", None)
    if physics is not None:
        names = [s.name for s in physics.params.solutes]

        def solutes() -> dict[str, float]:
            return {n: round(physics.concentration(n), 3) for n in names}

        def columns() -> dict[str, dict[str, list[float]]]:
            return {
                column: {n: [round(c_in, 3), round(c_out, 3)] for n, (c_in, c_out) in s.items()}
                for column, s in physics.column_profile().items()
            }

    edges: list[Edge] = []
    if journal is not None:
        edges.append(
            Recorder(
                journal,
                solutes=solutes,
                columns=columns,
                period_ms=controller.rig.sample_period_ms,
                resumed=controller.resuming,
            )
        )
    if opts.on_view is not None or opts.on_transition is not None:
        edges.append(_Probe(opts))
    edges += opts.edges
    attachment = Attachment(controller, journal, session, solutes)
    for edge in edges:
        edge.attach(attachment)
        bus.subscribe(edge)
    if opts.on_controller is not None:
        opts.on_controller(controller)
    try:
        return await body()
    finally:
        for edge in reversed(edges):
            await edge.close()


def _finish(opts: RunOptions, session: int | None, summary: Summary) -> Summary:
    """The outcome into the journal. An interrupted serial session stays open for
    `--resume` (the firmware holds the circuit in its safe state), and the summary says how."""
    journal = opts.journal
    if journal is None or session is None:
        return summary
    summary = summary.model_copy(update={"session": session})
    resumable = (
        summary.outcome is Outcome.INTERRUPTED
        and summary.backend == "serial"
        and summary.final_state in ACCOUNTED
    )
    health = journal.health
    if health.degraded_since_utc is not None:
        summary = summary.model_copy(
            update={
                "journal": JournalOut(
                    degraded_since_utc=health.degraded_since_utc,
                    unavailable=health.unavailable_since_utc is not None,
                    reason=health.reason,
                    recovered_utc=health.recovered_utc,
                    kept_events=health.kept_events,
                    trends_dropped=health.trends_dropped,
                    fallback_file=health.fallback_file if health.unavailable_since_utc else None,
                )
            }
        )
    if resumable:
        summary = summary.model_copy(
            update={
                "resume": f"alsctl run --resume {session} --port {opts.port}"
                f" --journal {journal.path}"
            }
        )
    journal.snapshot(session, "summary", summary.model_dump(mode="json"))
    journal.end_session(
        session,
        summary.final_state,
        int(summary.rig_time_s * 1000),
        summary.outcome,
        summary.outcome_detail,
        ended=not resumable,
    )
    journal.flush()
    return summary


async def midway(
    rig: RigConfig, rx: Prescription, phase: str, opts: RunOptions | None = None
) -> Midway:
    """Run on the simulated rig until the treatment enters `phase`, and catch it there (see
    `Midway`): the run is then interrupted, its snapshot kept for others to start from."""
    caught: list[Midway] = []
    refs: list[Controller] = []

    class Catch(Edge):
        def transition(self, record: TransitionRecord) -> None:
            if record.dest != phase or caught:
                return
            c = refs[0]
            snapshot = c.hal.snapshot() if isinstance(c.hal, SimHal) else None
            if snapshot is None:
                raise HalError("only the simulated rig can be caught midway")
            caught.append(
                Midway(c.checkpoint(), tuple(c.machine.history), c.rx, c.gate_result, snapshot)
            )
            c.interrupt(f"caught entering {phase}")

    base = opts or RunOptions(gate=CLEAR)
    run = dataclasses.replace(base, edges=[*base.edges, Catch()], on_controller=refs.append)
    summary, _ = await run_treatment(rig, rx, run)
    if not caught:
        raise HalError(
            f"the run never entered {phase}: {summary.outcome} ({summary.outcome_detail})"
        )
    return caught[0]


def _simulation_truth(physics: Physics, at_connection: list[float]) -> dict[str, object]:
    start = at_connection or [0.0] * len(PUMP_NAMES)
    solutes = {
        s.name: SoluteOut(
            unit=s.unit,
            start=round(s.initial, 3),
            end=round(physics.concentration(s.name), 3),
            removal=round(physics.removal_fraction(s.name), 4),
        )
        for s in physics.params.solutes
    }
    truth = {
        name: round(now - before, 3)
        for name, now, before in zip(PUMP_NAMES, physics.pumped_ml, start, strict=True)
    }
    return {
        "solutes": solutes,
        "truth_ml": truth,
        "blood_lost_truth_ml": round(physics.volumes["spill"], 1),
    }
