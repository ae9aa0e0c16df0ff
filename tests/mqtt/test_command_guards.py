"""Commands the rig must not obey, and floods it must not echo, against a real broker.

A retained command, the empty publish that clears one, a topic deeper than `cmd/<name>`,
commands over the rate limit and payloads over the size limit are all refused. Each refusal
is answered and journaled (a flood as one count per second), and what an answer or the
journal repeats of a request is clipped, so no dashboard fills the journal or the report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.journal import Journal
from controller.mqtt.local import LocalBroker
from controller.mqtt.models import MAX_COMMAND_BYTES
from tests.mqtt.conftest import RIG, Inbox, bridge_for, client, follow, short_li_als
from tests.mqtt.test_commands import SPEED, ask, phase_is

EVENTS = "als/sim-01/events"


@asynccontextmanager
async def held_at_ready(
    broker: LocalBroker, inbox: Inbox, db: Path, **settings: Any
) -> AsyncIterator[tuple[asyncio.Task[Any], Journal]]:
    """A journaled simulated run with MQTT (session 1), waiting at `ready`; remote start
    allowed."""
    commands = (*RIG.mqtt.commands, "start_treatment")
    bridge = bridge_for(broker, commands=commands, **settings)
    with Journal(db) as journal:
        opts = RunOptions(
            gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge], hold_at_ready=True
        )
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            await inbox.wait_for("als/sim-01/state", phase_is("ready"))
            yield run, journal
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


def commands_refused(inbox: Inbox) -> list[dict[str, Any]]:
    """Bodies of the `command` events published so far (published only once journaled)."""
    return [m["body"] for m in inbox.json(EVENTS) if m["kind"] == "command"]


async def test_a_retained_or_empty_command_is_refused_and_journaled(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    async with held_at_ready(broker, inbox, tmp_path / "j.db") as (run, _):
        assert (await ask(dash, inbox, "start_treatment"))["accepted"]
        await inbox.wait_for("als/sim-01/state", phase_is("exchange"))

        # published with the retain flag to the connected rig: live, yet never obeyed
        retained = await ask(dash, inbox, "pause", {"by": "dr-r"}, retain=True)
        assert not retained["accepted"]
        assert retained["result"] == "refused: a retained command is never obeyed"
        # the publish that clears it from the broker, and an empty one, are no commands
        cleared = await ask(dash, inbox, "pause", b"", retain=True)
        empty = await ask(dash, inbox, "pause", b"")
        for answer in (cleared, empty):
            assert not answer["accepted"]
            assert answer["result"].startswith("refused: an empty payload clears a retained")
        # the treatment ran on: a live pause, obeyed, is the first that pauses it
        mark = inbox.mark()
        assert (await ask(dash, inbox, "pause"))["accepted"]
        await inbox.wait_for("als/sim-01/state", phase_is("paused"), after=mark)
        assert (await ask(dash, inbox, "stop_treatment"))["accepted"]
        summary, _ = await asyncio.wait_for(run, 60)
    assert summary.final_state == "done"

    record = jr.load(tmp_path / "j.db", 1, trends=False)
    operator = [(e.body["request"], e.body["result"]) for e in record.events
                if e.kind == "operator"]  # fmt: skip
    assert operator == [("start", "done"), ("pause", "done"), ("stop", "done")]
    refused = [(e.body["command"], e.body["result"].split(":")[1].strip())
               for e in record.events if e.kind == "command"]  # fmt: skip
    assert refused == [
        ("pause", "a retained command is never obeyed"),
        ("pause", "an empty payload clears a retained message and is never a command ({} is)"),
        ("pause", "an empty payload clears a retained message and is never a command ({} is)"),
    ]
    assert next(e.body.get("by") for e in record.events if e.kind == "command") == "dr-r"
    # and the broker holds no retained command any more: a new subscriber gets none
    late = Inbox()
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username="dashboard", password="dashboard-example"
    ) as c:
        await c.subscribe("als/sim-01/cmd/#", qos=1)
        await c.subscribe("als/sim-01/status", qos=1)  # retained: the sentinel
        async with asyncio.timeout(10):
            async for message in c.messages:
                await late.add(message)
                if message.topic.value == "als/sim-01/status":
                    break
    assert [t for t, _, _ in late.messages] == ["als/sim-01/status"]


async def test_a_command_on_a_deeper_topic_is_answered_and_journaled(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    async with held_at_ready(broker, inbox, tmp_path / "j.db"):
        deeper = await ask(dash, inbox, "start_treatment/now")
        assert not deeper["accepted"]
        assert deeper["command"] == "start_treatment/now"
        assert deeper["result"] == (
            "refused: a command is published on als/sim-01/cmd/<name>, one level"
        )
        # no name at all (the ACL's `cmd/#` allows the parent level too)
        bare = await ask(dash, inbox, "", topic="als/sim-01/cmd")
        assert not bare["accepted"] and bare["command"] == ""
        await inbox.wait_for(EVENTS, lambda p: json.loads(p)["body"].get("command") == "")
        assert [b["command"] for b in commands_refused(inbox)] == ["start_treatment/now", ""]
        # and nothing was started
        state = json.loads(await inbox.wait_for("als/sim-01/state", after=inbox.mark()))
        assert state["phase"] == "ready"


async def test_a_command_flood_is_refused_over_the_rate_and_counted_once_a_second(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    flood = 2000
    events = Inbox()  # the events alone: judged on each, not on 4000 commands and answers
    async with (
        held_at_ready(broker, inbox, tmp_path / "j.db"),  # the default: 10 per s
        client(broker, "dashboard") as watcher,
    ):
        await watcher.subscribe(EVENTS, qos=1)
        following = asyncio.create_task(follow(watcher, events))
        t0 = time.monotonic()
        for _ in range(flood):
            await dash.publish("als/sim-01/cmd/pause_audio", b'{"by": "flood"}', qos=1)

        def accounted() -> tuple[int, list[dict[str, Any]]]:
            """Commands the journal has accounted for: applied ones and counted ones."""
            bodies = [(m["kind"], m["body"]) for m in events.json(EVENTS)]
            applied = sum(1 for k, b in bodies if k == "operator" and b["cause"] == "mqtt flood")
            return applied, [b for k, b in bodies if k == "command" and "count" in b]

        def all_accounted() -> bool:
            applied, counts = accounted()
            return applied + sum(b["count"] for b in counts) == flood

        # every command of the flood is accounted for: taken, or in a per-second count
        await events.wait_until(all_accounted)
        elapsed = time.monotonic() - t0
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        applied, counts = accounted()
        over = await inbox.wait_for(
            "als/sim-01/reply/pause_audio", lambda p: not json.loads(p)["accepted"]
        )
    # a burst of 10, then 10 per second: the rest refused
    assert 10 <= applied <= 10 + 10 * elapsed + 1, (applied, elapsed)
    assert json.loads(over)["result"] == "refused: over the rate limit of 10 commands per s"
    # one journaled line per second of excess, not one per command
    assert 1 <= len(counts) <= elapsed / 1.0 + 2, (len(counts), elapsed)
    assert all(b["command"] == "*" and b["commands"] == {"pause_audio": b["count"]}
               for b in counts)  # fmt: skip
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    # each applied pause_audio is an operator event and an alarm event; the rest is counted
    assert len(record.events) <= 20 + 2 * applied + len(counts), len(record.events)
    assert sum(e.body.get("count", 0) for e in record.events if e.kind == "command") == (
        flood - applied
    )


async def test_big_payloads_and_long_requests_are_refused_without_being_echoed(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    async with held_at_ready(broker, inbox, tmp_path / "j.db"):
        huge = json.dumps({"by": "x" * 1_000_000}).encode()
        big = await ask(dash, inbox, "pause", huge)
        assert big["result"] == (
            f"refused: the payload is {len(huge)} bytes, over the limit of {MAX_COMMAND_BYTES}"
        )
        # under the size limit, but a field far too long: the value is clipped in the answer
        long = await ask(dash, inbox, "pause", {"by": "y" * 3000})
        assert "by: String should have at most 64 characters (got 'yyyy" in long["result"]
        assert "y" * 50 not in long["result"]
        # hundreds of unknown fields: a few are named, the rest counted
        many = await ask(dash, inbox, "pause", {f"f{i}": 0 for i in range(300)})
        assert many["result"].endswith("and 297 more")
        # a long name (the topic): clipped too
        name = "p" * 5000
        unknown = await ask(dash, inbox, name)
        assert unknown["command"] == "p" * 61 + "..."
        assert "unknown command" in unknown["result"]
        # MQTT 5 Correlation Data is an id: a kilobyte of it is refused, and not echoed
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "als/sim-01/reply/big-correlation"
        props.CorrelationData = b"c" * 1024
        mark = inbox.mark()
        await dash.publish("als/sim-01/cmd/pause", b"{}", qos=1, properties=props)
        await inbox.wait_for("als/sim-01/reply/big-correlation", after=mark)
        _, payload, message = next(m for m in inbox.messages[mark:]
                                   if m[0] == "als/sim-01/reply/big-correlation")  # fmt: skip
        assert json.loads(payload)["result"] == "refused: correlation data over 256 bytes"
        assert getattr(message.properties, "CorrelationData", None) is None

        await inbox.wait_for(
            EVENTS, lambda p: "correlation" in json.loads(p)["body"].get("result", "")
        )
        refused = commands_refused(inbox)
    assert len(refused) == 5
    for answer in (big, long, many, unknown):
        assert len(json.dumps(answer)) < 1000, answer
    for body in refused:
        assert len(json.dumps(body)) < 1000, body
    # nor in the journal, from which the report is made
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    assert max(len(json.dumps(e.body)) for e in record.events if e.kind == "command") < 1000
