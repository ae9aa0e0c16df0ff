"""`alsctl monitor`: the rigs on a broker, for a person at a terminal.

A table (one row per rig) on a terminal, or a line per change otherwise. Built only from
what any dashboard gets: retained status, state and active alarms for a rig already
running, then telemetry, alarms and events as they come. Events carry journal numbers, so a
copy delivered twice (QoS 1 after an outage) is shown once.
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

from controller.mqtt.broker import Broker
from controller.mqtt.models import ROOT
from controller.progress import clock

REDRAW_S = 0.25
BACKOFF_MAX_S = 5.0


@dataclass(slots=True)
class RigView:
    rig_id: str
    status: str = "?"
    phase: str = "?"
    t_ms: int = 0
    values: dict[str, float] = field(default_factory=dict)
    alarms: list[str] = field(default_factory=list)
    last: str = ""
    seen_id: int = 0
    telemetry_at: float | None = None


def _signed(x: float) -> str:
    return f"{x:+.0f}"


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
            return []
        if kind == "state":
            return self._state(rig, body)
        if kind == "alarms/active":
            rig.alarms = [
                f"{a['alarm']} ({a['priority']}{', ack' if a['acknowledged'] else ''})"
                for a in body["alarms"]
            ]
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
        rig.alarms = [a["alarm"] for a in body["alarms"]]
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
        if kind == "alarms":
            return f"alarm {body['kind']} {body['alarm']} ({body['priority']}) {body['detail']}"
        b = body["body"]
        if body["kind"] == "transition":
            return f"{b['source']} -> {b['dest']} ({b['cause']})"
        if body["kind"] == "operator":
            return f"request {b['request']} by {b['cause']}: {b['result']}"
        if body["kind"] == "command":  # a flood comes as one count per second
            count = f" x{b['count']}" if b.get("count") else ""
            return f"command {b['command']}{count}: {b['result']}"
        return f"{body['kind']} {json.dumps(b)[:80]}"

    def table(self, now: float) -> Table:
        t = Table(title=f"alsctl monitor  {time.strftime('%H:%M:%S')}")
        for col in ("rig", "status", "phase", "rig time", "blood", "return", "MAP"):
            t.add_column(col)
        for col in ("exchanged", "processed", "balance", "alarms", "last event"):
            t.add_column(col)
        for r in sorted(self.rigs.values(), key=lambda r: r.rig_id):
            v = r.values
            stale = r.telemetry_at is not None and now - r.telemetry_at > 5
            t.add_row(
                r.rig_id,
                r.status,
                r.phase,
                clock(r.t_ms) + (" (stale)" if stale else ""),
                f"{v['blood']:.0f}" if "blood" in v else "",
                f"{v['ret']:.0f}" if "ret" in v else "",
                f"{v['map']:.0f}" if "map" in v else "",
                f"{v['exchanged']:.0f} mL" if "exchanged" in v else "",
                f"{v['processed']:.0f} mL" if "processed" in v else "",
                f"{_signed(v['balance'])} mL" if "balance" in v else "",
                ", ".join(r.alarms),
                r.last[:60],
            )
        return t


def subscriptions(rig: str | None) -> list[str]:
    who = rig or "+"
    return [
        f"{ROOT}/{who}/{what}"
        for what in ("status", "state", "telemetry", "alarms", "alarms/active", "events")
    ]


async def monitor(broker: Broker, rig: str | None, out: TextIO, *, live: bool) -> None:
    """Runs until interrupted; reconnects (with backoff) whenever the broker goes away."""
    board = Board()
    view = Live(console=Console(file=out), auto_refresh=False) if live else None

    def show(lines: list[str]) -> None:
        if view is None:
            for line in lines:
                print(line, file=out, flush=True)

    backoff = 0.2
    with view or contextlib.nullcontext():
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
                    drawn = 0.0
                    async for message in client.messages:
                        now = time.time()
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        show(board.apply(message.topic.value, payload, now))
                        if view is not None and now - drawn >= REDRAW_S:
                            view.update(board.table(now), refresh=True)
                            drawn = now
            except aiomqtt.MqttError as exc:
                show([f"# broker {broker.where}: {exc}; retrying"])
            await asyncio.sleep(backoff)  # wall time: a person is waiting, not a rig
            backoff = min(2 * backoff, BACKOFF_MAX_S)
