"""Shared by the console's tests: a short treatment on the simulated rig, and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controller.config.loading import load_prescription, load_rig
from controller.config.prescription import Prescription
from controller.config.scenario import Scenario

RIG = load_rig("config/rigs/sim.yaml")


def short_pe() -> Prescription:
    base = load_prescription("config/prescriptions/pe.yaml")
    return Prescription.model_validate(
        {
            **base.model_dump(exclude_none=True),
            "exchange_volume_pv": None,
            "exchange_volume_ml": 3000,
        }
    )


def air_in_exchange(after_s: float = 30.0) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "air in exchange",
            "events": [
                {"phase": "exchange", "after_s": after_s, "fault": "air_bubble", "duration_s": 2}
            ],
        }
    )


async def until(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> None:
    """Wait (wall time) for `condition`, polling; fail naming what was awaited."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


#: The characters of the keys the tests press
CHARS = {"enter": "\r", "escape": "\x1b", "question_mark": "?"}


async def press(pilot: Any, *keys: str) -> None:
    """Keys to the app as the terminal sends them, without `Pilot.press`'s wait for an idle
    process (about 2 s a key while a treatment runs beside the app: it is never idle)."""
    from textual import events

    for key in keys:
        pilot.app.post_message(events.Key(key, CHARS.get(key, key if len(key) == 1 else None)))
        await pilot.pause(0.05)
