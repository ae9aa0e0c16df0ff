"""`set_blood_flow` over MQTT: off by default; where a rig file allows it, the same request
as the console's `B` key, through the same port, bounds-checked and journaled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.journal import Journal
from controller.mqtt.local import LocalBroker
from tests.mqtt.conftest import RIG, Inbox, bridge_for, short_li_als
from tests.mqtt.test_commands import ask, phase_is

SPEED = 200.0


async def test_set_blood_flow_is_refused_unless_the_rig_allows_it(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    assert "set_blood_flow" not in RIG.mqtt.commands
    bridge = bridge_for(broker)
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(gate=CLEAR, speed=SPEED, journal=journal, edges=[bridge])
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            await inbox.wait_for("als/sim-01/state", phase_is("exchange"))
            answer = await ask(dash, inbox, "set_blood_flow", {"blood_flow_ml_min": 100})
            assert not answer["accepted"]
            assert "set_blood_flow is not in this rig's allow-list" in answer["result"]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


async def test_set_blood_flow_changes_the_flow_within_bounds_and_is_journaled(
    broker: LocalBroker, dashboard: tuple[aiomqtt.Client, Inbox], tmp_path: Path
) -> None:
    dash, inbox = dashboard
    bridge = bridge_for(broker, commands=(*RIG.mqtt.commands, "set_blood_flow"))
    flows: list[float] = []
    with Journal(tmp_path / "j.db") as journal:
        opts = RunOptions(
            gate=CLEAR,
            speed=SPEED,
            journal=journal,
            edges=[bridge],
            on_view=lambda v: flows.append(v.prescription.blood_flow_ml_min),
        )
        run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
        try:
            state = json.loads(await inbox.wait_for("als/sim-01/state", phase_is("exchange")))
            assert "set_blood_flow" in state["allowed"]
            high = await ask(dash, inbox, "set_blood_flow", {"blood_flow_ml_min": 900})
            assert not high["accepted"]
            assert "allowed 50..250 mL/min" in high["result"], high
            missing = await ask(dash, inbox, "set_blood_flow", {})
            assert "give the new flow in mL/min" in missing["result"]
            done = await ask(
                dash, inbox, "set_blood_flow", {"blood_flow_ml_min": 100, "by": "dr-b"}
            )
            assert done["accepted"], done
            run.cancel()
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    assert flows[-1] == 100
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    changed = [e.body for e in record.events if e.kind == "operator"]
    assert changed[-1]["request"] == "set_blood_flow" and changed[-1]["result"] == "done"
    assert changed[-1]["cause"] == "mqtt dr-b; blood flow 120 -> 100 mL/min"
    assert record.snapshots["prescription_effective"]["blood_flow_ml_min"] == 100
