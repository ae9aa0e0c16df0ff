"""The report's plots: matplotlib PNGs, phases shaded on every time plot, legends beside them.

Every time plot shares one x axis (rig time, hours) and one plot area, so a pressure
excursion, an alarm and an operator action line up down the page; the phase shading and
the alarm limits the session ran with are drawn on each, and named in its legend.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, ever: reports are written by CLI runs and CI

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from controller.config.rig import AlarmLimits, RigConfig
from controller.journal import SessionRecord
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES

#: Every state a session spends time in, shaded on each time plot and named in its legend
PHASE_COLOURS = {
    "self_test": "#eceff4",
    "priming": "#e0f4f7",
    "ready": "#f3f3e6",
    "connecting": "#e8f0fe",
    "exchange": "#fff4d6",
    "exchange_collect": "#ffe8c2",
    "purification": "#e3f5e1",
    "rinse_back": "#f1e6fa",
    "paused": "#e4e4e4",
    "alarm": "#fde2e2",
    "fault": "#f7c6c6",
}
PRIORITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#1f77b4"}


def _hours(t_ms: float) -> float:
    return t_ms / 3.6e6


def phase_spans(record: SessionRecord) -> list[tuple[float, float, str]]:
    """(start h, end h, phase) spans from the transitions."""
    spans: list[tuple[float, float, str]] = []
    start, phase = 0.0, "idle"
    for e in record.events:
        if e.kind != "transition":
            continue
        spans.append((start, _hours(e.t_ms), phase))
        start, phase = _hours(e.t_ms), e.body["dest"]
    end = _hours(record.trends[-1][0]) if record.trends else start
    spans.append((start, max(start, end), phase))
    return [s for s in spans if s[2] in PHASE_COLOURS and s[1] > s[0]]


def _shade(ax: Axes, spans: list[tuple[float, float, str]]) -> None:
    for a, b, phase in spans:
        ax.axvspan(a, b, color=PHASE_COLOURS[phase], zorder=0, linewidth=0)


def _legend(ax: Axes, spans: list[tuple[float, float, str]], ncols: int = 1) -> None:
    """The traces and every phase shaded, beside the plot (never over a trace): a plot
    copied out of the page still says what its colours are."""
    handles, labels = ax.get_legend_handles_labels()
    for phase in dict.fromkeys(p for _a, _b, p in spans):
        handles.append(Patch(color=PHASE_COLOURS[phase], label=phase))
        labels.append(phase)
    if handles:
        ax.legend(
            handles,
            labels,
            fontsize=7,
            ncols=ncols,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            frameon=False,
        )


def _axes(height_in: float = 3.0) -> tuple[Any, Axes]:
    """A figure whose plot area sits at the same place in every plot, the legend to its
    right: time axes line up down the page, whatever each legend holds."""
    fig, ax = plt.subplots(figsize=(12, height_in))
    fig.subplots_adjust(left=0.07, right=0.76, bottom=0.5 / height_in, top=1 - 0.3 / height_in)
    return fig, ax


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _series(rows: list[dict[str, Any]], group: str, names: Iterable[str]) -> dict[str, list[float]]:
    return {n: [r[group][n] for r in rows] for n in names}


def alarm_limits(record: SessionRecord) -> AlarmLimits:
    """The alarm limits the session ran with (the rig file's, as journaled at its start)."""
    rig = record.snapshots.get("rig")
    return RigConfig.model_validate(rig).alarms if rig else AlarmLimits()


def _limit_line(ax: Axes, value: float, colour: Any, label: str) -> None:
    ax.axhline(value, color=colour, linestyle="--", linewidth=0.9, label=label)


def plots(record: SessionRecord) -> dict[str, str]:
    """Title -> base64 PNG, every time plot sharing the phase shading."""
    rows = [body for _t, full, body in record.trends if not full]
    times = [_hours(t) for t, full, _b in record.trends if not full]
    spans = phase_spans(record)
    lim = alarm_limits(record)
    out: dict[str, str] = {}

    def figure(title: str, ylabel: str) -> tuple[Any, Axes]:
        fig, ax = _axes()
        _shade(ax, spans)
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_xlabel("rig time (h)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, max(times[-1] if times else 0.0, 0.01))  # as the alarm timeline's
        return fig, ax

    groups = (
        ("Pressures", "mmHg", "pressure", PRESSURE_NAMES),
        ("Flows (encoders)", "mL/min (heparin mL/h)", "flow", PUMP_NAMES),
        ("Bag volumes (scales)", "mL", "bag", SCALE_NAMES),
    )
    for title, unit, group, names in groups:
        fig, ax = figure(title, unit)
        colour: dict[str, Any] = {}  # matplotlib's colour: a name or an RGB(A) tuple
        for name, values in _series(rows, group, names).items():
            (line,) = ax.plot(times, values, label=name, linewidth=1)
            colour[name] = line.get_color()
        if group == "pressure":
            _limit_line(ax, lim.access_low_mmhg, colour["access"], "access low limit")
            _limit_line(ax, lim.return_low_mmhg, colour["return"], "return low limit")
            _limit_line(ax, lim.return_high_mmhg, colour["return"], "return high limit")
        _legend(ax, spans, ncols=2)
        out[title] = _png(fig)

    fig, ax = figure("Separator TMP and adsorber pressure drop", "mmHg")
    p = _series(rows, "pressure", PRESSURE_NAMES)
    tmp = [
        (a + b) / 2 - c
        for a, b, c in zip(p["pre_separator"], p["return"], p["plasma"], strict=True)
    ]
    dp = [a - b for a, b in zip(p["pre_adsorber"], p["post_adsorber"], strict=True)]
    (t_line,) = ax.plot(times, tmp, label="separator TMP", linewidth=1)
    (d_line,) = ax.plot(times, dp, label="adsorber dP", linewidth=1)
    _limit_line(ax, lim.separator_tmp_high_mmhg, t_line.get_color(), "TMP high limit")
    _limit_line(ax, lim.adsorber_dp_high_mmhg, d_line.get_color(), "adsorber dP limit")
    _legend(ax, spans)
    out["Separator TMP and adsorber pressure drop"] = _png(fig)

    fig, ax = figure("Mean arterial pressure", "mmHg")
    ax.plot(times, [r["map"] for r in rows], color="#b22222", linewidth=1.2, label="MAP")
    _limit_line(ax, lim.map_low_mmhg, "#b22222", f"MAP low limit {lim.map_low_mmhg:g} mmHg")
    _legend(ax, spans)
    out["Mean arterial pressure"] = _png(fig)

    if rows and "solute" in rows[0]:
        fig, ax = figure("Plasma solutes (simulation), % of start", "%")
        for name in rows[0]["solute"]:
            first = rows[0]["solute"][name] or 1.0
            # a gap where a row has no solutes (matplotlib draws None and NaN alike: not at all)
            level = [100 * r["solute"][name] / first if "solute" in r else math.nan for r in rows]
            ax.plot(times, level, label=name)
        _legend(ax, spans)
        out["Plasma solutes (simulation)"] = _png(fig)

    column_plot = column_removal(rows)
    if column_plot is not None:
        out["Single-pass removal per column (simulation)"] = column_plot
    out["Alarm timeline and operator actions"] = _alarm_timeline(
        record, spans, times[-1] if times else 0.0
    )
    return out


def column_removal(rows: list[dict[str, Any]]) -> str | None:
    """Each column's single-pass removal, 1 - outlet/inlet, against the loop's volume.

    Against processed volume, not time: a column saturates by what passed through it (and
    what it bound), which is how adsorber curves are published (BR-350: >90 % fresh, 40 %
    after 7 L). None when no row carries column data (no loop, or not simulated).
    """
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        for column, solutes in r.get("adsorber", {}).items():
            for solute, (c_in, c_out) in solutes.items():
                if c_in > 0:
                    xs, ys = lines.setdefault(f"{column}: {solute}", ([], []))
                    xs.append(r["processed_ml"] / 1000.0)
                    ys.append(100.0 * (1.0 - c_out / c_in))
    if not lines:
        return None
    fig, ax = _axes()
    ax.set_title("Single-pass removal per column (simulation)", loc="left", fontsize=11)
    ax.set_xlabel("plasma processed through the loop (L)")
    ax.set_ylabel("removal, % of inlet")
    ax.grid(True, alpha=0.3)
    for label, (xs, ys) in sorted(lines.items()):
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def _alarm_timeline(
    record: SessionRecord, spans: list[tuple[float, float, str]], end: float
) -> str:
    """Each alarm as a bar from raised to cleared, coloured by priority, and every operator
    action (console, MQTT, automatic) as a marked line across it: what was done when."""
    fig, ax = _axes(2.6)
    _shade(ax, spans)
    ax.set_title("Alarm timeline and operator actions", loc="left", fontsize=11)
    ax.set_xlabel("rig time (h)")
    open_: dict[str, tuple[float, str]] = {}
    bars: list[tuple[str, float, float, str]] = []
    for e in record.events:
        if e.kind != "alarm":
            continue
        alarm = e.body["alarm"]
        if e.body["kind"] == "raised":
            open_[alarm] = (_hours(e.t_ms), e.body["priority"])
        elif e.body["kind"] == "cleared" and alarm in open_:
            start, prio = open_.pop(alarm)
            bars.append((alarm, start, _hours(e.t_ms), prio))
    bars += [(a, s, end, p) for a, (s, p) in open_.items()]
    names = sorted({b[0] for b in bars})
    for alarm, start, stop, prio in bars:
        width = max(stop - start, end / 500 if end else 0.001)
        ax.barh(names.index(alarm), width, left=start, color=PRIORITY_COLOURS.get(prio, "grey"))
    for prio in dict.fromkeys(b[3] for b in bars):
        ax.barh(0, 0, color=PRIORITY_COLOURS.get(prio, "grey"), label=f"{prio} priority alarm")
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=7)
    if not names:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no alarm", transform=ax.transAxes, ha="center", va="center")
    operations = [e for e in record.events if e.kind == "operator"]
    for i, e in enumerate(operations):
        x = _hours(e.t_ms)
        ok = e.body.get("result") == "done"
        ax.axvline(
            x,
            color="#333333" if ok else "#b22222",
            linestyle=":",
            linewidth=0.9,
            label=None if i else "operator action (red: refused)",
        )
        ax.annotate(
            str(e.body.get("request", "")),
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2 - 9 * (i % 3)),
            textcoords="offset points",
            fontsize=6,
            va="top",
        )
    ax.set_xlim(0, max(end, 0.01))
    _legend(ax, spans)
    return _png(fig)
