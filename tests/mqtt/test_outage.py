"""A broker that goes away: the treatment never notices, and nothing journaled is lost.

The reference is the same treatment without MQTT: the simulated rig is deterministic in rig
time, so "unaffected" means the same summary, to the last transition and millilitre.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.scenario import Scenario
from controller.journal import Committed, Journal
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.broker import Broker
from controller.mqtt.local import LocalBroker
from tests.mqtt.conftest import RIG, Inbox, bridge_for, client, short_li_als

#: air in the return line 20 min in: an alarm, the safe state, an automatic resume
AIR = Scenario.model_validate(
    {"name": "air", "events": [{"at_s": 1200, "fault": "air_bubble", "duration_s": 2}]}
)


async def persistent_subscriber(broker: LocalBroker, inbox: Inbox, ready: asyncio.Event) -> None:
    """A dashboard that must not miss an event: a persistent session at QoS 1 (MQTT 3.1.1
    clean_session false), reconnecting whenever the broker is back."""
    while True:
        try:
            async with client(
                broker, "dashboard", identifier="ops-board", clean_session=False
            ) as c:
                await c.subscribe("als/sim-01/events", qos=1)
                await c.subscribe("als/sim-01/alarms", qos=1)
                ready.set()
                async for message in c.messages:
                    await inbox.add(message)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)  # the broker is down: try again shortly


async def test_a_broker_restart_loses_nothing_and_changes_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    rx = short_li_als()
    reference, _ = await run_treatment(
        RIG, rx, RunOptions(gate=CLEAR, scenario=AIR, auto_resume_s=10)
    )
    assert reference.completed and reference.alarms

    loop = asyncio.get_running_loop()
    down = asyncio.Event()  # set when the broker should stop
    up = asyncio.Event()  # set when it may come back
    while_down: list[int] = []

    def watch(events: list[Committed]) -> None:  # the journal's writer thread
        for e in events:
            if e.kind == "transition" and e.body["dest"] == "exchange":
                loop.call_soon_threadsafe(down.set)
            if broker.proc is None:
                while_down.append(e.id)
            if e.kind == "alarm" and e.body["kind"] == "raised" and broker.proc is None:
                loop.call_soon_threadsafe(up.set)

    inbox = Inbox()
    ready = asyncio.Event()
    sub = asyncio.create_task(persistent_subscriber(broker, inbox, ready))
    await ready.wait()
    bridge = bridge_for(broker)
    with Journal(tmp_path / "j.db") as journal:
        journal.subscribe(watch)
        opts = RunOptions(
            gate=CLEAR, scenario=AIR, auto_resume_s=10, speed=300, journal=journal, edges=[bridge]
        )
        run = asyncio.create_task(run_treatment(RIG, rx, opts))
        try:
            await asyncio.wait_for(down.wait(), 60)
            await asyncio.to_thread(broker.stop)
            await asyncio.wait_for(up.wait(), 60)
            await asyncio.to_thread(broker.start)
            summary, _ = await asyncio.wait_for(run, 120)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    try:
        # the same run, but journaled (so it has a session)
        assert summary.session == 1 and reference.session is None
        assert summary.model_dump(exclude={"session"}) == reference.model_dump(exclude={"session"})
        assert bridge.stats.connections >= 2 and not bridge.outbox
        assert while_down, "no event was journaled while the broker was down"
        record = jr.load(tmp_path / "j.db", 1, trends=False)
        ids = [e.id for e in record.events]
        assert set(while_down) <= set(ids)
        await inbox.wait_for(
            "als/sim-01/events", lambda p: json.loads(p)["id"] == ids[-1], timeout=30
        )
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
    received = [json.loads(p)["id"] for _t, p, _m in inbox.messages]
    first_seen = list(dict.fromkeys(received))  # QoS 1 may repeat an unacknowledged one
    assert first_seen == ids, f"missing {sorted(set(ids) - set(received))}"


async def test_without_a_broker_telemetry_is_dropped_and_counted_events_kept(
    tmp_path: Path,
) -> None:
    rx = short_li_als()
    reference, _ = await run_treatment(RIG, rx, RunOptions(gate=CLEAR))
    # configured, never started; port 1: outside the ephemeral range, so no connection
    # attempt can meet itself there (a TCP self-connect) and nothing listens
    nobody = LocalBroker(tmp_path / "unused", port=1)
    bridge = bridge_for(nobody, drain_s=0.2, queue_size=10)
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(gate=CLEAR, journal=journal, edges=[bridge])
        summary, _ = await run_treatment(RIG, rx, opts)
    assert summary.session == 1 and reference.session is None
    assert summary.model_dump(exclude={"session"}) == reference.model_dump(exclude={"session"})
    assert bridge.stats.connections == 0 and bridge.error is not None
    produced = int(summary.rig_time_s * RIG.mqtt.telemetry_hz)
    assert abs(bridge.stats.dropped - (produced - 10)) <= 2
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    assert [e.id for e, _ in bridge.outbox] == [e.id for e in record.events]


async def test_events_the_broker_refuses_stay_in_the_outbox(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The wrong user for this rig: Mosquitto's ACL denies every publish under als/sim-01/
    (aiomqtt alone would report each as delivered); the events stay, the reason is said."""
    mqtt = RIG.mqtt
    wrong = {"ALSCTL_MQTT_USERNAME": "bench-01", "ALSCTL_MQTT_PASSWORD": "bench-01-example"}
    bridge = MqttBridge(Broker.from_url(broker.url, mqtt, env=wrong), mqtt, "sim-01", drain_s=0.5)
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(gate=CLEAR, journal=journal, edges=[bridge])
        summary, _ = await run_treatment(RIG, short_li_als(), opts)
    assert summary.completed
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    assert [e.id for e, _ in bridge.outbox] == [e.id for e in record.events]
    assert bridge.stats.events == 0 and bridge.stats.connections >= 1
    assert bridge.error is not None and "Not authorized" in bridge.error
