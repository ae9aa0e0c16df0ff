"""Events survive a controller that ends, or dies, while the broker is away.

What the broker never acknowledged is in the journal, and the journal says how far each
session's events were acknowledged (`delivered`): the next start of the same rig publishes
the rest first, in journal order, each once, with its own `id` and `session` and
`replayed: true`. A subscriber that drops an `id` it has seen sees each event exactly once
across the runs; here none even comes twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.prescription import Prescription
from controller.journal import Journal
from controller.mqtt.bridge import STREAM, MqttBridge
from controller.mqtt.local import LocalBroker
from tests.integration.test_cli_run import PE_SHORT
from tests.mqtt.conftest import RIG, Inbox, bridge_for, client
from tests.mqtt.test_cli_mqtt import alsctl, read_until

EVENT_TOPICS = ("als/sim-01/events", "als/sim-01/alarms")


def pe_short() -> Prescription:
    return Prescription.model_validate(PE_SHORT)


async def subscriber(broker: LocalBroker, inbox: Inbox, ready: asyncio.Event) -> None:
    """A dashboard on the rig's alarms and events that comes back with the broker: `ready`
    is set whenever it is subscribed (cleared by the test before a restart)."""
    while True:
        try:
            async with client(broker, "dashboard") as c:
                for t in EVENT_TOPICS:
                    await c.subscribe(t, qos=1)
                ready.set()
                async for message in c.messages:
                    await inbox.add(message)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)  # the broker is down: try again shortly


def received(inbox: Inbox, after: int = 0) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _m in inbox.messages[after:] if t in EVENT_TOPICS]


def journaled(path: Path, session: int) -> list[int]:
    return [e.id for e in jr.load(path, session, trends=False).events]


def acknowledged(path: Path, session: int) -> int | None:
    """The journal's `delivered.last_id` of `session` for MQTT (None: no row)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT last_id FROM delivered WHERE session = ? AND stream = ?", (session, STREAM)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


async def run_once(path: Path, bridge: MqttBridge) -> int:
    with Journal(path) as journal:
        summary, _ = await run_treatment(
            RIG, pe_short(), RunOptions(gate=CLEAR, journal=journal, edges=[bridge])
        )
    assert summary.completed and summary.session is not None
    return summary.session


async def wait_for_id(inbox: Inbox, event_id: int) -> None:
    await inbox.wait_until(lambda: any(m["id"] == event_id for m in received(inbox)))


async def test_events_left_by_a_run_whose_broker_went_away_come_first_at_the_next_start(
    broker: LocalBroker, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    inbox = Inbox()
    ready = asyncio.Event()
    sub = asyncio.create_task(subscriber(broker, inbox, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)

        # run 1: the broker stops once the dashboard has seen the exchange begin, for good
        async def stop_at_exchange() -> None:
            await inbox.wait_for(
                "als/sim-01/events", lambda p: json.loads(p)["body"].get("dest") == "exchange"
            )
            ready.clear()
            await asyncio.to_thread(broker.stop)

        stopper = asyncio.create_task(stop_at_exchange())
        first = bridge_for(broker, drain_s=0.5)
        with Journal(path) as journal:
            opts = RunOptions(gate=CLEAR, journal=journal, edges=[first], speed=300)
            summary, _ = await run_treatment(RIG, pe_short(), opts)
        await asyncio.wait_for(stopper, 10)
        assert summary.completed and summary.session == 1
        seen_1 = [m["id"] for m in received(inbox)]
        left = [e.id for e, _stamp in first.outbox]
        ids_1 = journaled(path, 1)
        assert seen_1 and left, "the outage left nothing to replay"
        assert seen_1 + left == ids_1
        # the journal knows exactly what the broker acknowledged, and so what is left
        assert acknowledged(path, 1) == seen_1[-1]
        assert [e.id for e in jr.undelivered(path, "sim-01", STREAM)] == left
        assert jr.undelivered(path, "bench-01", STREAM) == []

        # run 2, broker back: session 1's leftovers first, in order, once, then its own
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(ready.wait(), 30)
        mark = inbox.mark()
        second = bridge_for(broker)
        assert await run_once(path, second) == 2
        ids_2 = journaled(path, 2)
        await wait_for_id(inbox, ids_2[-1])
        now = received(inbox, mark)
        assert [m["id"] for m in now] == left + ids_2
        assert all(m["replayed"] and m["session"] == 1 for m in now[: len(left)])
        assert not any(m["replayed"] for m in now[len(left) :])
        assert {m["session"] for m in now[len(left) :]} == {2}
        assert second.stats.replayed == len(left) and not second.outbox
        assert acknowledged(path, 1) == ids_1[-1] and acknowledged(path, 2) == ids_2[-1]
        assert jr.undelivered(path, "sim-01", STREAM) == []

        # run 3, a clean start after a clean run: nothing replayed
        mark = inbox.mark()
        third = bridge_for(broker)
        assert await run_once(path, third) == 3
        ids_3 = journaled(path, 3)
        await wait_for_id(inbox, ids_3[-1])
        assert third.stats.replayed == 0
        assert [m["id"] for m in received(inbox, mark)] == ids_3
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
    every = [m["id"] for m in received(inbox)]
    assert every == ids_1 + ids_2 + ids_3, "a duplicate, a gap or out of order"
    # the first message of an alarm or event replayed says so; live ones do not
    assert sum(m["replayed"] for m in received(inbox)) == len(left)


async def test_a_controller_killed_during_an_outage_has_its_events_published_by_the_next_start(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """`alsctl run --mqtt` as a process, SIGKILLed while the broker is down: no goodbye, no
    drain. What it journaled after the broker went away is published by the next start."""
    path = tmp_path / "j.db"
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    inbox = Inbox()
    ready = asyncio.Event()
    sub = asyncio.create_task(subscriber(broker, inbox, ready))
    run = None
    try:
        await asyncio.wait_for(ready.wait(), 30)
        run = await alsctl(
            "run", "--sim", "--plain", "--speed", "60", "--prescription", str(rx),
            "--checklist", "config/checklists/clear.yaml", "--journal", str(path),
            "--mqtt", broker.url,
            env=broker.env("sim-01"),
        )  # fmt: skip
        printed: list[str] = []
        await read_until(run, "connecting -> exchange", printed)
        await inbox.wait_for(
            "als/sim-01/events", lambda p: json.loads(p)["body"].get("dest") == "exchange"
        )
        ready.clear()
        await asyncio.to_thread(broker.stop)
        # journaled (printed once committed) while nobody could publish it
        await read_until(run, "exchange -> rinse_back", printed)
        run.send_signal(signal.SIGKILL)
        await run.wait()
        seen_1 = [m["id"] for m in received(inbox)]
        ids_1 = journaled(path, 1)
        assert jr.sessions(path)[0].status() == "interrupted"
        assert acknowledged(path, 1) == seen_1[-1]
        left = [e.id for e in jr.undelivered(path, "sim-01", STREAM)]
        assert seen_1 + left == ids_1 and left

        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(ready.wait(), 30)
        mark = inbox.mark()
        second = bridge_for(broker)
        assert await run_once(path, second) == 2
        ids_2 = journaled(path, 2)
        await wait_for_id(inbox, ids_2[-1])
        now = received(inbox, mark)
        assert [m["id"] for m in now] == left + ids_2
        assert [m["replayed"] for m in now] == [True] * len(left) + [False] * len(ids_2)
        assert jr.undelivered(path, "sim-01", STREAM) == []
    finally:
        if run is not None and run.returncode is None:
            run.kill()
            await run.wait()
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
    assert [m["id"] for m in received(inbox)] == ids_1 + ids_2
