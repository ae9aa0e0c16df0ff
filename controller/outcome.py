"""How a session ended, in one word every front-end shares: summary, report, exit status,
`alsctl sessions`, MQTT.

A state name is not an outcome: a treatment stopped at 361 of 3185 mL ends in `done` through
rinse-back exactly like a full one. The outcome is judged from the whole course (the
transitions and what ended the run), once, here; everything else prints what this says.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    #: the prescription was done and the blood rinsed back
    COMPLETED = "completed"
    #: someone (operator, dashboard, the pre-start gate) ended it before the prescription was done
    STOPPED = "stopped"
    #: the run ended with the rig held in an alarm nobody resolved
    ALARM = "alarm"
    #: something the controller could not recover from; the rig was commanded safe
    FAULT = "fault"
    #: the process was told to end (Ctrl-C, SIGTERM) or died; the rig was commanded safe
    INTERRUPTED = "interrupted"


#: The exit status of `alsctl run` for each outcome (README, "Exit status").
EXIT_CODES: dict[Outcome, int] = {
    Outcome.COMPLETED: 0,
    Outcome.STOPPED: 3,
    Outcome.ALARM: 4,
    Outcome.FAULT: 5,
    Outcome.INTERRUPTED: 6,
}


class _Transition(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def dest(self) -> str: ...
    @property
    def trigger(self) -> str: ...


def judge(
    final_phase: str, history: Sequence[_Transition], interrupted: str | None = None
) -> Outcome:
    """The outcome of a run from where it ended and how it got there.

    A fault anywhere on the way stays the outcome, even after a manual rinse-back: the
    treatment ended because of it. A `stop` or an `end` before the prescription was done
    is a stop. Only a `done` reached from rinse-back that nobody requested is completed.
    """
    if interrupted is not None:
        return Outcome.INTERRUPTED
    if final_phase == "fault" or any(t.dest == "fault" for t in history):
        return Outcome.FAULT
    if final_phase == "alarm":
        return Outcome.ALARM
    if final_phase != "done":
        return Outcome.INTERRUPTED  # the run did not reach an end of its own
    if any(t.trigger in ("stop", "end") for t in history):
        return Outcome.STOPPED
    if any(t.source == "rinse_back" and t.dest == "done" for t in history):
        return Outcome.COMPLETED
    return Outcome.STOPPED
