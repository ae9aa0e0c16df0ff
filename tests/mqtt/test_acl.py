"""The shipped password file and ACL (config/mosquitto), on a real Mosquitto.

A publish the ACL denies raises nothing at the publisher (aiomqtt drops the MQTT 5 reason
code), so these tests judge by what a subscriber receives. To know a denied message is not
merely late, the same client then publishes a permitted sentinel: one connection's
messages arrive in order, so once the sentinel is in, the denied one never will be.
"""

from __future__ import annotations

import asyncio

import pytest
from aiomqtt.exceptions import MqttConnectError

from controller.mqtt.local import LocalBroker
from tests.mqtt.conftest import Inbox, client, follow


async def test_anonymous_and_wrong_passwords_are_refused(broker: LocalBroker) -> None:
    with pytest.raises(MqttConnectError, match="Not authorized"):
        async with client(broker, None):
            pass
    with pytest.raises(MqttConnectError, match="Not authorized"):
        async with client(broker, "dashboard", password="guess"):
            pass


async def _received(broker: LocalBroker, publisher: str, denied: str, sentinel: str) -> list[str]:
    """Topics a dashboard saw after `publisher` sent to `denied`, then to `sentinel`."""
    inbox = Inbox()
    async with client(broker, "dashboard") as watcher, client(broker, publisher) as pub:
        await watcher.subscribe("als/#", qos=1)
        task = asyncio.create_task(follow(watcher, inbox))
        try:
            await pub.publish(denied, b'{"forged": true}', qos=1)
            await pub.publish(sentinel, b"{}", qos=1)
            await inbox.wait_for(sentinel, timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return [t for t, _, _ in inbox.messages]


async def test_a_rig_publishes_only_under_its_own_tree(broker: LocalBroker) -> None:
    seen = await _received(
        broker, "sim-01", denied="als/bench-01/state", sentinel="als/sim-01/state"
    )
    assert seen == ["als/sim-01/state"]


async def test_a_dashboard_publishes_commands_but_no_telemetry(broker: LocalBroker) -> None:
    # the dashboard's own messages reach it: it reads everything, and may write commands
    seen = await _received(
        broker, "dashboard", denied="als/sim-01/telemetry", sentinel="als/sim-01/cmd/pause"
    )
    assert seen == ["als/sim-01/cmd/pause"]


async def test_a_rig_cannot_read_another_rigs_commands(broker: LocalBroker) -> None:
    inbox = Inbox()
    async with client(broker, "bench-01") as spy, client(broker, "dashboard") as dash:
        await spy.subscribe("als/#", qos=1)  # granted, but filtered by the ACL
        task = asyncio.create_task(follow(spy, inbox))
        try:
            await dash.publish("als/sim-01/cmd/stop_treatment", b"{}", qos=1)
            await dash.publish("als/bench-01/cmd/pause", b"{}", qos=1)
            await inbox.wait_for("als/bench-01/cmd/pause", timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [t for t, _, _ in inbox.messages] == ["als/bench-01/cmd/pause"]
