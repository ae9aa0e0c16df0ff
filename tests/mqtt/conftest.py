"""A real Mosquitto per test, from the shipped config/mosquitto files, on a free port.

Missing mosquitto is an error, never a skip: `make test` installs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.config.loading import load_prescription, load_rig
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.broker import Broker
from controller.mqtt.local import EXAMPLE_PASSWORDS, LocalBroker

RIG = load_rig("config/rigs/sim.yaml")


def short_li_als() -> Prescription:
    base = load_prescription("config/prescriptions/li_als.yaml")
    return Prescription.model_validate(
        {
            **base.model_dump(exclude_none=True),
            "exchange_volume_pv": None,
            "exchange_volume_ml": 900,
            "purification": {"duration_min": 20},
        }
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    local = LocalBroker(tmp_path / "mosquitto")
    local.start()
    try:
        yield local
    finally:
        local.stop()


def client(broker: LocalBroker, user: str | None, **kw: Any) -> aiomqtt.Client:
    kw.setdefault("password", EXAMPLE_PASSWORDS.get(user or ""))
    return aiomqtt.Client("127.0.0.1", broker.port, username=user, **kw)


def bridge_for(
    broker: LocalBroker, rig: RigConfig = RIG, drain_s: float = 5.0, **settings: Any
) -> MqttBridge:
    mqtt = rig.mqtt.model_copy(update=settings)
    env = broker.env(rig.rig_id)
    address = Broker.from_url(broker.url, mqtt, env=env)
    return MqttBridge(address, mqtt, rig.rig_id, drain_s=drain_s)


class Inbox:
    """What a subscriber received, with a way to await a message matching a condition."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, aiomqtt.Message]] = []
        self._changed = asyncio.Condition()

    async def add(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        async with self._changed:
            self.messages.append((message.topic.value, payload, message))
            self._changed.notify_all()

    def mark(self) -> int:
        return len(self.messages)

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.messages if t == topic]

    async def wait_for(
        self, topic: str, match: Any = None, timeout: float = 30.0, after: int = 0
    ) -> bytes:
        """The first message on `topic` (payload satisfying `match`) from the `after`-th
        message on: `mark()` before an action, to wait for what follows it."""

        def found() -> bytes | None:
            for t, p, _ in self.messages[after:]:
                if t == topic and (match is None or match(p)):
                    return p
            return None

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        return found()  # type: ignore[return-value]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Until `condition()` holds, judged again on each message that arrives."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)


async def follow(c: aiomqtt.Client, inbox: Inbox) -> None:
    async for message in c.messages:
        await inbox.add(message)


@pytest.fixture
async def dashboard(broker: LocalBroker) -> AsyncIterator[tuple[aiomqtt.Client, Inbox]]:
    """A dashboard (MQTT 5) subscribed to everything, from before the rig connects."""
    inbox = Inbox()
    async with client(broker, "dashboard", protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe("als/#", qos=1)
        task = asyncio.create_task(follow(c, inbox))
        try:
            yield c, inbox
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
