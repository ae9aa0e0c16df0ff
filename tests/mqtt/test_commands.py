"""Remote commands against a real broker and a running simulated treatment.

The rig holds at `ready` after its pre-start checks (remote start allowed in its rig file),
so the late subscriber and the refusals meet a rig that stands still; then a dashboard
starts, pauses, resumes and stops the treatment, and every answer says what the controller
did. Every command, refused ones included, is in the journal.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.journal import Journal
from controller.mqtt.local import LocalBroker
from tests.mqtt.conftest import RIG, Inbox, bridge_for, client, follow, short_li_als

SPEED = 100.0
REPLIES = "als/sim-01/reply/test"


async def ask(
    dash: aiomqtt.Client,
    inbox: Inbox,
    name: str,
    body: bytes | dict[str, Any] = b"{}",
    *,
    retain: bool = False,
    topic: str | None = None,
) -> dict[str, Any]:
    """An MQTT 5 request (on `cmd/<name>`, or `topic`): Response Topic and Correlation
    Data, the answer awaited."""
    corr = uuid.uuid4().bytes
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = REPLIES
    props.CorrelationData = corr
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    await dash.publish(topic or f"als/sim-01/cmd/{name}", payload, 1, retain, properties=props)

    def mine(message: aiomqtt.Message) -> bool:
        p = message.properties
        return p is not None and getattr(p, "CorrelationData", None) == corr

    async with asyncio.timeout(20):
        while True:
            for t, payload, message in inbox.messages:
                if t == REPLIES and mine(message):
                    return json.loads(payload)
            await inbox.wait_for(
                REPLIES, lambda _p: any(t == REPLIES and mine(m) for t, _, m in inbox.messages)
            )


def phase_is(*phases: str) -> Any:
    return lambda p: json.loads(p)["phase"] in phases


async def test_commands_act_answer_and_are_journaled(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    commands = (*RIG.mqtt.commands, "start_treatment")
    bridge = bridge_for(broker, commands=commands)
    # some dashboard's mistake: a retained command, waiting on the broker for the rig
    await dash.publish("als/sim-01/cmd/start_treatment", b"{}", qos=1, retain=True)
    began = time.time()
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(
            gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge], hold_at_ready=True
        )
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            await inbox.wait_for("als/sim-01/state", phase_is("ready"))

            # a dashboard joining now gets the retained status, state and active alarms
            late = Inbox()
            async with client(broker, "dashboard") as c2:
                await c2.subscribe("als/sim-01/#", qos=1)
                task = asyncio.create_task(follow(c2, late))
                assert await late.wait_for("als/sim-01/status") == b"online"
                state = json.loads(await late.wait_for("als/sim-01/state"))
                active = json.loads(await late.wait_for("als/sim-01/alarms/active"))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert state["phase"] == "ready" and state["prescription"]["exchange_ml"] == 900
            assert "start_treatment" in state["commands"]
            # held at ready, the one thing a remote command can do is start (API names)
            assert state["allowed"] == ["start_treatment"]
            assert active == {"rig_id": "sim-01", "session": 1, "t_ms": active["t_ms"],
                              "audio_paused": False, "alarms": [],
                              "stamp": active["stamp"]}  # fmt: skip
            assert began <= active["stamp"] <= time.time()

            refused = await ask(dash, inbox, "pause")
            assert not refused["accepted"]
            assert refused["result"].startswith("refused: cannot pause while ready")
            unknown = await ask(dash, inbox, "open_the_clamp")
            assert not unknown["accepted"] and "unknown command" in unknown["result"]
            invalid = await ask(dash, inbox, "pause", {"by": 5, "color": "red"})
            assert not invalid["accepted"]
            assert "by: Input should be a valid string (got 5)" in invalid["result"]
            assert "color: Extra inputs are not permitted" in invalid["result"]
            garbage = await ask(dash, inbox, "pause", b"\xff not json")
            assert not garbage["accepted"] and "invalid request" in garbage["result"]

            started = await ask(dash, inbox, "start_treatment", {"by": "dr-a", "reason": "test"})
            assert started == {
                "rig_id": "sim-01", "session": 1, "command": "start_treatment",
                "accepted": True, "result": "done", "correlation": None,
                "t_ms": started["t_ms"], "stamp": started["stamp"],
            }  # fmt: skip
            assert began <= started["stamp"] <= time.time()
            exchange = json.loads(await inbox.wait_for("als/sim-01/state", phase_is("exchange")))
            assert exchange["allowed"] == ["pause", "stop_treatment"]
            mark = inbox.mark()
            assert (await ask(dash, inbox, "pause"))["accepted"]
            paused = await inbox.wait_for("als/sim-01/state", phase_is("paused"), after=mark)
            assert json.loads(paused)["allowed"] == ["resume", "stop_treatment"]
            mark = inbox.mark()
            assert (await ask(dash, inbox, "resume"))["accepted"]
            await inbox.wait_for("als/sim-01/state", phase_is("exchange"), after=mark)

            # an MQTT 3.1.1 client names its reply topic and correlation in the body
            async with client(broker, "dashboard") as old:
                await old.subscribe("als/sim-01/reply/v311", qos=1)
                await old.publish(
                    "als/sim-01/cmd/pause_audio",
                    json.dumps({"reply_to": "als/sim-01/reply/v311", "correlation": "c-7"}),
                    qos=1,
                )
                async with asyncio.timeout(20):
                    answer = json.loads((await anext(aiter(old.messages))).payload)
            assert answer["correlation"] == "c-7" and answer["accepted"]

            stopped = await ask(dash, inbox, "stop_treatment", {"by": "dr-a"})
            assert stopped["accepted"], stopped
            summary, _ = await asyncio.wait_for(run, 60)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    assert summary.final_state == "done"
    assert [t.dest for t in summary.transitions][-2:] == ["rinse_back", "done"]

    # every command is an event: `operator` when the controller met it, `command` when
    # the bridge refused it first; and dashboards got them all on als/<rig>/events
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    operator = [(e.body["request"], e.body["result"]) for e in record.events
                if e.kind == "operator"]  # fmt: skip
    # the retained start was never obeyed: the first request is the refused pause
    assert operator[0][0] == "pause"
    assert operator[0][1].startswith("refused: cannot pause while ready")
    assert operator[1:] == [
        ("start", "done"),
        ("pause", "done"),
        ("resume", "done"),
        ("pause_audio", "done"),
        ("stop", "done"),
    ]
    assert all(e.body["cause"].startswith("mqtt ") for e in record.events if e.kind == "operator")
    bridge_refused = [e.body["command"] for e in record.events if e.kind == "command"]
    assert bridge_refused == ["open_the_clamp", "pause", "pause"]
    await inbox.wait_for("als/sim-01/status", lambda p: p == b"offline")
    published = [m["id"] for m in inbox.json("als/sim-01/events")]
    published += [m["id"] for m in inbox.json("als/sim-01/alarms")]
    assert sorted(set(published)) == [e.id for e in record.events], record.events[-3:]
    audio = [m for m in inbox.json("als/sim-01/alarms") if m["kind"] == "audio_paused"]
    assert len(audio) == 1
    # every event and alarm names its session and when it was journaled (wall time)
    for m in inbox.json("als/sim-01/events") + inbox.json("als/sim-01/alarms"):
        assert m["session"] == 1 and began <= m["stamp"] <= time.time(), m


async def test_remote_start_is_refused_unless_the_rig_allows_it(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    bridge = bridge_for(broker)  # the default allow-list
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(
            gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge], hold_at_ready=True
        )
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            await inbox.wait_for("als/sim-01/state", phase_is("ready"))
            answer = await ask(dash, inbox, "start_treatment")
            assert not answer["accepted"]
            assert "start_treatment is not in this rig's allow-list" in answer["result"]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
