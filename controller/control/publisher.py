"""What the loop publishes after a cycle: the view, and the checkpoint when it is due.

The view is built once per cycle for every edge, so its costly parts are cached: the active
alarms are rebuilt only when the alarm manager's `revision` moved, and the requests allowed
now only when the state, the alarms or the hold at `ready` changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.control import checkpoint as cps
from controller.control import summary as summaries
from controller.control.accounting import ACCOUNTED
from controller.control.checkpoint import CHECKPOINT_MS
from controller.control.events import AlarmView, View
from controller.control.operator import BLOOD_FLOW_PHASES

if TYPE_CHECKING:
    from controller.control.loop import Controller


class Publisher:
    def __init__(self, c: Controller) -> None:
        self.c = c
        self._next_checkpoint_ms = 0
        self._alarms: tuple[int, tuple[AlarmView, ...]] = (-1, ())
        self._allowed: tuple[tuple[str, int, bool], frozenset[str]] = (
            ("", -1, False),
            frozenset(),
        )

    def checkpoint(self) -> None:
        """Now, whatever the period: before a transition or an alarm is published, so the
        journal never holds one its newest checkpoint has not seen. Never while a resume is
        being checked (the journaled checkpoint is the one being resumed)."""
        c = self.c
        if c.resuming or c.sample is None or not c.bus.wants_checkpoints:
            return
        self._next_checkpoint_ms = c.sample.t_ms + CHECKPOINT_MS
        c.bus.checkpoint(cps.take(c))

    def cycle(self) -> None:
        """After a cycle: the checkpoint when due, then the view."""
        c = self.c
        sample = c.sample
        if sample is None:
            return
        if sample.t_ms >= self._next_checkpoint_ms:
            self.checkpoint()
        if c.bus.wants_views:
            c.bus.view(self.view())

    def view(self) -> View:
        c = self.c
        assert c.sample is not None
        m = c.machine
        phase = m.phase
        result = c.outcome() if c.ended else None
        return View(
            c.sample.t_ms,
            phase,
            m.interrupted.rsplit(".", 1)[-1] if phase == "alarm" and m.interrupted else None,
            c.sample,
            c.accounting.volumes.view(),
            c.accounting.target(c.rx, c.treatment_phase()),
            self._alarm_views(),
            c.safety.alarms.audio_paused_until_ms,
            frozenset() if c.ended else self.allowed(),
            c.rx,
            result,
            summaries.outcome_detail(c, result) if result is not None else None,
        )

    def _alarm_views(self) -> tuple[AlarmView, ...]:
        alarms = self.c.safety.alarms
        revision, views = self._alarms
        if revision != alarms.revision:
            views = tuple(
                AlarmView(
                    a.id,
                    str(a.priority),
                    a.raised_ms,
                    a.latched,
                    a.acknowledged,
                    a.condition,
                    a.detail,
                )
                for a in alarms.active.values()
            )
            self._alarms = (alarms.revision, views)
        return views

    def allowed(self) -> frozenset[str]:
        """The requests the loop would carry out now: from `connecting` to the end of
        rinse-back, or at `ready` when it holds there for a start."""
        c = self.c
        m = c.machine
        alarms = c.safety.alarms
        held = m.phase == "ready" and not c.auto_start
        key = (m.state, alarms.revision, held)
        if self._allowed[0] == key:
            return self._allowed[1]
        if m.phase not in ACCOUNTED and not held:
            allowed: frozenset[str] = frozenset()  # a request now would expire unapplied
        else:
            triggers = set(m.allowed())
            if m.phase == "alarm" and not c.safety.clear_to_resume():
                triggers.discard("resume")  # it would be refused: conditions present
            if any(not a.acknowledged for a in alarms.active.values()):
                triggers |= {"acknowledge", "pause_audio"}
            if c.treatment_phase() in BLOOD_FLOW_PHASES:
                triggers.add("set_blood_flow")
            allowed = frozenset(triggers)
        self._allowed = (key, allowed)
        return allowed
