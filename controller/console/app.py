"""The operator's console (Textual): the run always current, alarms in words, a key per action.

The app only reads a `Feed` on its own timer (`REFRESH_S` of wall time, whatever the sim's
speed) and sends requests through it; it never holds the control loop, which runs beside it
in the same asyncio loop as a task the app does not own (`controller/console/run.py`), so
quitting or crashing the app leaves the treatment running.
"""

from __future__ import annotations

import signal
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from controller.config.compat import blood_flow_bounds
from controller.console.feed import Answer, Feed
from controller.console.widgets import Alarms, EventLog, RunHeader, Status, Trends, Values

#: The screen is redrawn this often (wall time): >= 2 Hz, as the operator needs, and no
#: more however fast the simulation runs
REFRESH_S = 0.25
#: The terminal bell rings this often (in screen ticks) while a high alarm sounds
BELL_TICKS = 8

KEYS = (
    ("A", "acknowledge the alarms (silences them; a present condition stays shown)"),
    ("S", "pause the alarm audio for 2 min"),
    ("P", "pause the treatment (blood keeps circulating at minimum flow)"),
    ("R", "resume (from a pause, or from an alarm once clear and acknowledged)"),
    ("X", "stop the treatment: asks to confirm, then rinse-back"),
    ("B", "change the blood flow (asks for the value, within the bounds shown)"),
    ("?", "this help"),
    ("Q", "leave the console (a running treatment goes on, in plain lines)"),
    ("Ctrl-C", "interrupt: the rig to its safe state, as Ctrl-C does at `alsctl run`"),
)


class Confirm(ModalScreen[bool]):
    """A yes/no question; only `y` says yes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            yield Label("y: yes    n / Esc: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskFlow(ModalScreen[float | None]):
    """The new blood flow, typed in mL/min; Enter sends it, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, now: float, low: float, high: float) -> None:
        super().__init__()
        self.now, self.low, self.high = now, low, high

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(
                f"blood flow now {self.now:g} mL/min; new flow ({self.low:g}..{self.high:g}):",
                id="question",
            )
            yield Input(placeholder=f"{self.now:g}", type="number", id="flow")
            yield Label("Enter: send    Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(float(event.value))
        except ValueError:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "close")]

    def compose(self) -> ComposeResult:
        lines = "\n".join(f"  {k:<7} {what}" for k, what in KEYS)
        with Vertical(id="dialog"):
            yield Static(f"keys (each is journaled as an operator action from console):\n{lines}")
            yield Label("Esc or ?: close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class ConsoleApp(App[None]):
    """The console over one run's `Feed`; `read_only` for a finished session."""

    TITLE = "alsctl console"
    #: one way to act, the keys in the footer: no palette of commands besides
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    RunHeader { height: auto; background: $boost; padding: 0 1; }
    #middle { height: auto; }
    Values { width: 3fr; height: auto; padding: 0 1; }
    Alarms { width: 2fr; height: auto; min-height: 3; padding: 0 1; border: round $success; }
    Alarms.alarming { border: heavy red; }
    Trends { height: auto; padding: 0 1; }
    .trend { height: 1; }
    .trend-label { width: 14; }
    .spark { width: 1fr; height: 1; }
    .trend-last { width: 8; text-align: right; }
    EventLog { height: 1fr; min-height: 3; padding: 0 1; border-top: solid $primary; }
    Status { height: 1; padding: 0 1; }
    ModalScreen { align: center middle; }
    #dialog { width: 80; height: auto; border: thick $warning; background: $surface;
              padding: 1 2; }
    .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "send('acknowledge')", "Ack"),
        Binding("s", "send('pause_audio')", "Audio pause"),
        Binding("p", "send('pause')", "Pause"),
        Binding("r", "send('resume')", "Resume"),
        Binding("x", "stop", "Stop"),
        Binding("b", "blood_flow", "Blood flow"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "leave", "Leave"),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
    ]

    def __init__(
        self,
        feed: Feed,
        *,
        read_only: bool = False,
        flash: bool = True,
        bell: bool = True,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.read_only = read_only
        self.flash = flash
        self.ring = bell
        self.refresh_s = refresh_s
        self.tick = 0
        self.note: str | None = (
            "read-only: a finished session from the journal" if read_only else None
        )
        #: why the operator left (None: the run ended, or the app crashed)
        self.left: str | None = None

    def compose(self) -> ComposeResult:
        yield RunHeader()
        with Horizontal(id="middle"):
            yield Values()
            yield Alarms()
        yield Trends()
        yield EventLog()
        yield Status()
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        if not self.read_only:
            self.set_interval(self.refresh_s, self.on_tick)

    def on_tick(self) -> None:
        self.tick += 1
        self.redraw()
        view = self.feed.latest
        if (
            self.ring
            and view is not None
            and self.tick % BELL_TICKS == 0
            and view.t_ms >= view.audio_paused_until_ms
            and any(a.priority == "high" and not a.acknowledged for a in view.alarms)
        ):
            self.bell()

    def redraw(self) -> None:
        feed = self.feed
        self.query_one(RunHeader).show(feed)
        self.query_one(Values).show(feed)
        self.query_one(Alarms).show(feed, self.tick, self.flash)
        self.query_one(Trends).show(feed)
        self.query_one(EventLog).show(feed)
        note = self.note
        if feed.ended and not self.read_only:
            note = "the run has ended: Q leaves the console (summary and report follow)"
        self.query_one(Status).show(feed, note)

    # -- keys ------------------------------------------------------------------------------
    def _refuse_read_only(self) -> bool:
        if self.read_only:
            self.note = "read-only: a finished session takes no request"
            self.redraw()
        return self.read_only

    def _answered(self, answer: Answer) -> None:
        self.note = None
        self.redraw()

    def action_send(self, trigger: str, value: float | None = None) -> None:
        if self._refuse_read_only():
            return
        self.note = None
        self.feed.send(trigger, value, done=self._answered)
        self.redraw()

    def action_stop(self) -> None:
        if self._refuse_read_only():
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_send("stop")
            else:
                self.note = "stop cancelled"
                self.redraw()

        self.push_screen(Confirm("Stop the treatment and rinse the blood back?"), answered)

    def action_blood_flow(self) -> None:
        if self._refuse_read_only():
            return
        view = self.feed.latest
        if view is None:
            return
        low, high = blood_flow_bounds(self.feed.rig)

        def answered(value: float | None) -> None:
            if value is None:
                self.note = "blood flow unchanged"
                self.redraw()
            else:
                self.action_send("set_blood_flow", value)

        self.push_screen(AskFlow(view.prescription.blood_flow_ml_min, low, high), answered)

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_leave(self) -> None:
        if not self.feed.ended and not self.read_only:
            self.left = "the operator left the console"
        self.exit()

    def action_interrupt(self) -> None:
        """As Ctrl-C at `alsctl run`: the run's own handler makes the rig safe and ends it
        (in raw mode the terminal sends the key, not the signal)."""
        if self.read_only or self.feed.ended:
            self.exit()
            return
        signal.raise_signal(signal.SIGINT)
