"""The state machine alone: the route each mode takes on `advance`, guards, illegal requests,
pause / alarm and resume, the diagram."""

from __future__ import annotations

import pytest

from controller.config.loading import load_prescription
from controller.config.prescription import Prescription
from controller.fsm.diagram import state_machine_markdown
from controller.fsm.machine import IllegalRequest, Treatment, sequence
from controller.fsm.phases import PHASES, Progress


def prescription(mode: str) -> Prescription:
    return load_prescription(f"config/prescriptions/{mode}.yaml")


#: progress far enough for every phase's goal (the guards read it)
DONE = Progress(
    phase_s=3600.0,
    exchanged_ml=1e6,
    processed_ml=1e6,
    patient_plasma_ml=1e6,
    blood_rinsed_ml=1e6,
    purification_s=1e6,
)


async def connecting(mode: str = "li_als") -> Treatment:
    m = Treatment(prescription(mode))
    for trigger in ("begin", "self_test_passed", "primed", "start"):
        assert await m.trigger(trigger, cause="test")
    assert m.phase == "connecting"
    return m


async def to_exchange(mode: str = "li_als") -> Treatment:
    m = await connecting(mode)
    m.progress = Progress(phase_s=3600.0)  # the ramp is done; nothing exchanged yet
    await m.advance(cause="ramped")
    assert m.phase == "exchange"
    return m


@pytest.mark.parametrize("mode", ["li_als", "pe", "adsorption", "pe_adsorption", "pe_filtration"])
async def test_advance_takes_each_mode_along_its_own_route(mode: str) -> None:
    m = await connecting(mode)
    m.progress = DONE
    while m.phase != "done":
        before = m.phase
        await m.advance(cause=f"{before} done")
        assert m.phase != before, f"advance refused in {before}"
    dests = [r.dest for r in m.history]
    assert tuple(dests[dests.index("connecting") + 1 : -1]) == sequence(m.rx)
    assert m.history[-1].trigger == "advance" and m.history[-1].source == "rinse_back"


async def test_advance_waits_for_the_phase_table_to_say_done() -> None:
    m = await to_exchange()
    rx = m.rx
    # far from the collection threshold: exchange goes on
    m.progress = Progress(exchanged_ml=10.0)
    assert not PHASES["exchange"].done(rx, m.progress)
    await m.advance(cause="too early")
    assert m.phase == "exchange"
    m.progress = Progress(exchanged_ml=rx.exchange_ml - rx.collection_threshold_ml)
    await m.advance(cause="threshold")
    assert m.phase == "exchange_collect"
    assert m.history[-1].cause == "threshold"


async def test_illegal_requests_are_refused_with_what_is_allowed() -> None:
    m = Treatment(prescription("li_als"))
    with pytest.raises(
        IllegalRequest, match=r"cannot resume while idle \(allowed now: begin, end\)"
    ):
        await m.request("resume", "operator")
    with pytest.raises(IllegalRequest, match="cannot warp"):
        await m.request("warp", "operator")
    assert m.phase == "idle" and m.history == []


async def test_pause_and_resume_return_to_the_interrupted_phase() -> None:
    m = await to_exchange()
    m.progress = DONE
    await m.advance(cause="threshold")
    await m.request("pause", "operator")
    assert m.phase == "paused"
    await m.request("resume", "operator")
    assert m.phase == "exchange_collect"


async def test_an_alarm_resumes_only_when_cleared() -> None:
    m = await to_exchange()
    clear = False
    m.alarm_clear = lambda: clear
    await m.alarm(cause="firmware safe: air")
    with pytest.raises(IllegalRequest):
        await m.request("resume", "operator")
    clear = True
    await m.request("resume", "operator")
    assert m.phase == "exchange"


async def test_stop_goes_to_rinse_back_and_fail_to_fault() -> None:
    m = await to_exchange()
    await m.request("stop", "operator")
    assert m.phase == "rinse_back"
    await m.fail(cause="boom")
    assert m.phase == "fault"
    await m.request("end", "operator")
    assert m.phase == "done"


def test_the_committed_state_diagram_is_current() -> None:
    with open("docs/state-machine.md") as f:
        assert f.read() == state_machine_markdown(), "run `alsctl diagram`: it is stale"
