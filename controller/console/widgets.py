"""The console's panels, each drawn from the `Feed` on the screen's timer (never per sample).

Alarm colours follow IEC 60601-1-8: high red, medium yellow, low cyan; high and medium
flash (high faster), low does not. Every alarm says what was detected, what the rig did,
whether the condition is still there, whether it was acknowledged, and what to do next.
"""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from controller.console.feed import Feed, clock
from controller.control.events import AlarmView, View
from controller.words import alarm_words, condition_words

#: IEC 60601-1-8 colours by priority
COLOURS = {"high": "red", "medium": "yellow", "low": "cyan"}
RANK = {"high": 0, "medium": 1, "low": 2}
#: Flash periods, in screen ticks (4 Hz): high about 2 Hz, medium about 0.5 Hz, low steady
FLASH_TICKS = {"high": 1, "medium": 4}


def flashing_on(priority: str, tick: int) -> bool:
    """Whether a flashing alarm shows its colour at this tick (a steady one always does)."""
    every = FLASH_TICKS.get(priority)
    return every is None or (tick // every) % 2 == 0


def ordered(alarms: tuple[AlarmView, ...]) -> list[AlarmView]:
    """By priority, then the newest first: the one to act on is on top."""
    return sorted(alarms, key=lambda a: (RANK.get(a.priority, 3), -a.raised_ms))


class Panel(Static):
    """A panel that also keeps what it shows as plain text (tests read it, not pixels)."""

    plain: str = ""

    def put(self, *parts: RenderableType) -> None:
        self.plain = "\n".join(p.plain if isinstance(p, Text) else str(p) for p in parts)
        self.update(parts[0] if len(parts) == 1 else Group(*parts))


class RunHeader(Panel):
    """Rig, backend, prescription, mode, phase and its progress, time left, total time."""

    def show(self, feed: Feed) -> None:
        view = feed.latest
        rig = feed.rig
        if view is None:
            self.put(Text(f"rig {rig.rig_id} ({feed.backend})  waiting for the first sample"))
            return
        rx = view.prescription
        phase = view.phase + (f" (holding {view.interrupted})" if view.interrupted else "")
        top = Text.assemble(
            ("rig ", "dim"),
            (rig.rig_id, "bold"),
            (f" ({feed.backend})   ", "dim"),
            (rx.name or "(unnamed)", "bold"),
            (f"  mode {rx.mode}  blood {rx.blood_flow_ml_min:g} mL/min", ""),
        )
        target = view.target
        progress = str(target)
        if target.target:
            share = min(1.0, target.done / target.target)
            filled = int(share * 20)
            progress += f"  [{'#' * filled}{'.' * (20 - filled)}] {share:.0%}"
        left = feed.remaining_ms() if view.phase not in ("alarm", "paused") else None
        line = Text.assemble(
            ("phase ", "dim"),
            (phase, "bold reverse" if view.phase in ("alarm", "paused") else "bold"),
            ("   ", ""),
            (progress, ""),
            ("   left ", "dim"),
            (
                clock(left)
                if left is not None
                else "held"
                if view.phase in ("alarm", "paused")
                else "-",
                "",
            ),
            ("   total ", "dim"),
            (clock(view.t_ms), "bold"),
        )
        if view.outcome is not None:
            end = Text(f"outcome {view.outcome}: {view.outcome_detail}", style="bold")
            self.put(top, line, end)
        else:
            self.put(top, line)


def num(value: float, fmt: str = ".0f", unit: str = "") -> str:
    """A reading, or `-` for one not known (a journaled session keeps no commanded rate)."""
    if math.isnan(value):
        return "-"
    return f"{value:{fmt}}" + (f" {unit}" if unit else "")


def _limit(value: float, low: float | None, high: float | None) -> str:
    """The value's style: red when outside its alarm limits."""
    if (low is not None and value < low) or (high is not None and value > high):
        return "bold red"
    return ""


class Values(Static):
    """Pressures with their alarm limits, flows commanded and measured, volumes, patient."""

    def show(self, feed: Feed) -> None:
        view = feed.latest
        if view is None:
            return
        lim = feed.rig.alarms
        s = view.sample.sensors
        tmp = (s["pre_separator"].value + s["return"].value) / 2 - s["plasma"].value
        dp = s["pre_adsorber"].value - s["post_adsorber"].value
        pressures = Table(title="pressures (mmHg)", box=None, padding=(0, 1), expand=True)
        for col in ("", "now", "limits"):
            pressures.add_column(col, justify="right" if col else "left")
        rows: list[tuple[str, float, float | None, float | None]] = [
            ("access", s["access"].value, lim.access_low_mmhg, None),
            ("pre-sep.", s["pre_separator"].value, None, None),
            ("return", s["return"].value, lim.return_low_mmhg, lim.return_high_mmhg),
            ("TMP", tmp, None, lim.separator_tmp_high_mmhg),
            ("adsorber dP", dp, None, lim.adsorber_dp_high_mmhg),
        ]
        for name, value, low, high in rows:
            limits = (
                f"{low:g}..{high:g}"
                if low is not None and high is not None
                else f">= {low:g}"
                if low is not None
                else f"<= {high:g}"
                if high is not None
                else "-"
            )
            pressures.add_row(name, Text(f"{value:.0f}", _limit(value, low, high)), limits)
        flows = Table(title="flows (mL/min)", box=None, padding=(0, 1), expand=True)
        flows.add_column("", no_wrap=True, min_width=12)
        for col in ("set", "meas."):
            flows.add_column(col, justify="right")
        for name, p in view.sample.pumps.items():
            flows.add_row(
                name + (" mL/h" if name == "heparin" else ""),
                num(p.commanded, ".1f"),
                num(p.measured, ".1f"),
            )
        v = view.volumes
        volumes = Table(title="volumes and patient", box=None, padding=(0, 1), expand=True)
        volumes.add_column("")
        volumes.add_column("", justify="right")
        temp = s["plasma_temp"].value
        mean = s["map"].value
        volumes.add_row("exchanged", num(v.exchanged_ml, unit="mL"))
        volumes.add_row("processed", num(v.processed_ml, unit="mL"))
        volumes.add_row("filtrate", num(v.pumped_ml.get("filtrate", math.nan), unit="mL"))
        volumes.add_row("net balance", num(v.fluid_balance_ml, "+.0f", "mL"))
        volumes.add_row("MAP", Text(f"{mean:.0f} mmHg", _limit(mean, lim.map_low_mmhg, None)))
        volumes.add_row(
            "plasma temp",
            Text(f"{temp:.1f} degC", _limit(temp, lim.plasma_temp_low_c, lim.plasma_temp_high_c)),
        )
        grid = Table.grid(expand=True, padding=(0, 2))
        for _ in range(3):
            grid.add_column(ratio=1)
        grid.add_row(pressures, flows, volumes)
        self.update(grid)


class Alarms(Panel):
    """The active alarms by priority, in words, with the audio pause's countdown."""

    def show(self, feed: Feed, tick: int, flash: bool) -> None:
        view = feed.latest
        if view is None or not view.alarms:
            self.put(Text("no active alarm", style="green"))
            self.set_class(False, "alarming")
            return
        self.set_class(True, "alarming")
        parts: list[Text] = [audio_line(view)]
        for a in ordered(view.alarms):
            w = alarm_words(a.id)
            colour = COLOURS.get(a.priority, "white")
            lit = not flash or a.acknowledged or flashing_on(a.priority, tick)
            badge = f" {a.priority.upper()} "
            head = Text.assemble(
                (badge, f"bold white on {colour}" if lit else f"bold {colour}"),
                (" ", ""),
                (w.what, f"bold {colour}"),
                (f"  [{a.id}] since {clock(a.raised_ms)}", "dim"),
            )
            state = condition_words(a.present, a.latched, a.acknowledged)
            if a.detail and a.present:
                state += f": {a.detail}"
            parts.append(head)
            parts.append(Text(f"   rig: {w.response}"))
            parts.append(
                Text.assemble(
                    ("   now: ", ""),
                    (state, "bold" if a.present else ""),
                )
            )
            parts.append(Text(f"   next: {w.next_step}", style="italic"))
        self.put(*parts)


def audio_line(view: View) -> Text:
    left_ms = view.audio_paused_until_ms - view.t_ms
    if left_ms > 0:
        return Text(f"audio paused: {clock(left_ms)[2:]} left", style="bold magenta")
    if any(not a.acknowledged for a in view.alarms):
        return Text("audio on (S pauses it 2 min)", style="bold")
    return Text("audio off: every alarm acknowledged", style="dim")


#: The trends, their labels and units
TREND_LABELS = {
    "access": "access mmHg",
    "pre_separator": "pre-sep mmHg",
    "return": "return mmHg",
    "tmp": "TMP mmHg",
    "adsorber_dp": "ads. dP mmHg",
    "map": "MAP mmHg",
    "blood": "blood mL/min",
}


class Trends(Vertical):
    """Sparklines of the last minutes, one per value, with the latest reading."""

    def compose(self) -> ComposeResult:
        for key, label in TREND_LABELS.items():
            with Horizontal(classes="trend"):
                yield Label(label, classes="trend-label")
                yield Sparkline([], id=f"spark-{key}", classes="spark")
                yield Label("", id=f"last-{key}", classes="trend-last")

    def show(self, feed: Feed) -> None:
        for key in TREND_LABELS:
            data = list(feed.trends[key])
            self.query_one(f"#spark-{key}", Sparkline).data = data
            last = f"{data[-1]:.0f}" if data else "-"
            self.query_one(f"#last-{key}", Label).update(last)


class EventLog(Panel):
    """The newest events: transitions, alarms, operator actions and their results."""

    def show(self, feed: Feed, lines: int = 8) -> None:
        shown = list(feed.log)[-lines:]
        self.put(Text("\n".join(shown) if shown else "no event yet"))


class Status(Panel):
    """The last answer to a key (a refusal in words, in red), or a note."""

    def show(self, feed: Feed, note: str | None) -> None:
        if note:
            self.put(Text(note, style="bold"))
            return
        if not feed.answers:
            self.put(Text("? for help", style="dim"))
            return
        answer = feed.answers[-1]
        self.put(Text(str(answer), style="bold red" if answer.refused else "green"))
