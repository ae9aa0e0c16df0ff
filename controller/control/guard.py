"""Whatever happens, a run ends with the rig commanded safe and a summary.

An exception inside the loop ends in `fault`, its traceback kept for the summary; an
interruption (Ctrl-C, SIGTERM, a link lost for good) in `interrupted`, journaled with its
cause; a cancellation still commands the safe state on its way out. Never a silent crash
with pumps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.control.events import Failed, Occurred
from controller.control.resume import ResumeDeclined, ResumeFailed
from controller.errors import AlsError
from controller.summary import Summary

if TYPE_CHECKING:
    from controller.control.loop import Controller

#: After an interruption, how long (wall s) the loop has to notice it at its next sample
#: before its task is cancelled outright (a stalled link must not keep the process alive).
INTERRUPT_GRACE_S = 3.0


class Interrupted(AlsError):
    """The process was told to end (Ctrl-C, SIGTERM): the rig is commanded safe first."""

    exit_code = 6  # EXIT_CODES[Outcome.INTERRUPTED]


class Guard:
    def __init__(self, c: Controller) -> None:
        self.c = c
        #: why the run was told to end, once it was
        self.cause: str | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._running = False

    def claim_task(self) -> None:
        """The task an interruption cancels if the loop does not notice it in time."""
        self._task = asyncio.current_task()

    def interrupt(self, cause: str, *, cancel: bool = True) -> None:
        """End the run at the next sample: the rig is commanded safe, the interruption
        journaled, the summary made. A second call, or a loop that has not reached a sample
        within INTERRUPT_GRACE_S, cancels the run outright (`cancel`: the caller is not the
        loop itself); the safe state is still commanded on the way out."""
        first = self.cause is None
        self.cause = self.cause or cause
        task = self._task
        if not cancel or task is None or task.done():
            return
        if not first or not self._running:  # a second signal, or nothing runs yet to stop
            task.cancel()
        else:  # called off when the run ends: the task may be its caller's, which goes on
            self._grace = asyncio.get_running_loop().call_later(INTERRUPT_GRACE_S, task.cancel)

    def check(self) -> None:
        """At every sample: an interruption ends the run here."""
        if self.cause is not None:
            raise Interrupted(self.cause)

    async def run(self, body: Callable[[], Awaitable[None]]) -> Summary:
        c = self.c
        self._task = asyncio.current_task()
        self._running = True
        try:
            await body()
        except (ResumeDeclined, ResumeFailed):
            self._call_off()
            raise  # refused before anything moved: the firmware is as it was found
        except Interrupted:
            await self._interrupted()
        except Exception as exc:  # the loop must end safe whatever happened
            run = c.accounting.run
            run.error = "".join(traceback.format_exception_only(exc)).strip()
            c.traceback = traceback.format_exc()
            await self._safe_anyway()  # first: nothing below may stand in its way
            t = c.sample.t_ms if c.sample is not None else 0
            with contextlib.suppress(Exception):  # a dead journal must not hide the fault
                c.emit(Failed(t, run.error, c.traceback))
            if c.machine.phase != "fault":
                with contextlib.suppress(Exception):
                    await c.machine.fail(cause=run.error)
        except BaseException:  # cancelled, Ctrl-C: still command the safe state, then go
            await asyncio.shield(self._safe_anyway())
            task = self._task
            if self.cause is None or task is None or not task.cancelling():
                raise
            # cancelled because an interruption was not noticed in time (a stalled link,
            # a second Ctrl-C): the run still ends as an interruption, with its summary
            task.uncancel()
            await self._interrupted()
        self._call_off()
        c.ended = True  # the outcome holds from here (the last view says it)
        with contextlib.suppress(Exception):  # an edge failing at the end hides nothing
            c.publish()
        return c.summary()

    def _call_off(self) -> None:
        if self._grace is not None:
            self._grace.cancel()

    async def _interrupted(self) -> None:
        """The rig commanded safe, then the interruption journaled with its cause."""
        c = self.c
        await self._safe_anyway()
        cause = self.cause or "interrupted"
        c.accounting.run.interrupted = cause
        t = c.sample.t_ms if c.sample is not None else 0
        with contextlib.suppress(Exception):  # a dead journal must not hide the stop
            c.emit(Occurred(t, "interrupted", {"cause": cause, "phase": c.machine.phase}))

    async def _safe_anyway(self) -> None:
        """Command the safe state; if even that fails, the firmware's watchdog takes over."""
        c = self.c
        try:
            await c.actuator.enter_safe()
        except Exception as exc:  # a dead link: nothing more can be sent
            failed = f"enter_safe failed: {exc}"
            run = c.accounting.run
            run.error = f"{run.error}; {failed}" if run.error else failed
