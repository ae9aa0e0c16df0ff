"""What the console shows, kept as the loop publishes it: the console's only tie to the run.

`Feed` is an edge (docs/architecture.md): every call from the loop only stores a reference
or appends to a bounded deque and returns, so the loop never waits for the screen, however
slow, frozen or dead it is. The screen reads the feed on its own wall-clock timer
(`ConsoleApp`), not per sample: a simulation at 1000x does not flood it, and a bench rig at
1x is redrawn as often. Requests go back through the run's `RequestPort`, as MQTT's do,
with the cause `console`.

Once the console is gone (the operator left it, or it crashed) `fallback` takes over: the
feed hands the loop's output to plain progress lines, so the run stays visible.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controller.config.rig import RigConfig
from controller.control.events import (
    Alarmed,
    Attachment,
    Edge,
    Event,
    Failed,
    HalReported,
    Occurred,
    Operated,
    RequestPort,
    View,
)
from controller.fsm.machine import TransitionRecord
from controller.words import REQUEST_WORDS, alarm_words

#: One trend point per this much rig time; the sparklines show the last `TREND_POINTS`.
TREND_EVERY_MS = 2_000
TREND_POINTS = 300  # 10 min
#: Lines of the event log kept
LOG_LINES = 200
#: The cause every console request is journaled with
CAUSE = "console"


def clock(t_ms: float) -> str:
    seconds = int(t_ms // 1000)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def derived(view: View) -> dict[str, float]:
    """The pressures the hazard table judges, as the interlocks compute them."""
    s = view.sample.sensors
    return {
        "access": s["access"].value,
        "pre_separator": s["pre_separator"].value,
        "return": s["return"].value,
        "tmp": (s["pre_separator"].value + s["return"].value) / 2 - s["plasma"].value,
        "adsorber_dp": s["pre_adsorber"].value - s["post_adsorber"].value,
        "map": s["map"].value,
        "blood": view.sample.pumps["blood"].measured,
    }


TRENDS = ("access", "pre_separator", "return", "tmp", "adsorber_dp", "map", "blood")


@dataclass(slots=True)
class Answer:
    """A request the console sent and what became of it."""

    what: str
    result: str | None = None

    @property
    def refused(self) -> bool:
        return self.result is not None and self.result != "done"

    def __str__(self) -> str:
        if self.result is None:
            return f"{self.what}: sent"
        if self.result == "done":
            return f"{self.what}: done"
        return f"{self.what}: {self.result}"


class Feed(Edge):
    """The run as the console shows it (see the module's docstring)."""

    def __init__(self, rig: RigConfig, backend: str) -> None:
        self.rig = rig
        self.backend = backend
        #: the newest view (None before the first sample)
        self.latest: View | None = None
        self.trends: dict[str, deque[float]] = {k: deque(maxlen=TREND_POINTS) for k in TRENDS}
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.answers: deque[Answer] = deque(maxlen=5)
        self.port: RequestPort | None = None
        #: progress of the phase's target: (t_ms, done) some time ago, for the time remaining
        self._rate: deque[tuple[int, float, str]] = deque(maxlen=32)
        self._next_trend_ms = 0
        self.ended = False
        #: who shows the run once the console is gone
        self.fallback: Edge | None = None

    # -- from the loop (quick, never blocking) ----------------------------------------------
    def attach(self, run: Attachment) -> None:
        self.port = run.port

    def view(self, view: View) -> None:
        self.latest = view
        if view.t_ms >= self._next_trend_ms:
            self._next_trend_ms = view.t_ms + TREND_EVERY_MS
            for k, v in derived(view).items():
                self.trends[k].append(v)
            target = view.target
            self._rate.append((view.t_ms, target.done, target.what))
        if self.fallback is not None:
            self.fallback.view(view)

    def transition(self, record: TransitionRecord) -> None:
        self._line(record.t_ms, f"{record.source} -> {record.dest}  ({record.cause})")
        if self.fallback is not None:
            self.fallback.transition(record)

    def event(self, event: Event) -> None:
        if isinstance(event, Alarmed):
            a = event.alarm
            if a.kind == "audio_paused":
                self._line(a.t_ms, "audio paused 2 min")
            elif a.kind in ("raised", "cleared", "acknowledged", "escalated"):
                what = alarm_words(a.alarm).what
                self._line(a.t_ms, f"ALARM {a.kind}: {what} ({a.priority})")
        elif isinstance(event, Operated):
            what = REQUEST_WORDS.get(event.request, event.request)
            self._line(event.t_ms, f"{event.cause}: {what} -> {event.result}")
        elif isinstance(event, Failed):
            self._line(event.t_ms, f"error: {event.error}")
        elif isinstance(event, HalReported):
            pass  # the rig's own chatter (armed, limits) is the report's, not the screen's
        elif isinstance(event, Occurred) and event.kind in (
            "resume_check",
            "auto_resume_held",
            "interrupted",
            "blood_loss",
            "note",
        ):
            body = ", ".join(f"{k} {v}" for k, v in event.data.items() if k != "traceback")
            self._line(event.t_ms, f"{event.kind.replace('_', ' ')}: {body}")
        if self.fallback is not None:
            self.fallback.event(event)

    async def close(self) -> None:
        self.ended = True
        if self.fallback is not None:
            await self.fallback.close()

    def _line(self, t_ms: int, text: str) -> None:
        self.log.append(f"{clock(t_ms)}  {text}")

    # -- from the screen -------------------------------------------------------------------
    def send(
        self,
        trigger: str,
        value: float | None = None,
        done: Callable[[Answer], None] | None = None,
    ) -> Answer | None:
        """A request through the run's port; its answer lands in `answers` (and `done`)."""
        what = REQUEST_WORDS.get(trigger, trigger)
        if value is not None:
            what = f"{what} to {value:g} mL/min"
        answer = Answer(what)
        if self.port is None or self.ended:
            answer.result = "refused: the run is over" if self.ended else "refused: no run"
            self.answers.append(answer)
            return answer
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def landed(f: asyncio.Future[str]) -> None:
            answer.result = f.result() if not f.cancelled() else "expired"
            if done is not None:
                done(answer)

        future.add_done_callback(landed)
        self.port.request(trigger, CAUSE, future, value=value)
        self.answers.append(answer)
        return answer

    # -- what the screen computes ----------------------------------------------------------
    def remaining_ms(self) -> float | None:
        """Time left in the phase at its recent rate of progress (None: no rate yet)."""
        view = self.latest
        if view is None or not view.target.target or len(self._rate) < 2:
            return None
        t1, d1, what = self._rate[-1]
        t0, d0, what0 = next(
            ((t, d, w) for t, d, w in self._rate if t1 - t <= 60_000), self._rate[0]
        )
        if what0 != what or t1 <= t0 or d1 <= d0:
            return None
        rate = (d1 - d0) / (t1 - t0)
        return max(0.0, (view.target.target - view.target.done) / rate)

    def frozen(self) -> Feed:
        """A copy that the loop no longer feeds (snapshot tests, a finished session)."""
        twin = copy.copy(self)
        twin.trends = {k: deque(v, maxlen=TREND_POINTS) for k, v in self.trends.items()}
        twin.log = deque(self.log, maxlen=LOG_LINES)
        twin.answers = deque(self.answers, maxlen=5)
        twin._rate = deque(self._rate, maxlen=32)
        twin.port = None
        twin.fallback = None
        return twin
