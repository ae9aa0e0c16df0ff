"""The treatment state machine (SPEC section 4), built on `transitions`.

One model, one `HierarchicalAsyncGraphMachine`: queued, no auto transitions, every
transition recorded with its cause. The phases of the treatment proper are children of
`treatment`, so `pause`, `alarm` and `stop` are declared once for all of them.

`transitions` splits nested names on its separator, `_` by default, which would read
`exchange_collect` as `exchange` > `collect` (REFERENCE, tooling facts); the separator is set
to "." before any machine is built, so the SPEC names stand as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions.extensions import HierarchicalAsyncGraphMachine
from transitions.extensions.asyncio import NestedAsyncState

from controller.errors import AlsError

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
    """The SPEC name of a state (`treatment.exchange_collect` -> `exchange_collect`)."""
    return state.rsplit(".", 1)[-1]


class Treatment:
    """The model: holds the state, the interrupted phase and the transition history."""

    state: str

    def __init__(self, mode: str, on_transition: Callable[[TransitionRecord], None] | None = None):
        self.mode = mode
        self.now_ms = 0
        self.entered_ms = 0
        self.interrupted: str | None = None
        self.history: list[TransitionRecord] = []
        self.on_transition = on_transition
        self.alarm_clear: Callable[[], bool] = lambda: True
        self._previous = "idle"
        self.machine = HierarchicalAsyncGraphMachine(
            model=self,
            states=STATES,
            transitions=_transitions(),
            initial="idle",
            queued=True,
            auto_transitions=False,
            send_event=True,
            before_state_change="_mark",
            after_state_change="_record",
            graph_engine="mermaid",
        )

    @property
    def phase(self) -> str:
        return leaf(self.state)

    def phase_s(self) -> float:
        return (self.now_ms - self.entered_ms) / 1000.0

    # -- conditions ---------------------------------------------------------------------
    def _is_adsorption(self, _event: Any) -> bool:
        return self.mode == "adsorption"

    def _is_pe(self, _event: Any) -> bool:
        return self.mode == "pe"

    def _remember(self, _event: Any) -> None:
        """Runs before the state changes, so `self.state` is the phase being interrupted."""
        if self.state in RESUMABLE:
            self.interrupted = self.state

    def _alarm_clear(self, _event: Any) -> bool:
        return self.alarm_clear()

    # -- recording ----------------------------------------------------------------------
    def _mark(self, _event: Any) -> None:
        self._previous = self.state

    def _record(self, event: Any) -> None:
        self.entered_ms = self.now_ms
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

    async def request(self, trigger: str, cause: str) -> None:
        """Fire `trigger` or refuse with a clear message: never ignored, never a fault."""
        may = getattr(self, f"may_{trigger}", None)
        if may is None or not await may(cause=cause):
            raise IllegalRequest(
                f"cannot {trigger} while {self.phase}"
                + (f" (allowed now: {', '.join(self.allowed())})" if self.allowed() else "")
            )
        await getattr(self, trigger)(cause=cause)

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
        self.interrupted = interrupted
        self.entered_ms = entered_ms
        self.history = list(history)

    def allowed(self) -> list[str]:
        return sorted(
            {
                t
                for t in self.machine.get_triggers(self.state)
                if not t.startswith("to_") and t in OPERATOR_TRIGGERS
            }
        )

    def diagram(self) -> str:
        return self.get_graph().draw(None)


OPERATOR_TRIGGERS = frozenset({"begin", "start", "pause", "resume", "stop", "end", "acknowledge"})


def _transitions() -> list[dict[str, Any]]:
    t: list[dict[str, Any]] = [
        {"trigger": "begin", "source": "idle", "dest": "self_test"},
        {"trigger": "self_test_passed", "source": "self_test", "dest": "priming"},
        {"trigger": "primed", "source": "priming", "dest": "ready"},
        {"trigger": "start", "source": "ready", "dest": "treatment.connecting"},
        {
            "trigger": "connected",
            "source": "treatment.connecting",
            "dest": "treatment.purification",
            "conditions": "_is_adsorption",
        },
        {"trigger": "connected", "source": "treatment.connecting", "dest": "treatment.exchange"},
        {
            "trigger": "collect",
            "source": "treatment.exchange",
            "dest": "treatment.exchange_collect",
        },
        {
            "trigger": "exchange_complete",
            "source": "treatment.exchange",
            "dest": "rinse_back",
            "conditions": "_is_pe",
        },
        {
            "trigger": "exchange_complete",
            "source": "treatment.exchange_collect",
            "dest": "treatment.purification",
        },
        {
            "trigger": "purification_complete",
            "source": "treatment.purification",
            "dest": "rinse_back",
        },
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
        {"trigger": "rinsed", "source": "rinse_back", "dest": "done"},
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
