"""What `alsctl run` shows while a treatment runs: a live panel on a terminal, lines otherwise.

Called every cycle, so it does nothing most of the time: plain output prints transitions and
one line per 15 min of rig time; the live panel redraws at most once per minute of rig time.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from controller.control.events import Edge, View
from controller.journal import Committed
from controller.summary import Summary

PLAIN_EVERY_MS = 15 * 60 * 1000
#: Journal events shown as they are, besides transitions and alarms
SHOWN = frozenset({"operator", "resumed", "error", "interrupted", "auto_resume_held", "note"})
LIVE_EVERY_MS = 60 * 1000


def clock(t_ms: float) -> str:
    seconds = int(t_ms // 1000)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress(Edge):
    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live: Live | None = (
            Live(console=Console(file=out), auto_refresh=False) if live else None
        )
        self._next_ms = 0
        self._lock = threading.Lock()  # journaled events are printed from its writer thread

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    def _print(self, line: str) -> None:
        with self._lock:
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=self.out, flush=True)

    def committed(self, events: list[Committed]) -> None:
        """Transitions and alarms once the journal holds them (never shown before), with
        their journal number so a line on the screen can be found in the file."""
        for e in events:
            b = e.body
            if e.kind == "transition":
                what = f"{b['source']} -> {b['dest']}  ({b['cause']})"
            elif e.kind == "alarm" and b["kind"] in ("raised", "cleared", "acknowledged"):
                what = f"ALARM {b['kind']} {b['alarm']} ({b['priority']})"
            elif e.kind in (
                "operator",
                "resumed",
                "error",
                "interrupted",
                "auto_resume_held",
                "note",
            ):
                what = f"{e.kind}: " + ", ".join(
                    f"{k} {v}" for k, v in b.items() if k != "traceback"
                )
            else:
                continue
            self._print(f"{clock(e.t_ms)}  {what}  [#{e.id}]")

    def view(self, view: View) -> None:
        if view.t_ms < self._next_ms:
            return
        status = view
        alarms = view.alarm_ids()
        v = view.volumes
        if self.live is not None:
            self._next_ms = status.t_ms + LIVE_EVERY_MS
            table = Table(title=f"{status.phase}  rig time {clock(status.t_ms)}")
            for col in ("exchanged", "processed", "filtrate", "balance", "MAP", "alarms"):
                table.add_column(col)
            table.add_row(
                f"{v.exchanged_ml:.0f} mL",
                f"{v.processed_ml:.0f} mL",
                f"{v.pumped_ml['filtrate']:.0f} mL",
                f"{v.fluid_balance_ml:+.0f} mL",
                f"{status.sample.sensors['map'].value:.0f} mmHg",
                ", ".join(alarms) or "none",
            )
            self.live.update(table, refresh=True)
        else:
            self._next_ms = status.t_ms + PLAIN_EVERY_MS
            self._print(
                f"{clock(status.t_ms)}  {status.phase:<16} exchanged {v.exchanged_ml:6.0f} mL"
                f"  processed {v.processed_ml:6.0f} mL  balance {v.fluid_balance_ml:+5.0f} mL"
                f"  MAP {status.sample.sensors['map'].value:3.0f}"
                + (f"  ALARM {', '.join(alarms)}" if alarms else "")
            )

    @staticmethod
    def summary_lines(s: Summary) -> list[str]:
        v = s.volumes
        lines = [
            f"outcome: {s.outcome}: {s.outcome_detail}",
            f"final state: {s.final_state} after {clock(s.rig_time_s * 1000)} of rig time",
            "phases: " + ", ".join(f"{k} {clock(sec * 1000)}" for k, sec in s.phases_s.items()),
            f"exchange {v.exchange_ml:.0f} mL; processed plasma {v.processed_plasma_ml:.0f} mL"
            f" ({v.passes:.1f} passes); filtrate {v.filtrate_ml:.0f} mL;"
            f" fluid balance {v.fluid_balance_ml:+.0f} mL",
            f"alarms: {len(s.alarms)}; time in safe state {s.time_in_safe_s:.0f} s",
        ]
        if s.blood_lost_ml or s.blood_lost_truth_ml:
            truth = (
                f" (simulator: {s.blood_lost_truth_ml:.1f} mL)"
                if s.blood_lost_truth_ml is not None
                else ""
            )
            lines.append(f"blood lost through the return line: {s.blood_lost_ml:.1f} mL{truth}")
        if s.solutes:
            lines.append(
                "removal: "
                + ", ".join(
                    f"{n} {o.start:g} -> {o.end:.0f} {o.unit} ({o.removal:.0%})"
                    for n, o in s.solutes.items()
                )
            )
        if s.error:
            lines.append(f"error: {s.error}")
        if s.journal is not None:
            j = s.journal
            if j.unavailable:
                where = j.fallback_file or "memory only (no file could be written)"
                lines.append(
                    f"JOURNAL UNAVAILABLE since {j.degraded_since_utc} ({j.reason}):"
                    f" {j.kept_events} events kept in {where}; merged at the next start"
                )
            else:
                lines.append(
                    f"journal was unavailable from {j.degraded_since_utc} to {j.recovered_utc};"
                    f" {j.kept_events} events kept meanwhile are merged"
                )
        return lines
