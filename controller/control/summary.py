"""The run's summary and its outcome, from what the loop kept: the one account every
front-end (the printed summary, the report, the exit status, MQTT, the dashboard) repeats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.outcome import Outcome, judge
from controller.summary import GateOut, StopOut, Summary, TransitionOut, VolumesOut

if TYPE_CHECKING:
    from controller.control.loop import Controller


def outcome(c: Controller) -> Outcome:
    return judge(c.machine.phase, c.machine.history, c.accounting.run.interrupted)


def stop_record(c: Controller, cause: str, phase: str) -> StopOut:
    """Who ended the treatment early and how far it had got (the summary's `stop`).

    `cause` is "who: why" as requests carry it ("mqtt dashboard: shift change")."""
    by, _, reason = cause.partition(": ")
    target = c.accounting.target(c.rx, phase)
    return StopOut(
        by=by.strip() or "operator",
        reason=reason.strip(),
        phase=phase,
        t_s=(c.sample.t_ms / 1000.0) if c.sample is not None else 0.0,
        progress=str(target),
        done=round(target.done, 1),
        target=round(target.target, 1) if target.target else None,
        unit=target.unit,
    )


def outcome_detail(c: Controller, result: Outcome) -> str:
    """What the outcome word alone does not say (printed after it, never repeating it)."""
    r = c.accounting.run
    if result is Outcome.STOPPED and r.stop is not None:
        stop = r.stop
        why = f" ({stop.reason})" if stop.reason else ""
        return f"by {stop.by}{why} in {stop.phase} at {stop.progress}"
    if result is Outcome.INTERRUPTED:
        return f"{r.interrupted or 'the run did not end'} in {c.machine.phase}"
    if result is Outcome.FAULT:
        return r.error or "see the journal"
    if result is Outcome.ALARM:
        active = ", ".join(sorted(c.safety.alarms.active)) or "no alarm active"
        return f"{active} in {c.treatment_phase()}"
    target = c.accounting.target(c.rx, "done")
    return (
        f"{target.what} {target.done:.0f} of {target.target:.0f} {target.unit}, blood rinsed back"
    )


def summarize(c: Controller) -> Summary:
    v = c.accounting.volumes
    run = c.accounting.run
    result = outcome(c)
    held = max(v.collected_ml, 1.0)
    pumped = v.pumped_ml
    return Summary(
        rig_id=c.rig.rig_id,
        backend=c.hal.backend,
        prescription=c.rx.name,
        mode=c.rx.mode,
        outcome=result,
        outcome_detail=outcome_detail(c, result),
        final_state=c.machine.phase,
        completed=result is Outcome.COMPLETED,
        stop=run.stop if result is Outcome.STOPPED else None,
        rig_time_s=(c.sample.t_ms / 1000.0) if c.sample else 0.0,
        phases_s={k: round(ms / 1000.0, 1) for k, ms in run.phase_ms.items()},
        volumes=VolumesOut(
            exchange_ml=round(v.exchanged_ml, 2),
            collected_ml=round(v.collected_ml, 2),
            processed_plasma_ml=round(v.processed_ml, 2),
            patient_plasma_ml=round(v.patient_plasma_ml, 2),
            passes=round(v.processed_ml / held, 2) if v.processed_ml else 0.0,
            filtrate_ml=round(pumped["filtrate"], 2),
            substitution_ml=round(pumped["substitution"], 2),
            replacement_ml=round(pumped["replacement"], 2),
            return_ml=round(pumped["return"], 2),
            plasma_ml=round(pumped["plasma"], 2),
            blood_ml=round(pumped["blood"], 2),
            heparin_ml=round(pumped["heparin"], 3),
            fluid_balance_ml=round(v.fluid_balance_ml, 2),
        ),
        alarms=run.alarms,
        time_in_safe_s=round(run.safe_ms / 1000.0, 1),
        blood_lost_ml=round(c.safety.return_line.blood_lost_ml, 1),
        transitions=[
            TransitionOut(
                t_s=t.t_ms / 1000.0, source=t.source, dest=t.dest, trigger=t.trigger, cause=t.cause
            )
            for t in c.machine.history
        ],
        pre_start=GateOut(**c.gate_result.as_event()) if c.gate_result else None,
        error=run.error,
    )
