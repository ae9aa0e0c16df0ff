"""One test per hazard row of docs/spec.md 5.2: the fault injected mid-treatment into the simulated
rig, the response asserted with its timing, that nothing else moved, and the way back.

Timing: a firmware-level response within one firmware tick of the fault; a controller-level
alarm within its condition delay plus one control cycle of the condition's onset.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bench.drills import DRILLS, Drill, DrillResult, drill_start, prescription_of, run_drill
from controller import journal as jr
from controller import report
from controller.config.loading import load_prescription, load_rig
from controller.config.rig import RigConfig
from controller.control.checkpoint import Midway
from controller.journal import Journal
from controller.rig import PUMP_NAMES
from controller.safety.hazards import Response, hazard_table
from tests.sim_process import firmware_sim_process

RIG = load_rig("config/rigs/sim.yaml")
BASE = load_prescription("config/prescriptions/li_als.yaml")
TABLE = {h.id: h for h in hazard_table(RIG.alarms, RIG.link_lost_ms)}
TICK_MS = RIG.firmware_tick_ms
CYCLE_MS = RIG.control_period_ms
#: The patient's balance may move off its prescribed trajectory by at most this during any
#: response (controller/safety/balance.py MARGIN_ML, the prescription guard's margin)
BALANCE_LIMIT_ML = 10.0
#: the firmware answers to its own limits; these hazards' first layer is the firmware
SAFE_RESPONSES = {Response.SAFE_STATE}


#: rows whose fault is not in the simulated rig, each drilled by a test of its own
DRILLED_ELSEWHERE = {
    "journal_unavailable": "tests/integration/test_journal_failure.py",
    "net_balance": "tests/hazards/test_patient_limits.py",
}


def test_every_hazard_row_has_a_drill() -> None:
    assert len(TABLE) == 19
    drilled = {d.alarm.split(":")[0] for d in DRILLS} | {"heartbeat"} | set(DRILLED_ELSEWHERE)
    assert set(TABLE) <= drilled
    for path in DRILLED_ELSEWHERE.values():
        assert Path(path).is_file(), path


def check(r: DrillResult, rig: RigConfig = RIG) -> None:
    d = r.drill
    s = r.summary
    assert r.fault_ms is not None, f"never injected: {s.final_state} {s.error} {s.transitions}"
    assert r.alarm_ms is not None, f"{d.alarm} never raised; alarms: {s.alarms}"
    hazard = TABLE.get(d.alarm.split(":")[0])
    # -- timing
    if d.firmware:
        limit = TICK_MS
        if d.fault in ("controller_silence", "command_loss"):
            limit = rig.heartbeat_timeout_ms + TICK_MS  # silent for the timeout, then one tick
        assert r.firmware_latency_ms is not None and r.firmware_latency_ms <= limit
        assert r.safe_ms is not None and r.alarm_ms - r.safe_ms <= CYCLE_MS  # then the alarm
    else:
        assert hazard is not None
        delay_ms = int(hazard.delay_s * 1000)
        slack = RIG.link_lost_ms if d.fault == "link_down" else 0
        assert r.alarm_latency_ms is not None
        bound = d.detect_ms if d.detect_ms is not None else delay_ms + CYCLE_MS + TICK_MS + slack
        assert r.alarm_latency_ms <= bound, r.alarm_latency_ms
    # -- the response, and nothing else moved
    after, before = r.response, r.before
    assert after is not None and before is not None
    safe_response = d.firmware or (hazard is not None and hazard.response in SAFE_RESPONSES)
    if d.fault in ("sensor_missing", "link_down", "sensor_drift"):
        safe_response = True  # worst reading of a blood-side pressure / the firmware watchdog
    if d.fault == "clamp_stuck_open":
        safe_response = True  # the clamp that will not close: the safe state, and a person
    if safe_response:
        assert after.safe
        assert all(p.commanded == 0.0 for p in after.pumps.values())
        # the clamp closed; the one drill about a clamp that will not is told by its alarm
        assert after.valves["venous_clamp"] == (
            "open" if d.fault == "clamp_stuck_open" else "closed"
        )
    else:
        assert not after.safe
        for name in d.stopped:
            assert after.pumps[name].commanded == 0.0, name
        for name in d.reduced:
            assert 0 < after.pumps[name].commanded < before.pumps[name].commanded, name
        untouched = set(PUMP_NAMES) - set(d.stopped) - set(d.reduced) - {"heparin"}
        for name in untouched:
            assert after.pumps[name].commanded == before.pumps[name].commanded, name
        assert after.valves == before.valves
    # -- what it means for the patient: the response moves no net fluid into or out of
    # the patient (beyond what the prescription allows meanwhile)
    if r.balance_change_ml is not None:
        assert r.balance_change_ml <= BALANCE_LIMIT_ML, (d.fault, r.balance_change_ml)
    # nothing acted on wrongly: no pump ran faster than the controller commanded it (a
    # command garbled on the line and executed would); measured on the simulated rig
    assert not r.overruns, r.overruns[:5]
    # blood a lost line spilled: the estimate the summary shows against the simulator's truth
    truth = s.blood_lost_truth_ml
    if truth is not None:
        assert abs(s.blood_lost_ml - truth) <= max(1.0, 0.25 * truth), (s.blood_lost_ml, truth)
    # -- the way back
    trail = [(t.source, t.dest) for t in s.transitions]
    if d.recovery == "resume":
        assert r.resumed, trail
        assert s.completed, (s.final_state, s.error)
    elif d.recovery == "notify":  # an alarm that acts on nothing: the treatment went on
        assert not any(dest == "alarm" for _src, dest in trail), trail
        assert s.completed, (s.final_state, s.error)
    else:
        assert ("alarm", "rinse_back") in trail
        assert s.final_state == "done"
    assert s.error is None


#: Treatments caught as they entered a drill's phase, by (prescription, phase): each drill
#: starts there instead of paying for self-test, priming and connection (per test process).
STARTS: dict[tuple[str, str], Midway] = {}


async def start_of(drill: Drill) -> Midway:
    key = (prescription_of(drill, BASE).model_dump_json(), drill.phase)
    if key not in STARTS:
        STARTS[key] = await drill_start(drill, RIG, BASE)
    return STARTS[key]


#: faults that lose blood through the return line: their drills are journaled, and the
#: journal and the report (what is kept of the session) must say what was lost
LOSS_FAULTS = ("needle_dislodgement",)


def check_blood_loss_recorded(r: DrillResult, db: Path) -> None:
    """The loss journaled as its own event, and the report's line, agree with the summary:
    after the session, the report rendered from the journal is what a reader has."""
    s = r.summary
    assert s.session is not None and s.blood_lost_truth_ml is not None
    record = jr.load(db, s.session)
    losses = [e for e in record.events if e.kind == "blood_loss"]
    assert losses, [e.kind for e in record.events]
    assert sum(e.body["estimate_ml"] for e in losses) == pytest.approx(s.blood_lost_ml, abs=0.1)
    assert r.fault_ms is not None
    for e in losses:  # from the last sample before the fault to when the blood pump stopped
        assert r.fault_ms - RIG.sample_period_ms <= e.body["from_ms"] <= e.body["to_ms"]
        assert e.t_ms == e.body["to_ms"]
    text = report.render(record)
    line = (
        f"<td>blood lost (estimate)</td><td>{s.blood_lost_ml:.1f} mL"
        f" (simulator: {s.blood_lost_truth_ml:.1f} mL)</td>"
    )
    assert line in text, re.findall(r"<td>blood lost[^\n]{0,80}", text)
    assert f"blood loss: estimate_ml {losses[0].body['estimate_ml']}" in text  # the event, listed


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.name)
async def test_hazard_on_sim(drill: Drill, tmp_path: Path) -> None:
    start = await start_of(drill)
    if drill.fault not in LOSS_FAULTS:
        check(await run_drill(drill, RIG, BASE, start=start))
        return
    db = tmp_path / "journal.db"
    with Journal(db) as journal:
        r = await run_drill(drill, RIG, BASE, start=start, journal=journal)
    check(r)
    check_blood_loss_recorded(r, db)


#: a line that corrupts 30 % of the controller's commands (the fault's default), for a
#: minute of the connection, where the blood flow ramps up and a command goes out every cycle
CORRUPT_RAMP = Drill(
    "link_lost",
    "command_loss",
    {"fraction": 0.3, "corrupt": True},
    "link_lost",
    phase="connecting",
    after_s=2,
    duration_s=60,
    label="link_lost-command_loss_corrupt_ramp",
)


async def test_corrupted_commands_are_never_acted_on_while_the_flow_ramps() -> None:
    """A corrupted command fails its CRC and is not executed; the controller tries it again
    and, with no answer after every try, takes the link as lost (alarm, the firmware's
    watchdog behind it) and resumes once it answers. What must never happen: a pump run
    at a rate nobody commanded, or the patient's balance moved by the retries."""
    drill = CORRUPT_RAMP
    r = await run_drill(drill, RIG, BASE, start=await start_of(drill))
    s = r.summary
    assert r.fault_ms is not None
    during = [x for x in r.samples if r.fault_ms <= x.t_ms <= r.fault_ms + 60_000]
    ramp = {x.pumps["blood"].commanded for x in during}
    assert len(ramp) >= 10, sorted(ramp)  # commands went out, one after another, meanwhile
    assert not r.overruns, r.overruns[:5]
    causes = {a.cause for a in s.alarms}
    assert "link_lost" in causes and causes <= {"link_lost", "firmware_safe:heartbeat"}, causes
    assert r.patient_off_ml is not None and r.patient_off_ml <= BALANCE_LIMIT_ML, r.patient_off_ml
    assert s.completed and s.error is None, (s.final_state, s.error)


