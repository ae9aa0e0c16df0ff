"""`alsctl monitor`: the rigs on a broker, for a person at a terminal.

A table (one row per rig) on a terminal, or a line per change otherwise. Built only from
what any dashboard gets: retained status, state and active alarms for a rig already
running, then telemetry, alarms and events as they come. Events carry journal numbers, so a
copy delivered twice (QoS 1 after an outage) is shown once.

The screen is redrawn on its own timer, not when a message comes: a rig that falls silent
is exactly the one that sends nothing, and it must turn `stale` (no telemetry for
`STALE_S`, docs/mqtt.md) or `offline` (its retained status, set by the broker from the
controller's last will) on the screen all the same. A login the broker refuses ends the
monitor with that reason: retrying a wrong password forever shows nothing to anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiomqtt
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controller.errors import AlsError
from controller.mqtt.broker import Broker, login_refused
from controller.mqtt.models import ROOT
from controller.progress import clock
from controller.words import alarm_words, event_words

REDRAW_S = 0.25
BACKOFF_MAX_S = 5.0
#: A rig online whose telemetry is older than this is shown stale (docs/mqtt.md)
STALE_S = 5.0
#: IEC 60601-1-8 colours by priority, as the console's
COLOURS = {"high": "red", "medium": "yellow", "low": "cyan"}
RANK = {"high": 0, "medium": 1, "low": 2}


class LoginRefused(AlsError):
    """The broker refused the monitor's user: a wrong password or a user it does not know."""

    exit_code = 2


@dataclass(slots=True)
class RigView:
    rig_id: str
    status: str = "?"
    phase: str = "?"
    t_ms: int = 0
    values: dict[str, float] = field(default_factory=dict)
    #: the active alarms: (id, priority, acknowledged), highest priority first
    alarms: list[tuple[str, str, bool]] = field(default_factory=list)
    last: str = ""
    seen_id: int = 0
    telemetry_at: float | None = None
    #: shown stale (line mode tells the change once)
    stale: bool = False


def _signed(x: float) -> str:
    return f"{x:+.0f}"


