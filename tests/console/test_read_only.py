"""`alsctl console SESSION`: a journaled session in the console, read-only; and the alarm
signal's two parts a snapshot cannot show, the flashing and the bell (IEC 60601-1-8).

The session is a real one: `alsctl run` on the simulated rig, air in the return line left
unattended, so it ends in `alarm` with the alarm still open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.text import Text

from controller import journal as jr
from controller.console.app import BELL_TICKS, ConsoleApp
from controller.console.feed import Feed
from controller.console.replay import from_journal
from controller.console.widgets import Alarms, EventLog, RunHeader, Status, num
from controller.control.events import AlarmView
from tests.console.helpers import press, until
from tests.integration.test_cli_run import PE_SHORT, alsctl

SIZE = (150, 50)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("read_only")
    rx = folder / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    done = alsctl(
        "run", "--sim", "--plain", "--prescription", str(rx), "--scenario", "air_bubble",
        "--checklist", "clear", "--journal", str(folder / "j.db"),
    )  # fmt: skip
    assert done.returncode == 4, done.stdout + done.stderr  # ended in alarm
    return folder / "j.db"


def test_console_prints_a_session_in_lines_off_a_terminal(journal: Path) -> None:
    done = alsctl("console", "last", "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "session 1: rig sim-01 (sim)"
    assert "outcome alarm: air_return in exchange" in lines
    assert "alarm open at the end: air_return (high, not acknowledged)" in lines
    assert any("raised: air in the return line (high, air_return)" in line for line in lines)
    assert any(
        line.endswith("connecting -> exchange (blood flow at prescription)") for line in lines
    )
    assert not any("{" in line for line in lines), "every event in words, no raw body"


def test_console_names_a_missing_session(journal: Path) -> None:
    done = alsctl("console", "7", "--journal", str(journal))
    assert done.returncode != 0
    assert "no session 7" in done.stderr


async def test_the_session_opens_read_only_and_takes_no_request(journal: Path) -> None:
    record = jr.load(journal, 1)
    events_before = len(record.events)
    feed = from_journal(record)
    assert feed.latest is not None and feed.ended
    app = ConsoleApp(feed, read_only=True, bell=False)
    async with app.run_test(size=SIZE) as pilot:
        header = app.query_one(RunHeader).plain
        assert "outcome alarm: air_return in exchange" in header
        assert "phase alarm" in header and "total 0:56:" in header
        alarms = app.query_one(Alarms).plain
        assert "HIGH" in alarms and "air in the return line" in alarms
        assert "not acknowledged" in alarms or "still present" in alarms
        assert "raised: air in the return line" in app.query_one(EventLog).plain
        # the volumes are the summary's; the commanded rates were never journaled: unknown
        assert feed.latest.volumes.exchanged_ml == pytest.approx(446, abs=5)
        blood = feed.latest.sample.pumps["blood"]
        assert num(blood.commanded) == "-" and num(blood.measured) == "0"
        for key in ("a", "r", "x", "b"):
            await press(pilot, key)
            await until(lambda: "takes no request" in app.query_one(Status).plain)
        await press(pilot, "q")
        await until(lambda: app.return_code is not None)
    assert len(jr.load(journal, 1, trends=False).events) == events_before


# -- flashing and the bell ----------------------------------------------------------------
def with_alarm(
    feed: Feed, priority: str, *, acknowledged: bool = False, paused: bool = False
) -> Feed:
    """The journaled session's last view with one active alarm of `priority`."""
    twin = feed.frozen()
    assert twin.latest is not None
    t = twin.latest.t_ms
    alarm = AlarmView("air_return", priority, t - 5_000, True, acknowledged, True, "")
    twin.latest = twin.latest._replace(
        alarms=(alarm,), audio_paused_until_ms=t + 60_000 if paused else 0
    )
    return twin


@pytest.fixture(scope="module")
def feed(journal: Path) -> Feed:
    return from_journal(jr.load(journal, 1))


class Caught(Alarms):
    """The alarm panel, keeping what it would draw."""

    parts: tuple[Any, ...] = ()

    def put(self, *parts: Any) -> None:
        self.parts = parts


def badge_lit(feed: Feed, tick: int, flash: bool = True) -> bool:
    panel = Caught()
    panel.show(feed, tick, flash)
    head = panel.parts[1]
    assert isinstance(head, Text)
    return " on " in str(head.spans[0].style)  # a filled badge; unlit: coloured text only


@pytest.mark.parametrize(
    ("priority", "lit"),
    [
        ("high", [True, False, True, False, True, False, True, False]),  # ~2 Hz at 4 Hz ticks
        ("medium", [True, True, True, True, False, False, False, False]),  # ~0.5 Hz
        ("low", [True] * 8),  # steady
    ],
)
def test_alarms_flash_by_priority(feed: Feed, priority: str, lit: list[bool]) -> None:
    shown = with_alarm(feed, priority)
    assert [badge_lit(shown, tick) for tick in range(8)] == lit


def test_an_acknowledged_alarm_or_flash_off_stays_steady(feed: Feed) -> None:
    acked = with_alarm(feed, "high", acknowledged=True)
    assert all(badge_lit(acked, tick) for tick in range(8))
    assert all(badge_lit(with_alarm(feed, "high"), tick, flash=False) for tick in range(8))


@pytest.mark.parametrize(
    ("priority", "acknowledged", "paused", "bell", "rings"),
    [
        ("high", False, False, True, 2),
        ("high", False, True, True, 0),  # audio paused
        ("high", True, False, True, 0),  # acknowledged
        ("high", False, False, False, 0),  # --no-bell (tests, a shared room)
        ("medium", False, False, True, 0),  # only high rings the terminal bell
    ],
)
async def test_the_bell_rings_for_high_priority_unless_paused(
    feed: Feed, priority: str, acknowledged: bool, paused: bool, bell: bool, rings: int
) -> None:
    shown = with_alarm(feed, priority, acknowledged=acknowledged, paused=paused)
    app = ConsoleApp(shown, bell=bell, refresh_s=3600)  # ticks driven here, not by a timer
    rang: list[int] = []
    async with app.run_test(size=SIZE):
        app.bell = lambda: rang.append(app.tick)  # type: ignore[method-assign]  # counted, not sounded
        for _ in range(2 * BELL_TICKS):
            app.on_tick()
    assert len(rang) == rings