async def test_a_drill_from_midway_is_the_drill_from_the_start() -> None:
    """Starting where a run entered the phase changes nothing the drill measures: the same
    rig (its random streams too), the same loop state, the same sample times."""
    drill = next(d for d in DRILLS if d.fault == "air_bubble")
    whole = await run_drill(drill, RIG, BASE)
    midway = await run_drill(drill, RIG, BASE, start=await start_of(drill))
    assert (midway.fault_ms, midway.safe_ms, midway.alarm_ms) == (
        whole.fault_ms,
        whole.safe_ms,
        whole.alarm_ms,
    )
    assert midway.response == whole.response and midway.before == whole.before
    a, b = midway.summary, whole.summary
    assert a.outcome == b.outcome and a.rig_time_s == b.rig_time_s
    assert a.volumes.model_dump() == pytest.approx(b.volumes.model_dump(), abs=0.01)
    assert [t.dest for t in a.transitions] == [t.dest for t in b.transitions]


SERIAL = ("air_bubble", "return_disconnection", "return_occlusion", "controller_silence")
SERIAL_RIG = RIG.model_copy(update={"heartbeat_timeout_ms": 1000})


@pytest.mark.parametrize("fault", SERIAL)
async def test_hazard_over_serial(fault: str, tmp_path: Path) -> None:
    drill = next(d for d in DRILLS if d.fault == fault)
    # short enough to run faster than real time: 300 mL of exchange, the fault after 60 s
    drill = dataclasses.replace(drill, after_s=60.0)
    # on the lockstep clock: the controller grants the rig its time, so the bounds are
    # judged in rig time whatever the machine's load
    with firmware_sim_process(tmp_path, SERIAL_RIG, speed=40.0) as port:
        r = await run_drill(drill, SERIAL_RIG, BASE, backend="serial", port=port, exchange_ml=300)
    assert r.summary.backend == "serial"
    # over a real line the firmware's events carry its own clock: the same bounds hold
    check(r, SERIAL_RIG)
