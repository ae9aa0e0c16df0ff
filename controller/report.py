"""One self-contained HTML file per session: what an operator shows after a run.

Everything is read from the journal, so a report can be written for a session that crashed,
was resumed, or ran on another machine. Plots are matplotlib PNGs inlined as data URIs and
the page has no external reference of any kind: it opens from a USB stick on a PC with no
network. Phases are shaded on every time plot so a reader sees at once which phase a
pressure excursion or an alarm belongs to.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from collections.abc import Iterable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, ever: reports are written by CLI runs and CI

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from controller.config.checklist import QUESTIONS
from controller.config.prescription import Prescription
from controller.config.rig import AlarmLimits, RigConfig
from controller.fsm.plan import PRIME_FLOW_ML_MIN, plan
from controller.journal import SessionRecord
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES
from controller.words import event_words

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


def _phases(record: SessionRecord) -> list[tuple[float, float, str]]:
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


def _limits(record: SessionRecord) -> AlarmLimits:
    """The alarm limits the session ran with (the rig file's, as journaled at its start)."""
    rig = record.snapshots.get("rig")
    return RigConfig.model_validate(rig).alarms if rig else AlarmLimits()


def _limit_line(ax: Axes, value: float, colour: Any, label: str) -> None:
    ax.axhline(value, color=colour, linestyle="--", linewidth=0.9, label=label)


def plots(record: SessionRecord) -> dict[str, str]:
    """Title -> base64 PNG, every time plot sharing the phase shading."""
    rows = [body for _t, full, body in record.trends if not full]
    times = [_hours(t) for t, full, _b in record.trends if not full]
    spans = _phases(record)
    lim = _limits(record)
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

    column_plot = _column_removal(rows)
    if column_plot is not None:
        out["Single-pass removal per column (simulation)"] = column_plot
    out["Alarm timeline and operator actions"] = _alarm_timeline(
        record, spans, times[-1] if times else 0.0
    )
    return out


def _column_removal(rows: list[dict[str, Any]]) -> str | None:
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


def _table(rows: Iterable[Iterable[Any]], head: Iterable[str]) -> str:
    names = [str(c) for c in head]
    h = "".join(f"<th>{html.escape(c)}</th>" for c in names)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    thead = f"<thead><tr>{h}</tr></thead>" if any(names) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _clock(t_ms: float) -> str:
    s = int(t_ms // 1000)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#1a7f37}.bad{color:#b22222}img.plot{width:100%}
.legend span{display:inline-block;padding:0 .5em;margin-right:.3em;font-size:.8em}
pre{background:#f7f7f7;padding:.6em;font-size:.8em;overflow:auto}
"""
# The page tells a headless browser (and a test) that every plot decoded.
SCRIPT = """
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img.plot')];
  document.body.dataset.plots = imgs.length;
  document.body.dataset.plotsLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
});
"""


def render(record: SessionRecord) -> str:
    row = record.row
    summary = record.snapshots.get("summary") or {}
    rx = record.snapshots.get("prescription_effective") or record.snapshots.get("prescription")
    status = row.status()
    state_class = "ok" if status == "completed" else "bad"
    detail = row.detail or summary.get("outcome_detail") or ""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>alsctl session {row.id}</title><style>{CSS}</style>",
        f"<script>{SCRIPT}</script></head><body>",
        f"<h1>alsctl session {row.id}: {html.escape(row.prescription)} ({row.mode})</h1>",
        "<p>Bench and simulation report. Not for clinical use.</p>",
        _table(
            [
                ("rig", f"{row.rig_id} ({row.backend})"),
                ("started (UTC)", row.started_utc),
                ("ended (UTC)", row.ended_utc or "not ended (interrupted?)"),
                ("outcome", status),
                ("final state", row.state.rsplit(".", 1)[-1]),
                ("rig time", _clock(row.rig_time_ms)),
            ],
            ("", ""),
        ),
        f"<p class='outcome {state_class}'><b>Outcome: {html.escape(status)}</b>"
        + (f": {html.escape(detail)}" if detail else "")
        + (
            f"<br>Resume with <code>{html.escape(summary['resume'])}</code>"
            if summary.get("resume") and status == "interrupted"
            else ""
        )
        + "</p>",
    ]
    if summary:
        v = summary["volumes"]
        parts += [
            "<h2>Summary</h2>",
            _table(
                [
                    ("exchange", f"{v['exchange_ml']:.0f} mL"),
                    ("collected", f"{v['collected_ml']:.0f} mL"),
                    (
                        "processed plasma",
                        f"{v['processed_plasma_ml']:.0f} mL ({v['passes']} passes)",
                    ),
                    ("filtrate", f"{v['filtrate_ml']:.0f} mL"),
                    ("replacement fluid given", f"{v['replacement_ml']:.0f} mL"),
                    ("substitution fluid given", f"{v['substitution_ml']:.0f} mL"),
                    ("heparin given", f"{v['heparin_ml']:.1f} mL"),
                    ("fluid balance", f"{v['fluid_balance_ml']:+.0f} mL"),
                    ("alarms raised", len(summary["alarms"])),
                    ("time in safe state", f"{summary['time_in_safe_s']:.0f} s"),
                    (
                        "blood lost (estimate)",
                        f"{summary.get('blood_lost_ml', 0.0):.1f} mL"
                        + (
                            f" (simulator: {summary['blood_lost_truth_ml']:.1f} mL)"
                            if summary.get("blood_lost_truth_ml") is not None
                            else ""
                        ),
                    ),
                    *[
                        (
                            f"{n} removal",
                            f"{o['start']:g} -> {o['end']:.1f} {o['unit']}"
                            f" ({100 * o['removal']:.0f} %)",
                        )
                        for n, o in (summary.get("solutes") or {}).items()
                    ],
                    *([("error", summary["error"])] if summary.get("error") else []),
                    *(
                        [("journal", _journal_note(summary["journal"]))]
                        if summary.get("journal")
                        else []
                    ),
                ],
                ("", ""),
            ),
            "<p>Time in each state: "
            + ", ".join(f"{k} {_clock(s * 1000)}" for k, s in summary["phases_s"].items())
            + "</p>",
        ]
    if rx:
        parts += ["<h2>Planned and actual, phase by phase</h2>", _planned_actual(record, rx)]
    parts.append("<h2>Plots</h2><p class='legend'>Phases: ")
    shaded = dict.fromkeys(p for _a, _b, p in _phases(record))
    parts += [f"<span style='background:{PHASE_COLOURS[p]}'>{p}</span>" for p in shaded]
    lim = _limits(record)
    parts.append(
        "</p><p class='limits'>Dashed lines: the alarm limits this session ran with:"
        f" access low {lim.access_low_mmhg:g}, return {lim.return_low_mmhg:g}"
        f" to {lim.return_high_mmhg:g}, separator TMP {lim.separator_tmp_high_mmhg:g},"
        f" adsorber dP {lim.adsorber_dp_high_mmhg:g}, MAP low {lim.map_low_mmhg:g} mmHg."
        " Dotted lines on the alarm timeline: operator actions.</p>"
    )
    for title, png in plots(record).items():
        # the title is in the picture: a plot copied out of the page still says what it is
        parts.append(
            f"<img class='plot' alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
        )
    gate = [e for e in record.events if e.kind == "pre_start"]
    parts.append("<h2>Pre-start checklist</h2>")
    if gate:
        g = gate[-1].body
        answers = g.get("checklist")
        asked = (
            [(QUESTIONS.get(k, k), "yes" if v else "no") for k, v in answers.items()]
            if answers
            else [("checklist", "not answered")]
        )
        parts.append(
            _table(
                [
                    *asked,
                    (
                        "MAP at the gate",
                        "no valid reading"
                        if g.get("map_mmhg") is None
                        else f"{g['map_mmhg']:.0f} mmHg",
                    ),
                    ("start allowed", "yes" if g["allowed"] else "no"),
                    ("reasons", "; ".join(g["reasons"]) or "none"),
                    ("mode / blood flow", f"{g['mode']} / {g['blood_flow_ml_min']:g} mL/min"),
                    (
                        "override",
                        "none"
                        if not g["override"]
                        else ", ".join(f"{k}: {val}" for k, val in g["override"].items()),
                    ),
                ],
                ("", ""),
            )
        )
    else:
        parts.append("<p>The gate did not run in this session.</p>")
    parts += [
        "<h2>Transitions</h2>",
        _table(
            [
                (_clock(e.t_ms), e.body["source"], e.body["dest"], e.body["cause"])
                for e in record.events
                if e.kind == "transition"
            ],
            ("rig time", "from", "to", "cause"),
        ),
        "<h2>Alarms and operator actions</h2>",
        _table(
            [
                (_clock(e.t_ms), e.kind, event_words(e.kind, e.body))
                for e in record.events
                if e.kind not in ("transition", "pre_start")
            ],
            ("rig time", "kind", "what"),
        ),
        "<h2>Prescription</h2>",
        _table(_flat(rx or {}), ("field", "value")),
        "</body></html>",
    ]
    return "".join(parts)


def _journal_note(j: dict[str, Any]) -> str:
    """The journal's own trouble, for a reader judging what the report may lack."""
    if j["unavailable"]:
        return (
            f"unavailable since {j['degraded_since_utc']} ({j['reason']}); "
            f"{j['kept_events']} events were kept in {j['fallback_file'] or 'memory'}"
        )
    dropped = f", {j['trends_dropped']} trend rows dropped" if j["trends_dropped"] else ""
    return (
        f"degraded from {j['degraded_since_utc']} to {j['recovered_utc']}: "
        f"{j['kept_events']} events kept meanwhile and merged{dropped}"
    )


def _flat(body: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A prescription's fields as rows (`patient.weight_kg`), in the file's order."""
    rows: list[tuple[str, str]] = []
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat(value, f"{name}.")
        elif isinstance(value, list):
            rows.append(
                (name, ", ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value))
            )
        else:
            rows.append((name, str(value)))
    return rows


def _actual(record: SessionRecord) -> dict[str, tuple[float, float, float]]:
    """Per phase: (seconds spent, plasma exchanged, plasma processed) in it, from the
    transitions and the 1 Hz trend rows (what the encoders counted while in that phase)."""
    spent: dict[str, float] = {}
    for a, b, phase in _phases(record):
        spent[phase] = spent.get(phase, 0.0) + (b - a) * 3600.0
    moved: dict[str, list[float]] = {}
    rows = [body for _t, full, body in record.trends if not full]
    for before, row in itertools.pairwise(rows):
        m = moved.setdefault(row["phase"], [0.0, 0.0])
        m[0] += max(0.0, row["exchanged_ml"] - before["exchanged_ml"])
        m[1] += max(0.0, row["processed_ml"] - before["processed_ml"])
    out: dict[str, tuple[float, float, float]] = {}
    for p in dict.fromkeys([*spent, *moved]):
        exchanged, processed = moved.get(p, [0.0, 0.0])
        out[p] = (spent.get(p, 0.0), exchanged, processed)
    return out


def _planned_actual(record: SessionRecord, rx_body: dict[str, Any]) -> str:
    """The plan an operator read before starting (the prescription as it ended, on the rig
    it ran on) beside what each phase took and moved. A held phase (paused, alarm) has no
    plan: its time is the gap between the two."""
    rx = Prescription.model_validate(rx_body)
    rig_body = record.snapshots.get("rig")
    rig = RigConfig.model_validate(rig_body) if rig_body else None
    planned = plan(
        rx,
        blood_max_ml_min=rig.pumps.blood.max_rate if rig else PRIME_FLOW_ML_MIN,
        loop_max_ml_min=rig.pumps.loop.max_rate if rig else math.inf,
    )
    actual = _actual(record)
    rows = []
    for step in planned.phases:
        spent, exchanged, processed = actual.pop(step.name, (0.0, 0.0, 0.0))
        moved = [f"exchanged {exchanged:.0f} mL"] if exchanged >= 1 else []
        moved += [f"processed {processed:.0f} mL"] if processed >= 1 else []
        rows.append(
            (
                step.name,
                _clock(step.duration_s * 1000),
                step.note,
                _clock(spent * 1000) if spent else "not reached",
                ", ".join(moved) or "-",
            )
        )
    for name, (spent, exchanged, _processed) in actual.items():
        if spent >= 1:
            moved = [f"exchanged {exchanged:.0f} mL"] if exchanged >= 1 else []
            rows.append((name, "-", "not planned", _clock(spent * 1000), ", ".join(moved) or "-"))
    total = sum(s for s, _e, _p in _actual(record).values())
    rows.append(("total", _clock(planned.total_s * 1000), "", _clock(total * 1000), ""))
    return _table(rows, ("phase", "planned time", "planned", "actual time", "actual"))
