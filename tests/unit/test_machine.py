"""The state machine alone: order, illegal requests, pause / alarm and resume, the diagram."""

from __future__ import annotations

import pytest

from controller.fsm.diagram import state_machine_markdown
from controller.fsm.machine import IllegalRequest, Treatment


async def to_exchange(mode: str = "li_als") -> Treatment:
    m = Treatment(mode)
    for trigger in ("begin", "self_test_passed", "primed", "start", "connected"):
        await getattr(m, trigger)(cause="test")
    return m


async def test_the_li_als_sequence_in_spec_order() -> None:
    m = await to_exchange()
    for trigger in ("collect", "exchange_complete", "purification_complete", "rinsed"):
        await getattr(m, trigger)(cause=trigger)
    assert [r.dest for r in m.history] == [
        "self_test",
        "priming",
        "ready",
        "connecting",
        "exchange",
        "exchange_collect",
        "purification",
        "rinse_back",
        "done",
    ]
    assert m.history[-1].cause == "rinsed"


async def test_pe_skips_collection_and_adsorption_skips_exchange() -> None:
    pe = await to_exchange("pe")
    await pe.exchange_complete(cause="done")
    assert pe.phase == "rinse_back"
    ads = await to_exchange("adsorption")
    assert ads.phase == "purification"


async def test_illegal_requests_are_refused_with_what_is_allowed() -> None:
    m = Treatment("li_als")
    with pytest.raises(
        IllegalRequest, match=r"cannot resume while idle \(allowed now: begin, end\)"
    ):
        await m.request("resume", "operator")
    with pytest.raises(IllegalRequest, match="cannot warp"):
        await m.request("warp", "operator")
    assert m.phase == "idle" and m.history == []


async def test_pause_and_resume_return_to_the_interrupted_phase() -> None:
    m = await to_exchange()
    await m.collect(cause="threshold")
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
