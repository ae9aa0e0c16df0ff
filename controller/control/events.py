"""What the control loop tells the world, and the one way the world speaks back.

Out: after every cycle an immutable `View` (everything a console, a dashboard or the journal
shows about the run now), and, as they happen, typed events (a transition, an alarm, an
operator request and its result, a HAL event, an error, and the rarer occurrences), the
checkpoint a resume needs, and the prescription the treatment runs on. Edges (journal
recorder, progress lines, MQTT bridge, operator console) subscribe to this bus and to nothing
else: none of them reaches into the loop's objects, so none can change what it does or slow
it beyond its own callback.

In: operator requests come through one `RequestPort`, whatever the front-end (a console key,
an MQTT command, `--auto-resume`), and are applied at the start of the next cycle.

Everything here is called from the loop's own task; a subscriber must be quick and must not
block (the recorder queues rows for its writer thread, the bridge for its publisher task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from controller.fsm.machine import TransitionRecord
from controller.hal.base import HalEvent
from controller.outcome import Outcome
from controller.rig import Sample
from controller.safety.alarms import AlarmEvent

if TYPE_CHECKING:
    from controller.config.prescription import Prescription
    from controller.control.checkpoint import Checkpoint

#: The result of a request whose caller stopped waiting before the loop reached it.
EXPIRED = "expired: not applied, its caller stopped waiting"


# -- the view ---------------------------------------------------------------------------
class VolumesView(NamedTuple):
    """The accounted volumes at the cycle (mL; heparin mL), by the encoders."""

    exchanged_ml: float
    collected_ml: float
    processed_ml: float
    patient_plasma_ml: float
    fluid_balance_ml: float
    #: what each pump moved since connection
    pumped_ml: Mapping[str, float]


class Target(NamedTuple):
    """The current phase's goal: (measure, done, prescribed, unit), e.g. `exchanged 1200 of
    3185 mL`; `target` 0 when the measure has no prescribed end."""

    what: str
    done: float
    target: float
    unit: str

    def __str__(self) -> str:
        if self.target:
            return f"{self.what} {self.done:.0f} of {self.target:.0f} {self.unit}"
        return f"{self.what} {self.done:.0f} {self.unit}"


class AlarmView(NamedTuple):
    """One active alarm as an operator sees it (IEC 60601-1-8)."""

    id: str
    priority: str
    raised_ms: int
    latched: bool
    acknowledged: bool
    #: the condition is still there (not only latched)
    present: bool
    detail: str


class View(NamedTuple):
    """The run as it stands after a cycle. Immutable: a subscriber may keep it."""

    t_ms: int
    #: the docs/spec.md state name (`exchange_collect`, `alarm`, ...)
    phase: str
    #: the treatment phase a pause or an alarm holds (None otherwise)
    interrupted: str | None
    sample: Sample
    volumes: VolumesView
    target: Target
    alarms: tuple[AlarmView, ...]
    audio_paused_until_ms: int
    #: the requests the loop would carry out now (refused ones are left out: a dashboard
    #: greys them out); empty when requests are not applied at all
    allowed: frozenset[str]
    prescription: Prescription
    #: set once the run has ended: the outcome every front-end reports
    outcome: Outcome | None = None
    outcome_detail: str | None = None

    @property
    def firmware_safe(self) -> bool:
        return self.sample.safe

    def alarm_ids(self) -> list[str]:
        return sorted(a.id for a in self.alarms)


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alarmed:
    """An alarm raised, escalated, acknowledged, cleared, or the audio paused."""

    kind: ClassVar[str] = "alarm"
    alarm: AlarmEvent

    @property
    def t_ms(self) -> int:
        return self.alarm.t_ms

    def body(self) -> dict[str, Any]:
        a = self.alarm
        return {
            "t_ms": a.t_ms,
            "kind": a.kind,
            "alarm": a.alarm,
            "priority": a.priority,
            "detail": a.detail,
        }


@dataclass(frozen=True, slots=True)
class Operated:
    """An operator (or remote, or automatic) request and what became of it."""

    kind: ClassVar[str] = "operator"
    t_ms: int
    request: str
    cause: str
    result: str

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "cause": self.cause, "result": self.result}


@dataclass(frozen=True, slots=True)
class HalReported:
    """Something the rig's backend reports: safe state entered, armed, reset, link, faults."""

    kind: ClassVar[str] = "hal"
    event: HalEvent

    @property
    def t_ms(self) -> int:
        return self.event.t_ms

    def body(self) -> dict[str, Any]:
        return {"kind": str(self.event.kind), "detail": self.event.detail}


@dataclass(frozen=True, slots=True)
class Failed:
    """An exception in the loop: the rig was commanded safe, the run ends in `fault`."""

    kind: ClassVar[str] = "error"
    t_ms: int
    error: str
    traceback: str | None

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "traceback": self.traceback}


@dataclass(frozen=True, slots=True)
class Occurred:
    """The rarer occurrences, journaled as they are: `pre_start` (the gate's verdict),
    `resumed`, `interrupted`, `blood_loss`, `resume_check`, `auto_resume_held`, `note`."""

    t_ms: int
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return dict(self.data)


Event = Alarmed | Operated | HalReported | Failed | Occurred


# -- subscribers --------------------------------------------------------------------------
class JournalPort(Protocol):
    """What an edge may do with the journal the run is recorded in (controller.journal's
    `Journal`; the loop itself never touches it)."""

    def subscribe(self, callback: Callable[[list[Any]], None]) -> None:
        """`callback` gets every batch of committed events, from the writer's thread."""
        ...

    def unsubscribe(self, callback: Callable[[list[Any]], None]) -> None: ...

    def flush(self) -> None: ...

    def event(self, session: int, t_ms: int, kind: str, body: dict[str, Any]) -> None: ...

    def delivered(self, session: int, stream: str, last_id: int) -> None:
        """`session`'s events up to `last_id` reached `stream`'s receiver (coalesced)."""
        ...

    def undelivered(
        self, rig_id: str, stream: str, *, include: int | None = None, limit: int = 10_000
    ) -> list[Any]:
        """What earlier runs of `rig_id` left unacknowledged on `stream`, in journal order."""
        ...


@dataclass(frozen=True, slots=True)
class Attachment:
    """What an edge is given before the run."""

    #: how it may act on the run
    port: RequestPort
    #: the journal and the session in it (None when not journaled)
    journal: JournalPort | None = None
    session: int | None = None
    #: the patient's solute levels (simulated rig only: not on any real rig's wire)
    solutes: Callable[[], dict[str, float]] | None = None


class Edge:
    """A subscriber: override what it needs; every call comes from the loop's task and
    must return quickly."""

    def attach(self, run: Attachment) -> None:
        """Before the run, from the running event loop."""

    def view(self, view: View) -> None:
        """After every cycle."""

    def transition(self, record: TransitionRecord) -> None:
        """A state change, as it happens."""

    def event(self, event: Event) -> None:
        """Anything else that happened, as it happens."""

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """What a resume needs, every `CHECKPOINT_MS` of rig time and before each transition
        and raised alarm; never while a resume is being checked (the journaled checkpoint
        is the one being resumed)."""

    def prescription(self, rx: Prescription) -> None:
        """The prescription the treatment runs on, at its start (an override restricts it)."""

    async def close(self) -> None:
        """After the run, its last view and events published."""


class EventBus:
    """Fans the loop's output out to its edges, in the order they subscribed (the journal
    recorder first, so what others show has been queued for the journal before)."""

    def __init__(self) -> None:
        self.edges: list[Edge] = []
        self._views: tuple[Edge, ...] = ()
        self._checkpoints: tuple[Edge, ...] = ()

    def subscribe(self, edge: Edge) -> None:
        self.edges.append(edge)
        # only the edges that override a method are called for it: the view goes out every
        # cycle, and most edges do nothing with it
        self._views = tuple(e for e in self.edges if type(e).view is not Edge.view)
        self._checkpoints = tuple(
            e for e in self.edges if type(e).checkpoint is not Edge.checkpoint
        )

    @property
    def wants_views(self) -> bool:
        return bool(self._views)

    @property
    def wants_checkpoints(self) -> bool:
        return bool(self._checkpoints)

    def view(self, view: View) -> None:
        for edge in self._views:
            edge.view(view)

    def transition(self, record: TransitionRecord) -> None:
        for edge in self.edges:
            edge.transition(record)

    def event(self, event: Event) -> None:
        for edge in self.edges:
            edge.event(event)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        for edge in self._checkpoints:
            edge.checkpoint(checkpoint)

    def prescription(self, rx: Prescription) -> None:
        for edge in self.edges:
            edge.prescription(rx)


# -- the way in ---------------------------------------------------------------------------
@dataclass(slots=True)
class Request:
    """An operator's (or a dashboard's) request, as queued for the next cycle."""

    trigger: str
    cause: str
    answer: asyncio.Future[str] | None = None
    #: the loop has begun to apply it: it can no longer expire
    taken: bool = False
    #: what a request with a value asks for (`set_blood_flow`: mL/min)
    value: float | None = None


class RequestPort(Protocol):
    """How every front-end acts on the run."""

    def request(
        self,
        trigger: str,
        cause: str = "operator",
        answer: asyncio.Future[str] | None = None,
        *,
        value: float | None = None,
    ) -> Request:
        """Queue a request (`start`, `pause`, `resume`, `stop`, `end`, `acknowledge`,
        `pause_audio`, `set_blood_flow` with its `value` in mL/min); `answer` gets "done",
        "refused: why" or "failed: why" once the loop has applied it. A caller that stops
        waiting cancels `answer` before the loop has `taken` the request, which then expires
        unapplied: an action must never land after whoever asked for it was told it would
        not."""
        ...

    def journal_unavailable(self, t_ms: int, reason: str | None) -> None:
        """The journal cannot be written (reason) or can again (None): an alarm, raised or
        cleared at the next evaluation, that never stops the therapy by itself."""
        ...