def _ordered(alarms: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    found = [(a["alarm"], a["priority"], bool(a.get("acknowledged"))) for a in alarms]
    return sorted(found, key=lambda a: RANK.get(a[1], 3))


class Board:
    """What the monitor knows of every rig; `apply` returns the lines a change is worth."""

    def __init__(self) -> None:
        self.rigs: dict[str, RigView] = {}

    def apply(self, topic: str, payload: bytes, now: float) -> list[str]:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != ROOT:
            return []
        rig = self.rigs.setdefault(parts[1], RigView(parts[1]))
        kind = "/".join(parts[2:])
        if kind == "status":
            status = payload.decode(errors="replace")
            changed = status != rig.status
            rig.status = status
            if status == "online":
                rig.seen_id = 0  # a new run may start a new journal: its numbers start over
            return [f"{rig.rig_id} {status}"] if changed else []
        try:
            return self._apply(rig, kind, json.loads(payload), now)
        except (ValueError, KeyError, TypeError) as exc:  # one odd message, not the end
            return [f"{rig.rig_id} {kind}: unreadable ({exc!r:.60})"]

    @staticmethod
    def status(rig: RigView, now: float) -> str:
        """online, stale (online, but no telemetry for `STALE_S`), offline, or `?`."""
        if rig.status == "online" and (
            rig.telemetry_at is not None and now - rig.telemetry_at > STALE_S
        ):
            return "stale"
        return rig.status

    def tick(self, now: float) -> list[str]:
        """The rigs that turned stale since the last tick (nothing else changes with time)."""
        lines = []
        for rig in self.rigs.values():
            stale = self.status(rig, now) == "stale"
            if stale and not rig.stale:
                assert rig.telemetry_at is not None
                lines.append(f"{rig.rig_id} stale: no telemetry for {now - rig.telemetry_at:.0f} s")
            rig.stale = stale
        return lines

    def _apply(self, rig: RigView, kind: str, body: dict[str, Any], now: float) -> list[str]:
        if kind == "telemetry":
            rig.t_ms = body["t_ms"]
            rig.telemetry_at = now
            rig.values.update(
                blood=body["flow"]["blood"],
                access=body["pressure"]["access"],
                ret=body["pressure"]["return"],
                map=body["map"],
            )
            if rig.stale:
                rig.stale = False
                return [f"{rig.rig_id} telemetry again"]
            return []
        if kind == "state":
            return self._state(rig, body)
        if kind == "alarms/active":
            rig.alarms = _ordered(body["alarms"])
            return []
        if kind in ("alarms", "events"):
            if body["id"] <= rig.seen_id:
                return []  # a copy (QoS 1 replays after an outage)
            rig.seen_id = body["id"]
            line = self._event(kind, body)
            if body.get("replayed"):  # an earlier run's, published by this start
                line += f" (replayed, session {body['session']})"
            rig.last = line
            return [f"{rig.rig_id} {clock(body['t_ms'])} {line}"]
        return []

    @staticmethod
    def _state(rig: RigView, body: dict[str, Any]) -> list[str]:
        v = body["volumes"]
        rig.t_ms = body["t_ms"]
        rig.values.update(
            exchanged=v["exchanged_ml"],
            processed=v["processed_ml"],
            balance=v["fluid_balance_ml"],
        )
        rig.alarms = _ordered(body["alarms"])
        first = rig.phase == "?"
        rig.phase = body["phase"]
        if not first:
            return []  # later changes are shown by their transition events
        return [
            f"{rig.rig_id} {clock(body['t_ms'])} {rig.phase}: exchanged {v['exchanged_ml']:.0f} mL,"
            f" processed {v['processed_ml']:.0f} mL, balance {_signed(v['fluid_balance_ml'])} mL"
        ]

    @staticmethod
    def _event(kind: str, body: dict[str, Any]) -> str:
        """An alarm or an event in words, as the console and the report say it."""
        if kind == "alarms":
            return "alarm " + event_words("alarm", body)
        b = body["body"]
        if body["kind"] == "command":  # a flood comes as one count per second
            count = f" x{b['count']}" if b.get("count") else ""
            return f"command {b['command']}{count}: {b['result']}"
        return event_words(body["kind"], b)

    def table(self, now: float) -> Table:
        t = Table(title=f"alsctl monitor  {time.strftime('%H:%M:%S')}")
        for col in ("rig", "status", "phase", "rig time", "blood", "return", "MAP"):
            t.add_column(col)
        for col in ("exchanged", "processed", "balance", "alarms", "last event"):
            t.add_column(col)
        # alarms first (the highest priority on top), then by name
        rows = sorted(
            self.rigs.values(),
            key=lambda r: (RANK.get(r.alarms[0][1], 3) if r.alarms else 4, r.rig_id),
        )
        for r in rows:
            v = r.values
            status = self.status(r, now)
            age = f" ({now - r.telemetry_at:.0f} s)" if status == "stale" and r.telemetry_at else ""
            t.add_row(
                r.rig_id,
                Text(status + age, "bold red" if status in ("offline", "stale") else "green"),
                r.phase,
                clock(r.t_ms),
                f"{v['blood']:.0f}" if "blood" in v else "",
                f"{v['ret']:.0f}" if "ret" in v else "",
                f"{v['map']:.0f}" if "map" in v else "",
                f"{v['exchanged']:.0f} mL" if "exchanged" in v else "",
                f"{v['processed']:.0f} mL" if "processed" in v else "",
                f"{_signed(v['balance'])} mL" if "balance" in v else "",
                _alarm_cell(r.alarms),
                r.last[:60],
            )
        return t


def _alarm_cell(alarms: list[tuple[str, str, bool]]) -> Text:
    cell = Text()
    for i, (alarm, priority, acknowledged) in enumerate(alarms):
        if i:
            cell.append("\n")
        colour = COLOURS.get(priority, "white")
        cell.append(
            f" {priority.upper()} ", f"bold white on {colour}" if not acknowledged else colour
        )
        cell.append(f" {alarm_words(alarm).what}" + (" (ack)" if acknowledged else ""))
    return cell


def subscriptions(rig: str | None) -> list[str]:
    who = rig or "+"
    return [
        f"{ROOT}/{who}/{what}"
        for what in ("status", "state", "telemetry", "alarms", "alarms/active", "events")
    ]


async def monitor(broker: Broker, rig: str | None, out: TextIO, *, live: bool) -> None:
    """Runs until interrupted; reconnects (with backoff) whenever the broker goes away, and
    gives up on a login the broker refuses (`LoginRefused`)."""
    board = Board()
    view = Live(console=Console(file=out), auto_refresh=False) if live else None

    def show(lines: list[str]) -> None:
        if view is None:
            for line in lines:
                print(line, file=out, flush=True)

    async def redraw() -> None:
        while True:  # wall time: a person is watching
            now = time.time()
            show(board.tick(now))
            if view is not None:
                view.update(board.table(now), refresh=True)
            await asyncio.sleep(REDRAW_S)

    backoff = 0.2
    with view or contextlib.nullcontext():
        drawing = asyncio.create_task(redraw())
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        broker.host,
                        broker.port,
                        username=broker.username,
                        password=broker.password,
                        tls_context=broker.tls,
                    ) as client:
                        backoff = 0.2
                        for t in subscriptions(rig):
                            await client.subscribe(t, qos=1)
                        show([f"# connected to {broker.where}"])
                        async for message in client.messages:
                            payload = message.payload if isinstance(message.payload, bytes) else b""
                            show(board.apply(message.topic.value, payload, time.time()))
                except aiomqtt.MqttCodeError as exc:
                    if login_refused(exc.rc):
                        raise LoginRefused(
                            f"the broker {broker.where} refused the login of"
                            f" {broker.username!r}: {exc}"
                        ) from None
                    show([f"# broker {broker.where}: {exc}; retrying"])
                except aiomqtt.MqttError as exc:
                    show([f"# broker {broker.where}: {exc}; retrying"])
                await asyncio.sleep(backoff)  # wall time: a person is waiting, not a rig
                backoff = min(2 * backoff, BACKOFF_MAX_S)
        finally:
            drawing.cancel()
            await asyncio.gather(drawing, return_exceptions=True)
