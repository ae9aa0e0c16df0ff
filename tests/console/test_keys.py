"""Each key of the console drives the controller on the simulated rig, through the request
port, and is journaled as an operator action from `console` (Textual's pilot)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.console.app import ConsoleApp, Help
from controller.console.feed import Feed
from controller.console.widgets import Alarms, Status
from controller.journal import Journal
from tests.console.helpers import RIG, air_in_exchange, press, short_pe, until

SIZE = (150, 50)


def text_of(widget: Any) -> str:
    return str(widget.plain)


def answered(feed: Feed, before: object) -> bool:
    """A new answer has come, with its result: not the one there before the key (under
    load the key's request may not have reached the feed when the wait begins)."""
    return (
        bool(feed.answers)
        and feed.answers[-1] is not before
        and (feed.answers[-1].result is not None)
    )


async def test_every_key_drives_the_controller_and_is_journaled(tmp_path: Path) -> None:
    refs: list[Any] = []
    with Journal(tmp_path / "j.db") as journal:
        feed = Feed(RIG, "sim")
        opts = RunOptions(
            gate=CLEAR,
            speed=100,
            scenario=air_in_exchange(),
            journal=journal,
            edges=[feed],
            on_controller=refs.append,
        )
        run = asyncio.create_task(run_treatment(RIG, short_pe(), opts))
        try:
            summary = await drive(feed, refs, run)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    assert summary.outcome == "stopped"
    record = jr.load(tmp_path / "j.db", summary.session, trends=False)
    ops = [
        (e.body["request"], e.body["result"].split(":")[0])
        for e in record.events
        if e.kind == "operator" and e.body["cause"].startswith("console")
    ]
    assert ops == [
        ("resume", "refused"),
        ("pause_audio", "done"),
        ("acknowledge", "done"),
        ("resume", "done"),
        ("pause", "done"),
        ("resume", "done"),
        ("set_blood_flow", "refused"),
        ("set_blood_flow", "done"),
        ("stop", "done"),
    ]


async def drive(feed: Feed, refs: list[Any], run: asyncio.Task[Any]) -> Any:
    """The operator at the console: every key, each checked on the controller itself."""
    app = ConsoleApp(feed, bell=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: feed.latest is not None and feed.latest.phase == "alarm")
        c = refs[0]
        assert c.machine.phase == "alarm"
        await until(lambda: feed.latest is not None and not feed.latest.alarms[0].present)
        # the screen redraws at 4 Hz of wall time: wait for the redraw that shows the cleared
        # condition, however late (one drawn just before it still says "still present")
        await until(lambda: "latched until acknowledged" in text_of(app.query_one(Alarms)))
        shown = text_of(app.query_one(Alarms))
        assert "air in the return line" in shown
        assert "all pumps stopped, venous clamp closed" in shown
        assert "latched until acknowledged" in shown
        assert "clear the air from the return line, then acknowledge (A)" in shown

        await press(pilot, "r")  # not acknowledged: refused, the alarm named
        await until(lambda: feed.answers and feed.answers[-1].result is not None)
        refused = "air in the return line (air_return) is not acknowledged"
        await until(lambda: refused in text_of(app.query_one(Status)))
        assert refused in text_of(app.query_one(Status))
        before = feed.answers[-1]
        await press(pilot, "s")
        # 2 min of rig time is about a second here: the countdown is the snapshots' to show
        await until(lambda: answered(feed, before))
        assert c.safety.alarms.audio_paused_until_ms > 0
        await press(pilot, "a")
        await until(lambda: not c.safety.alarms.active)
        await press(pilot, "r")
        await until(lambda: c.machine.phase == "exchange")

        await press(pilot, "p")
        await until(lambda: c.machine.phase == "paused")
        await press(pilot, "r")
        await until(lambda: c.machine.phase == "exchange")

        before = feed.answers[-1]
        await pilot.press("b")  # out of bounds: refused in words
        await press(pilot, *"400", "enter")
        await until(lambda: answered(feed, before))
        assert "allowed 50..250 mL/min" in str(feed.answers[-1].result)
        before = feed.answers[-1]
        await press(pilot, "b")
        await press(pilot, *"100", "enter")
        await until(lambda: answered(feed, before))
        assert feed.answers[-1].result == "done", "\n".join(list(feed.log)[-8:])
        assert c.rx.blood_flow_ml_min == 100

        await press(pilot, "question_mark")
        await until(lambda: isinstance(app.screen, Help))
        assert isinstance(app.screen, Help)
        await press(pilot, "escape")

        await press(pilot, "x")
        await pilot.press("n")  # not confirmed: nothing happens
        await pilot.pause(0.2)
        assert c.machine.phase == "exchange"
        await press(pilot, "x")
        await press(pilot, "y")
        await until(lambda: c.machine.phase in ("rinse_back", "done"))
        summary, _ = await run
        await until(lambda: feed.ended)
        await until(lambda: "the run has ended" in text_of(app.query_one(Status)))
        assert "the run has ended" in text_of(app.query_one(Status))
        await press(pilot, "q")
    return summary
