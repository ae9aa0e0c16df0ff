"""The alarm manager, with IEC 60601-1-8 semantics (docs/spec.md 5.4).

A condition becomes an alarm only after it has held for its condition delay; it clears only
after it has been absent for its clear delay (hysteresis against chatter). A latched alarm
stays active, even once its condition is gone, until acknowledged; acknowledging never hides
a condition that is still present (it only silences it). Audio can be paused for two
minutes; a new alarm, or one whose priority rises, sounds again at once.

Every raise, clear, acknowledge and audio pause is an `AlarmEvent` for the journal and MQTT.
Time comes from samples (rig ms), never from a clock read here.

`revision` counts every change a display would show, so that a view of the alarms built once
can be reused until it moves; most cycles change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

AUDIO_PAUSE_MS = 120_000


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2}


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    t_ms: int
    kind: str  # raised | cleared | acknowledged | audio_paused | escalated
    alarm: str
    priority: str
    detail: str = ""


@dataclass(slots=True)
class Alarm:
    id: str
    priority: Priority
    latched: bool
    raised_ms: int
    detail: str
    condition: bool = True
    acknowledged: bool = False


@dataclass(slots=True)
class _Pending:
    since_ms: int | None = None  # condition first seen (raise timer)
    gone_ms: int | None = None  # condition first absent (clear timer)


@dataclass(slots=True)
class AlarmManager:
    active: dict[str, Alarm] = field(default_factory=dict)
    events: list[AlarmEvent] = field(default_factory=list)
    audio_paused_until_ms: int = -1
    #: grows whenever what a display shows changes: an alarm raised, cleared, escalated or
    #: acknowledged, its condition or detail changing, audio paused. (Audio coming back by
    #: itself when a pause runs out is a matter of time, not a change: see `audible`.)
    revision: int = 0
    #: timers of conditions being followed: active alarms, and absent ones timing their
    #: condition delay. A condition absent with no entry here and no alarm needs no update.
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def update(
        self,
        t_ms: int,
        alarm_id: str,
        present: bool,
        *,
        priority: Priority,
        delay_ms: int = 0,
        clear_ms: int = 0,
        latched: bool = False,
        detail: str = "",
    ) -> Alarm | None:
        """Feed one condition's state for this cycle; returns the alarm if active."""
        if not present and alarm_id not in self.active:
            self.absent(alarm_id)
            return None
        pend = self._pending.setdefault(alarm_id, _Pending())
        alarm = self.active.get(alarm_id)
        if present:
            pend.gone_ms = None
            if alarm is None:
                if pend.since_ms is None:
                    pend.since_ms = t_ms
                if t_ms - pend.since_ms >= delay_ms:
                    alarm = Alarm(alarm_id, priority, latched, t_ms, detail)
                    self.active[alarm_id] = alarm
                    self._event(t_ms, "raised", alarm, detail)
                    self.audio_paused_until_ms = min(self.audio_paused_until_ms, t_ms)
            else:
                if not alarm.condition:
                    alarm.condition = True
                    self.revision += 1
                if RANK[priority] > RANK[alarm.priority]:
                    alarm.priority = priority
                    alarm.acknowledged = False
                    self._event(t_ms, "escalated", alarm, detail)
                    self.audio_paused_until_ms = min(self.audio_paused_until_ms, t_ms)
                if detail and detail != alarm.detail:
                    alarm.detail = detail
                    self.revision += 1
            return alarm
        pend.since_ms = None
        if alarm is None:
            return None
        if pend.gone_ms is None:
            pend.gone_ms = t_ms
        if t_ms - pend.gone_ms < clear_ms:
            return alarm  # hysteresis: not gone long enough
        if alarm.condition:
            alarm.condition = False
            self.revision += 1
        if alarm.latched and not alarm.acknowledged:
            return alarm  # stays until acknowledged
        self._clear(t_ms, alarm)
        return None

    def absent(self, alarm_id: str) -> None:
        """The fast path for the common case, a condition absent and no alarm: only the
        raise timer restarts (dozens of conditions are fed every cycle). With no alarm its
        timers are all there is, so they go: `idle` and `watched` then skip it."""
        if alarm_id in self.active:
            pend = self._pending.get(alarm_id)
            if pend is not None:
                pend.since_ms = None
        else:
            self._pending.pop(alarm_id, None)

    def idle(self, alarm_id: str) -> bool:
        """Neither active nor timing its condition delay: feeding it absent changes nothing."""
        return alarm_id not in self.active and alarm_id not in self._pending

    @property
    def quiet(self) -> bool:
        """No alarm active and no condition delay running: every condition is `idle`."""
        return not self.active and not self._pending

    def watched(self) -> set[str]:
        """The ids an absent condition must still be fed for (the complement of `idle`),
        taken once per cycle by whoever feeds dozens of conditions, almost all absent."""
        if not self.active and not self._pending:
            return set()
        return self.active.keys() | self._pending.keys()

    def _clear(self, t_ms: int, alarm: Alarm) -> None:
        del self.active[alarm.id]
        self._pending.pop(alarm.id, None)
        self._event(t_ms, "cleared", alarm)

    def acknowledge(self, t_ms: int, alarm_id: str | None = None) -> list[str]:
        """Acknowledge one alarm or all; a latched alarm whose condition is gone clears."""
        done = []
        for alarm in list(self.active.values()):
            if alarm_id is not None and alarm.id != alarm_id:
                continue
            if not alarm.acknowledged:
                alarm.acknowledged = True
                self._event(t_ms, "acknowledged", alarm)
                done.append(alarm.id)
            if not alarm.condition:
                self._clear(t_ms, alarm)
        return done

    def snapshot(self) -> list[dict[str, object]]:
        """The active alarms as plain data (journal checkpoints)."""
        return [
            {
                "id": a.id,
                "priority": str(a.priority),
                "latched": a.latched,
                "raised_ms": a.raised_ms,
                "detail": a.detail,
                "acknowledged": a.acknowledged,
            }
            for a in self.active.values()
        ]

    def restore(self, active: list[dict[str, object]]) -> None:
        """Alarms a resumed run inherits; present conditions are re-judged every cycle."""
        for a in active:
            alarm = Alarm(
                id=str(a["id"]),
                priority=Priority(str(a["priority"])),
                latched=bool(a["latched"]),
                raised_ms=int(a["raised_ms"]),  # type: ignore[call-overload]  # JSON: an int, typed object
                detail=str(a["detail"]),
                acknowledged=bool(a["acknowledged"]),
            )
            self.active[alarm.id] = alarm
        self.revision += 1

    def pause_audio(self, t_ms: int) -> None:
        self.audio_paused_until_ms = t_ms + AUDIO_PAUSE_MS
        self.events.append(AlarmEvent(t_ms, "audio_paused", "*", "", "2 min"))
        self.revision += 1

    def audible(self, t_ms: int) -> bool:
        """Sound is on when any alarm is active and unacknowledged, unless paused."""
        if t_ms < self.audio_paused_until_ms:
            return False
        return any(not a.acknowledged for a in self.active.values())

    def highest(self) -> Priority | None:
        if not self.active:
            return None
        return max((a.priority for a in self.active.values()), key=RANK.__getitem__)

    def conditions_present(self) -> list[str]:
        return sorted(a.id for a in self.active.values() if a.condition)

    def drain(self) -> list[AlarmEvent]:
        events, self.events = self.events, []
        return events

    def _event(self, t_ms: int, kind: str, alarm: Alarm, detail: str = "") -> None:
        """Every raise, clear, escalation and acknowledgement comes through here, each a
        change a display shows."""
        self.events.append(AlarmEvent(t_ms, kind, alarm.id, alarm.priority.value, detail))
        self.revision += 1
