"""The treatment state machine (docs/spec.md section 4), built on `transitions`; it owns the
sequence.

One model, one `HierarchicalAsyncMachine`: queued, no auto transitions, every transition
recorded with its cause. The phases of the treatment proper are children of `treatment`, so
`pause`, `alarm` and `stop` are declared once for all of them.

Phase ends are guarded transitions on one trigger, `advance`: its conditions read the phase
table (`phases.PHASES[phase].done`) over the progress the control loop hands in, and the
mode's route (which phase follows which) is decided here and nowhere else (`_has_loop`,
`_is_adsorption`, `sequence`). Triggers are declared on the model for the type checker
(transitions README, "Typing support"); see the note at the declarations.
The graph machine (for the diagram) is built only by `diagram.py`.

`transitions` splits nested names on its separator, `_` by default, which would read
`exchange_collect` as `exchange` > `collect` (docs/reference.md, tooling facts); the separator is
set to "." before any machine is built, so the docs/spec.md names stand as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transitions.extensions import HierarchicalAsyncMachine
from transitions.extensions.asyncio import NestedAsyncState

from controller.config.prescription import Prescription
from controller.errors import AlsError
from controller.fsm.phases import PHASES, Progress

NestedAsyncState.separator = "."

TREATMENT_PHASES = ("connecting", "exchange", "exchange_collect", "purification")
STATES: list[Any] = [
    "idle",
    "self_test",
    "priming",
    "ready",
    {"name": "treatment", "children": list(TREATMENT_PHASES), "initial": "connecting"},
    "rinse_back",
    "done",
    "paused",
    "alarm",
    "fault",
]
#: States a pause or an alarm can interrupt and resume into.
RESUMABLE = (*tuple(f"treatment.{p}" for p in TREATMENT_PHASES), "rinse_back")
#: The requests an operator (or a dashboard) may make; the others are the loop's own.
OPERATOR_TRIGGERS = frozenset({"begin", "start", "pause", "resume", "stop", "end", "acknowledge"})


class IllegalRequest(AlsError, ValueError):
    """An operator (or remote) request that the current state does not allow."""


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    t_ms: int
    source: str
    dest: str
    trigger: str
    cause: str


def leaf(state: str) -> str:
    """The docs/spec.md name of a state (`treatment.exchange_collect` -> `exchange_collect`)."""
    return state.rsplit(".", 1)[-1]


def sequence(p: Prescription) -> tuple[str, ...]:
    """The phases a prescription goes through after `connecting`, by the same route the
    `advance` transitions take (docs/spec.md sections 2 and 4)."""
    if p.mode == "adsorption":
        return ("purification", "rinse_back")
    if not p.has_loop:
        return ("exchange", "rinse_back")
    return ("exchange", "exchange_collect", "purification", "rinse_back")


class Treatment:
    """The model: the state, the interrupted phase, the transition history, and what the
    guards read (the prescription and the progress of this cycle)."""

    state: str

    def __init__(
        self,
        rx: Prescription,
        on_transition: Callable[[TransitionRecord], None] | None = None,
    ) -> None:
        self.rx = rx
        self.progress = Progress()
        self.now_ms = 0
        self.entered_ms = 0
        self.interrupted: str | None = None
        self.history: list[TransitionRecord] = []
        self.on_transition = on_transition
        self.alarm_clear: Callable[[], bool] = lambda: True
        self._previous = "idle"
        self.machine = HierarchicalAsyncMachine(
            model=self,
            states=STATES,
            transitions=transitions(),
            initial="idle",
            queued=True,
            auto_transitions=False,
            send_event=True,
            before_state_change="_mark",
            after_state_change="_record",
        )

    # -- triggers, declared for the type checker; transitions binds the real ones ----------
    if TYPE_CHECKING:
        # Declared only for the type checker. `model_override=True` (the transitions README's
        # typing section) cannot be used: with nested states and a separator other than `_`,
        # transitions 0.9.3 fails binding `is_treatment.<child>` on an override model.

        async def begin(self, cause: str = "") -> bool: ...

        async def self_test_passed(self, cause: str = "") -> bool: ...

        async def primed(self, cause: str = "") -> bool: ...

        async def start(self, cause: str = "") -> bool: ...

        async def advance(self, cause: str = "") -> bool:
            """The phase's goal is reached: on to the next phase of this mode's route."""
            ...

        async def pause(self, cause: str = "") -> bool: ...

        async def alarm(self, cause: str = "") -> bool: ...

        async def resume(self, cause: str = "") -> bool: ...

        async def stop(self, cause: str = "") -> bool: ...

        async def end(self, cause: str = "") -> bool: ...

        async def fail(self, cause: str = "") -> bool: ...

        async def trigger(self, name: str, **kwargs: Any) -> bool: ...

        async def may_trigger(self, name: str, **kwargs: Any) -> bool: ...

    # -- state ------------------------------------------------------------------------------
    #: the docs/spec.md name of the state (`exchange_collect`, not `treatment.exchange_collect`):
    #: kept with every change, since the loop reads it many times a cycle
    phase: str = "idle"

    def phase_s(self) -> float:
        return (self.now_ms - self.entered_ms) / 1000.0

    # -- conditions -----------------------------------------------------------------------
    def _phase_done(self, _event: Any) -> bool:
        phase = PHASES.get(self.phase)
        return phase is not None and phase.done(self.rx, self.progress)

    def _has_loop(self, _event: Any) -> bool:
        return self.rx.has_loop

    def _is_adsorption(self, _event: Any) -> bool:
        return self.rx.mode == "adsorption"

    def _alarm_clear(self, _event: Any) -> bool:
        return self.alarm_clear()

    def _remember(self, _event: Any) -> None:
        """Runs before the state changes, so `self.state` is the phase being interrupted."""
        if self.state in RESUMABLE:
            self.interrupted = self.state

    # -- recording ----------------------------------------------------------------------
    def _mark(self, _event: Any) -> None:
        self._previous = self.state

    def _record(self, event: Any) -> None:
        self.entered_ms = self.now_ms
        self.phase = leaf(self.state)
        record = TransitionRecord(
            t_ms=self.now_ms,
            source=leaf(self._previous),
            dest=leaf(event.transition.dest),
            trigger=event.event.name,
            cause=str(event.kwargs.get("cause", "")),
        )
        self.history.append(record)
        if self.on_transition is not None:
            self.on_transition(record)

    # -- operator -----------------------------------------------------------------------
    async def request(self, trigger: str, cause: str) -> None:
        """Fire `trigger` or refuse with a clear message: never ignored, never a fault."""
        known = trigger in self.machine.events
        if not known or not await self.may_trigger(trigger, cause=cause):
            allowed = self.allowed()
            raise IllegalRequest(
                f"cannot {trigger} while {self.phase}"
                + (f" (allowed now: {', '.join(allowed)})" if allowed else "")
            )
        await self.trigger(trigger, cause=cause)

    def allowed(self) -> list[str]:
        return sorted(t for t in self.machine.get_triggers(self.state) if t in OPERATOR_TRIGGERS)

    def restore(
        self,
        state: str,
        interrupted: str | None,
        entered_ms: int,
        history: list[TransitionRecord],
    ) -> None:
        """Continue a journaled session in the state it was in, without entering it anew:
        nothing about the circuit changed while the controller was away but the safe state,
        which the resumed run has already left with an explicit arm."""
        self.machine.set_state(state)
        self.phase = leaf(state)
        self.interrupted = interrupted
        self.entered_ms = entered_ms
        self.history = list(history)


def transitions() -> list[dict[str, Any]]:
    """Every transition of the treatment; the diagram draws exactly these."""
    t: list[dict[str, Any]] = [
        {"trigger": "begin", "source": "idle", "dest": "self_test"},
        {"trigger": "self_test_passed", "source": "self_test", "dest": "priming"},
        {"trigger": "primed", "source": "priming", "dest": "ready"},
        {"trigger": "start", "source": "ready", "dest": "treatment.connecting"},
        # phase ends: one trigger, guarded by the phase table and the mode's route
        {
            "trigger": "advance",
            "source": "treatment.connecting",
            "dest": "treatment.purification",
            "conditions": ["_phase_done", "_is_adsorption"],
        },
        {
            "trigger": "advance",
            "source": "treatment.connecting",
            "dest": "treatment.exchange",
            "conditions": "_phase_done",
        },
        {
            "trigger": "advance",
            "source": "treatment.exchange",
            "dest": "treatment.exchange_collect",
            "conditions": ["_phase_done", "_has_loop"],
        },
        {
            "trigger": "advance",
            "source": "treatment.exchange",
            "dest": "rinse_back",
            "conditions": "_phase_done",
            "unless": "_has_loop",
        },
        {
            "trigger": "advance",
            "source": "treatment.exchange_collect",
            "dest": "treatment.purification",
            "conditions": "_phase_done",
        },
        {
            "trigger": "advance",
            "source": "treatment.purification",
            "dest": "rinse_back",
            "conditions": "_phase_done",
        },
        {"trigger": "advance", "source": "rinse_back", "dest": "done", "conditions": "_phase_done"},
        {"trigger": "pause", "source": "treatment", "dest": "paused", "before": "_remember"},
        {
            "trigger": "alarm",
            "source": ["treatment", "paused", "rinse_back"],
            "dest": "alarm",
            "before": "_remember",
        },
        {
            "trigger": "stop",
            "source": ["treatment", "paused", "alarm", "fault"],
            "dest": "rinse_back",
        },
        {"trigger": "end", "source": ["fault", "ready", "idle"], "dest": "done"},
        {
            "trigger": "fail",
            "source": [
                s if isinstance(s, str) else s["name"] for s in STATES if s not in ("fault", "done")
            ],
            "dest": "fault",
        },
    ]
    for dest in RESUMABLE:
        t.append(
            {
                "trigger": "resume",
                "source": "paused",
                "dest": dest,
                "conditions": f"_resume_to_{dest.replace('.', '__')}",
            }
        )
        t.append(
            {
                "trigger": "resume",
                "source": "alarm",
                "dest": dest,
                "conditions": [f"_resume_to_{dest.replace('.', '__')}", "_alarm_clear"],
            }
        )
    return t


for _dest in RESUMABLE:
    setattr(
        Treatment,
        f"_resume_to_{_dest.replace('.', '__')}",
        (lambda d: lambda self, _event: self.interrupted == d)(_dest),
    )
