"""Feeds the journal from the loop's event bus: what happened, and enough to show and resume it.

An edge like any other, so the control loop knows nothing of SQLite: it publishes a view
every cycle, transitions, events and checkpoints, and this turns them into rows. Everything
here is cheap per cycle: a tuple on a ring buffer, and a trend row once per second of rig
time. Around an alarm the ring (the last `window_ms` at full rate)
is written out and full rate goes on for as long again, so the report can show what led to
it and what followed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from controller.config.prescription import Prescription
from controller.control.checkpoint import Checkpoint
from controller.control.events import Alarmed, Attachment, Edge, Event, RequestPort, View
from controller.fsm.machine import TransitionRecord
from controller.journal import Journal, JournalError
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES, Sample

TREND_MS = 1000
WINDOW_MS = 30_000
#: Full-rate rows a session keeps at most (about 20 alarm windows at 10 Hz): an alarm that
#: chatters for hours must not grow the journal without bound; later windows are skipped,
#: and the journal says so once.
FULL_RATE_BUDGET = 12_000


def trend_row(
    sample: Sample,
    phase: str,
    volumes: tuple[float, float, float],
    extra: dict[str, float],
    columns: dict[str, dict[str, list[float]]] | None = None,
) -> dict[str, Any]:
    """One trend row. `extra` is the patient's solute levels and `columns` each adsorber's
    [inlet, outlet] concentration per solute (simulated rig only; absent while the loop
    does not run)."""
    s = sample.sensors
    exchanged, processed, balance = volumes
    return {
        "phase": phase,
        "safe": sample.safe,
        "pressure": {n: round(s[n].value, 1) for n in PRESSURE_NAMES},
        "flow": {n: round(sample.pumps[n].measured, 2) for n in PUMP_NAMES},
        "bag": {n: round(s[n].value, 1) for n in SCALE_NAMES},
        "map": round(s["map"].value, 1),
        "plasma_temp": round(s["plasma_temp"].value, 2),
        "exchanged_ml": round(exchanged, 1),
        "processed_ml": round(processed, 1),
        "balance_ml": round(balance, 1),
        **({"solute": extra} if extra else {}),
        **({"adsorber": columns} if columns else {}),
    }


class Recorder(Edge):
    """The journal's edge of the event bus: trends, events, transitions and checkpoints."""

    def __init__(
        self,
        journal: Journal,
        *,
        solutes: Callable[[], dict[str, float]] | None = None,
        columns: Callable[[], dict[str, dict[str, list[float]]]] | None = None,
        period_ms: int = 100,
        resumed: bool = False,
    ) -> None:
        self.journal = journal
        self.session = 0
        self.port: RequestPort | None = None
        self.solutes = solutes
        self.columns = columns
        self._ring: deque[tuple[Sample, str, tuple[float, float, float]]] = deque(
            maxlen=max(1, WINDOW_MS // period_ms)
        )
        self._next_trend_ms = 0
        self._full_until_ms = -1
        self._full_rows = 0
        self._budget_told = False
        #: a new session is this process's from its start; a resumed one from its restore
        #: (its first checkpoint): a declined or refused resume leaves the row as it was
        self._claimed = not resumed
        #: the journal's health last told to the loop (a sentinel: tell it at once, so a
        #: resumed run re-judges a journal alarm it inherited)
        self._unavailable: str | bool | None = False

    def attach(self, run: Attachment) -> None:
        if run.session is None:
            raise JournalError("the recorder journals a session: give it one")
        self.port = run.port
        self.session = run.session

    def _extra(self) -> dict[str, float]:
        return self.solutes() if self.solutes is not None else {}

    def _columns(self) -> dict[str, dict[str, list[float]]] | None:
        return self.columns() if self.columns is not None else None

    def view(self, view: View) -> None:
        t = view.t_ms
        unavailable = self.journal.unavailable
        if unavailable != self._unavailable and self.port is not None:
            self._unavailable = unavailable
            self.port.journal_unavailable(t, unavailable)
        v = view.volumes
        vols = (v.exchanged_ml, v.processed_ml, v.fluid_balance_ml)
        full = t <= self._full_until_ms and self._full_rows < FULL_RATE_BUDGET
        due = t >= self._next_trend_ms
        if not full:
            self._ring.append((view.sample, view.phase, vols))
        if full or due:
            # built once, for both tables
            row = trend_row(view.sample, view.phase, vols, self._extra(), self._columns())
            if full:
                self._full_rows += 1
                self.journal.trend(self.session, t, True, row)
            if due:
                self._next_trend_ms = t - t % TREND_MS + TREND_MS
                self.journal.trend(self.session, t, False, row)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        if not self._claimed:
            self.journal.claim(self.session)
            self._claimed = True
        body = checkpoint.model_dump(mode="json")
        self.journal.checkpoint(self.session, checkpoint.t_ms, checkpoint.phase, body)

    def prescription(self, rx: Prescription) -> None:
        body = rx.model_dump(mode="json", exclude_none=True, by_alias=True)
        self.journal.snapshot(self.session, "prescription_effective", body)

    def transition(self, record: TransitionRecord) -> None:
        self.journal.event(
            self.session,
            record.t_ms,
            "transition",
            {
                "source": record.source,
                "dest": record.dest,
                "trigger": record.trigger,
                "cause": record.cause,
            },
        )

    def event(self, event: Event) -> None:
        t_ms = event.t_ms
        self.journal.event(self.session, t_ms, event.kind, event.body())
        if isinstance(event, Alarmed) and event.alarm.kind == "raised":
            if self._full_rows + len(self._ring) > FULL_RATE_BUDGET:
                if not self._budget_told:
                    self._budget_told = True
                    note = f"full-rate trends end here: {self._full_rows} rows kept"
                    self.journal.event(self.session, t_ms, "note", {"note": note})
                return
            extra = self._extra()
            columns = self._columns()
            while self._ring:
                sample, phase, vols = self._ring.popleft()
                row = trend_row(sample, phase, vols, extra, columns)
                self._full_rows += 1
                self.journal.trend(self.session, sample.t_ms, True, row)
            self._full_until_ms = t_ms + WINDOW_MS
