"""The console as the operator sees it (pytest-textual-snapshot): running normally, a high
alarm, the audio paused, after a stop. The screens come from one real run on the simulated
rig, each caught (`Feed.frozen`) at its moment, so what is drawn is what the loop published.

`pytest tests/console/test_snapshots.py --snapshot-update` redraws them after a deliberate
change; docs/console.svg (the README's screenshot) is the running one, copied.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.console.app import ConsoleApp
from controller.console.feed import Feed
from controller.control import View
from tests.console.helpers import RIG, air_in_exchange, short_pe

SIZE = (150, 48)


def moments() -> dict[str, Feed]:
    """One run, air in the return line 10 min into the exchange; the operator pauses the
    audio, acknowledges and stops."""
    feed = Feed(RIG, "sim")
    caught: dict[str, Feed] = {}
    refs: list[Any] = []
    asked: dict[str, int] = {}

    def probe(view: View) -> None:
        c = refs[0]
        if "running" not in caught and view.phase == "exchange" and view.t_ms > 900_000:
            caught["running"] = feed.frozen()
        alarm = view.alarms[0] if view.alarms else None
        if view.phase == "alarm" and alarm is not None:
            since = view.t_ms - alarm.raised_ms
            if "alarm" not in caught and since >= 1_000:
                caught["alarm"] = feed.frozen()
            if "audio" not in asked and since >= 5_000:
                c.request("pause_audio", "console")
                asked["audio"] = view.t_ms
            if "audio" not in caught and "audio" in asked and view.t_ms >= asked["audio"] + 30_000:
                caught["audio"] = feed.frozen()
                c.request("acknowledge", "console")
                c.request("stop", "console")

    opts = RunOptions(
        gate=CLEAR,
        scenario=air_in_exchange(600),
        edges=[feed],
        on_view=probe,
        on_controller=refs.append,
    )
    asyncio.run(run_treatment(RIG, short_pe(), opts))
    caught["stopped"] = feed.frozen()
    return caught


@pytest.fixture(scope="module")
def screens() -> dict[str, Feed]:
    return moments()


@pytest.mark.parametrize("moment", ["running", "alarm", "audio", "stopped"])
def test_console_snapshot(moment: str, screens: dict[str, Feed], snap_compare: Any) -> None:
    app = ConsoleApp(screens[moment], flash=False, bell=False)
    assert snap_compare(app, terminal_size=SIZE)
