"""What a dashboard reads, on a real broker, through an alarm and its handling.

Every event and alarm carries its session and the wall time it was journaled; an event's
body has the schema of its kind, a kind added later is published all the same, and a body
that does not fit is published as journaled (and logged), never left blocking the outbox.
`state.allowed` names the remote commands that would work now, in the API's names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.scenario import Scenario
from controller.journal import Journal
from controller.mqtt.local import LocalBroker
from controller.mqtt.models import EVENT_KINDS, AlarmMessage, EventMessage, OtherEvent
from tests.mqtt.conftest import RIG, Inbox, bridge_for, short_li_als
from tests.mqtt.test_commands import SPEED, ask, phase_is

#: air in the return line in the exchange (from 308 s of rig time to 1108 s)
AIR = Scenario.model_validate(
    {"name": "air", "events": [{"at_s": 400, "fault": "air_bubble", "duration_s": 2}]}
)
STATE = "als/sim-01/state"


def in_alarm(*, present: bool | None = None, active: bool = True) -> Any:
    """A state in `alarm`: with alarms active (and its first one's cause `present` or
    not), or with none active any more."""

    def match(payload: bytes) -> bool:
        s = json.loads(payload)
        if s["phase"] != "alarm" or bool(s["alarms"]) != active:
            return False
        return present is None or s["alarms"][0]["present"] == present

    return match


async def test_messages_carry_session_and_stamp_and_events_are_typed_by_kind(
    broker: LocalBroker,
    dashboard: tuple[aiomqtt.Client, Inbox],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dash, inbox = dashboard
    began = time.time()
    with Journal(tmp_path / "j.db") as journal, caplog.at_level(logging.ERROR, "alsctl.mqtt"):
        opts = RunOptions(gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge_for(broker)],
                          scenario=AIR)  # fmt: skip
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            exchange = json.loads(await inbox.wait_for(STATE, phase_is("exchange")))
            assert exchange["allowed"] == ["pause", "stop_treatment"]
            # the latched air alarm, its cause gone: acknowledging is what can be done now
            # (a resume would be refused), and the audio may be paused
            alarm = json.loads(await inbox.wait_for(STATE, in_alarm(present=False)))
            assert alarm["allowed"] == ["acknowledge_alarm", "pause_audio", "stop_treatment"]
            mark = inbox.mark()
            assert (await ask(dash, inbox, "acknowledge_alarm"))["accepted"]
            cleared = json.loads(await inbox.wait_for(STATE, in_alarm(active=False), after=mark))
            assert cleared["allowed"] == ["resume", "stop_treatment"]

            # a kind this version does not describe, and a known kind whose body misfits
            journal.event(1, cleared["t_ms"], "a_later_kind", {"phase": "exchange", "n": [1]})
            journal.event(1, cleared["t_ms"], "transition", {"odd": True})
            assert (await ask(dash, inbox, "resume"))["accepted"]
            await inbox.wait_for(STATE, phase_is("exchange"), after=mark)
            assert (await ask(dash, inbox, "stop_treatment"))["accepted"]
            summary, _ = await asyncio.wait_for(run, 60)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    assert summary.final_state == "done"
    await inbox.wait_for("als/sim-01/status", lambda p: p == b"offline")
    ended = time.time()

    events = inbox.json("als/sim-01/events")
    alarms = inbox.json("als/sim-01/alarms")
    published = [*events, *alarms, *inbox.json(STATE), *inbox.json("als/sim-01/telemetry")]
    published += [*inbox.json("als/sim-01/alarms/active"), *inbox.json("als/sim-01/reply/test")]
    for m in published:
        assert m["session"] == 1 and began <= m["stamp"] <= ended, m
    assert {a["kind"] for a in alarms} >= {"raised", "acknowledged", "cleared"}
    for a in alarms:
        AlarmMessage.model_validate(a)

    # each event parses as the model of its kind (but the misfit, below)
    kinds: dict[str, Any] = {}
    for e in events:
        if e["body"] == {"odd": True}:
            continue
        parsed = EventMessage.model_validate(e).root
        kinds.setdefault(e["kind"], type(parsed))
    assert set(kinds) >= {"transition", "operator", "pre_start", "hal", "a_later_kind"}
    for kind, model in kinds.items():
        assert model is EVENT_KINDS.get(kind, OtherEvent), kind
    assert {"phase": "exchange", "n": [1]} in [e["body"] for e in events
                                               if e["kind"] == "a_later_kind"]  # fmt: skip
    # the misfit went out as journaled, in its place, and the log says why
    assert {"odd": True} in [e["body"] for e in events if e["kind"] == "transition"]
    assert [r for r in caplog.records if "does not fit its schema" in r.getMessage()]
    # and nothing after it was held back
    assert any(e["body"].get("dest") == "done" for e in events if e["kind"] == "transition")


async def test_the_final_state_tells_the_outcome_as_the_summary_does(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    """A stopped treatment is `stopped` on the broker too, not only in the summary."""
    dash, inbox = dashboard
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge_for(broker)])
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            running = json.loads(await inbox.wait_for(STATE, phase_is("exchange")))
            assert running["outcome"] is None  # it runs: no outcome yet
            assert (await ask(dash, inbox, "stop_treatment"))["accepted"]
            summary, _ = await asyncio.wait_for(run, 60)
        finally:
            if not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
    states = [json.loads(p) for t, p, _m in inbox.messages if t == STATE]
    final = states[-1]
    assert summary.outcome.value == final["outcome"] == "stopped"
    assert final["outcome_detail"] == summary.outcome_detail
    assert final["outcome_detail"].startswith("by mqtt dashboard")
