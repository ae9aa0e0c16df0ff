"""The loop never waits for the screen: a console that crashes (an exception in a widget)
leaves the treatment running to its end, journaled, its progress handed to plain lines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.prescription import Prescription
from controller.console.app import ConsoleApp
from controller.console.feed import Feed
from controller.console.run import with_console
from controller.console.widgets import Values
from controller.journal import Journal
from controller.progress import Progress
from tests.console.helpers import RIG, short_pe


class Broken(Exception):
    pass


class CrashingApp(ConsoleApp):
    """A console whose values panel raises at its third redraw, mid-treatment."""

    def on_tick(self) -> None:
        if self.tick == 2:
            self.query_one(Values).show = self.explode  # type: ignore[method-assign]
        super().on_tick()

    def explode(self, feed: Feed) -> None:
        raise Broken("a widget fell over")


async def test_a_crashing_console_leaves_the_treatment_running(tmp_path: Path) -> None:
    rx = Prescription.model_validate(
        {**short_pe().model_dump(exclude_none=True), "exchange_volume_ml": 900}
    )
    out = io.StringIO()
    said: list[str] = []
    at_crash: list[int] = []
    with Journal(tmp_path / "j.db") as journal:
        feed = Feed(RIG, "sim")
        # paced: the run is still young when the console falls over
        opts = RunOptions(gate=CLEAR, speed=300, journal=journal, edges=[feed])
        progress = Progress(out, live=False)

        def fallback() -> Any:
            at_crash.append(feed.latest.t_ms if feed.latest else 0)
            journal.subscribe(progress.committed)
            return progress

        (summary, _), why = await with_console(
            feed,
            lambda: run_treatment(RIG, rx, opts),
            fallback,
            app=CrashingApp(feed, bell=False),
            say=said.append,
            headless=True,
        )
    assert why is not None and "Broken: a widget fell over" in why
    assert said and "the treatment goes on, in plain lines" in said[0]
    assert summary.outcome == "completed"
    record = jr.load(tmp_path / "j.db", summary.session, trends=False)
    done = [e for e in record.events if e.kind == "transition" and e.body["dest"] == "done"]
    assert done and done[0].t_ms > at_crash[0]  # the run went on after the console died
    assert "rinse_back -> done" in out.getvalue()
