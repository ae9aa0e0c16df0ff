"""A journaled session in the console, read-only: `alsctl console SESSION`.

The journal, not a live run, feeds the same `Feed` the loop feeds: its 1 Hz trend rows become
views (so the sparklines, volumes and pressures are drawn by the very code that draws a live
run), its events become the log in the report's words, and the alarms still open at the end
are listed as the operator last saw them. What the journal does not keep is shown as unknown,
never guessed: the commanded rates (only the encoders' rates are journaled) read `-`.

A session still running in another process is shown as its journal stands now.
"""

from __future__ import annotations

import math
from typing import Any

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.console.feed import Feed, clock
from controller.control.events import AlarmView, Target, View, VolumesView
from controller.fsm.machine import leaf
from controller.journal import SessionRecord
from controller.outcome import Outcome
from controller.rig import (
    PRESSURE_NAMES,
    PUMP_NAMES,
    SCALE_NAMES,
    FirmwareState,
    PumpReading,
    Reading,
    SafeReason,
    Sample,
)
from controller.words import event_words

#: Phases whose progress is the plasma processed by the loop (the others: plasma exchanged)
LOOP_PHASES = frozenset({"purification"})


def _sample(t_ms: int, row: dict[str, Any]) -> Sample:
    sensors = {
        **{n: Reading(float(row["pressure"].get(n, math.nan))) for n in PRESSURE_NAMES},
        **{n: Reading(float(row["bag"].get(n, math.nan))) for n in SCALE_NAMES},
        "map": Reading(float(row["map"])),
        "plasma_temp": Reading(float(row.get("plasma_temp", math.nan))),
    }
    pumps = {n: PumpReading(math.nan, float(row["flow"].get(n, 0.0))) for n in PUMP_NAMES}
    return Sample(
        t_ms=t_ms,
        seq=0,
        pumps=pumps,
        sensors=sensors,
        detectors={},
        valves={},
        state=FirmwareState.SAFE if row.get("safe") else FirmwareState.RUNNING,
        safe_reason=SafeReason.NONE,
    )


def _volumes(row: dict[str, Any], summary: dict[str, Any] | None) -> VolumesView:
    """The row's own volumes; the summary's, with every pump's, once the session ended."""
    if summary is not None:
        v = summary["volumes"]
        pumped = {n: float(v.get(f"{n}_ml", math.nan)) for n in PUMP_NAMES}
        return VolumesView(
            v["exchange_ml"],
            v["collected_ml"],
            v["processed_plasma_ml"],
            v.get("patient_plasma_ml", 0.0),
            v["fluid_balance_ml"],
            pumped,
        )
    return VolumesView(
        row["exchanged_ml"],
        math.nan,
        row["processed_ml"],
        math.nan,
        row["balance_ml"],
        dict.fromkeys(PUMP_NAMES, math.nan),
    )


def _target(phase: str, volumes: VolumesView) -> Target:
    if phase in LOOP_PHASES:
        return Target("processed", volumes.processed_ml, 0.0, "mL")
    return Target("exchanged", volumes.exchanged_ml, 0.0, "mL")


def _open_alarms(record: SessionRecord) -> tuple[AlarmView, ...]:
    """The alarms raised and not cleared by the journal's end, as they last stood."""
    open_: dict[str, AlarmView] = {}
    for e in record.events:
        if e.kind != "alarm" or "alarm" not in e.body:
            continue
        b, alarm = e.body, e.body["alarm"]
        if b["kind"] == "raised":
            open_[alarm] = AlarmView(
                alarm, b["priority"], e.t_ms, True, False, True, b.get("detail") or ""
            )
        elif b["kind"] == "escalated" and alarm in open_:
            open_[alarm] = open_[alarm]._replace(priority=b["priority"], acknowledged=False)
        elif b["kind"] == "acknowledged" and alarm in open_:
            open_[alarm] = open_[alarm]._replace(acknowledged=True)
        elif b["kind"] == "cleared":
            open_.pop(alarm, None)
    return tuple(open_.values())


def from_journal(record: SessionRecord) -> Feed:
    """A frozen `Feed` of the session as its journal holds it (see the module's docstring)."""
    snaps = record.snapshots
    rig = RigConfig.model_validate(snaps["rig"])
    rx = Prescription.model_validate(snaps.get("prescription_effective") or snaps["prescription"])
    feed = Feed(rig, record.row.backend)
    rows = [(t, body) for t, full, body in record.trends if not full]
    summary: dict[str, Any] | None = snaps.get("summary")
    for i, (t, body) in enumerate(rows):
        last = i == len(rows) - 1
        volumes = _volumes(body, summary if last else None)
        view = View(
            t_ms=t,
            phase=body["phase"],
            interrupted=None,
            sample=_sample(t, body),
            volumes=volumes,
            target=_target(body["phase"], volumes),
            alarms=(),
            audio_paused_until_ms=0,
            allowed=frozenset(),
            prescription=rx,
        )
        feed.view(view)
    for e in record.events:
        feed.log.append(f"{clock(e.t_ms)}  {event_words(e.kind, e.body)}")
    status = record.row.status()
    if feed.latest is not None:
        ended = status in Outcome.__members__.values()
        feed.latest = feed.latest._replace(
            t_ms=max(feed.latest.t_ms, record.row.rig_time_ms),
            phase=leaf(record.row.state),
            alarms=_open_alarms(record),
            outcome=Outcome(status) if ended else None,
            outcome_detail=record.row.detail or (summary or {}).get("outcome_detail") or status,
        )
    feed.ended = True
    return feed.frozen()


def lines(feed: Feed, session: int) -> list[str]:
    """The session in plain lines, for a non-terminal: what the console's panels say."""
    view = feed.latest
    out = [f"session {session}: rig {feed.rig.rig_id} ({feed.backend})"]
    if view is None:
        return [*out, "no trend row journaled", *feed.log]
    rx = view.prescription
    out.append(f"prescription {rx.name or '(unnamed)'}, mode {rx.mode}, phase {view.phase}")
    if view.outcome is not None:
        out.append(f"outcome {view.outcome}: {view.outcome_detail}")
    v = view.volumes
    out.append(
        f"exchanged {v.exchanged_ml:.0f} mL, processed {v.processed_ml:.0f} mL,"
        f" net balance {v.fluid_balance_ml:+.0f} mL, rig time {clock(view.t_ms)}"
    )
    for a in view.alarms:
        state = "acknowledged" if a.acknowledged else "not acknowledged"
        out.append(f"alarm open at the end: {a.id} ({a.priority}, {state})")
    return [*out, *feed.log]
