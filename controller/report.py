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
import json
import math
from collections.abc import Iterable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, ever: reports are written by CLI runs and CI

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from controller.config.checklist import QUESTIONS
from controller.journal import SessionRecord
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES
from controller.words import event_words

PHASE_COLOURS = {
    "connecting": "#e8f0fe",
    "exchange": "#fff4d6",
    "exchange_collect": "#ffe8c2",
    "purification": "#e3f5e1",
    "rinse_back": "#f1e6fa",
    "paused": "#eeeeee",
    "alarm": "#fde2e2",
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


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _series(rows: list[dict[str, Any]], group: str, names: Iterable[str]) -> dict[str, list[float]]:
    return {n: [r[group][n] for r in rows] for n in names}


def plots(record: SessionRecord) -> dict[str, str]:
    """Title -> base64 PNG, every time plot sharing the phase shading."""
    rows = [body for _t, full, body in record.trends if not full]
    times = [_hours(t) for t, full, _b in record.trends if not full]
    spans = _phases(record)
    out: dict[str, str] = {}

    def figure(title: str, ylabel: str) -> tuple[Any, Axes]:
        fig, ax = plt.subplots(figsize=(10, 3.0))
        _shade(ax, spans)
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_xlabel("rig time (h)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        return fig, ax

    groups = (
        ("Pressures", "mmHg", "pressure", PRESSURE_NAMES),
        ("Flows (encoders)", "mL/min (heparin mL/h)", "flow", PUMP_NAMES),
        ("Bag volumes (scales)", "mL", "bag", SCALE_NAMES),
    )
    for title, unit, group, names in groups:
        fig, ax = figure(title, unit)
        for name, values in _series(rows, group, names).items():
            ax.plot(times, values, label=name, linewidth=1)
        ax.legend(fontsize=7, ncols=4, loc="upper right")
        out[title] = _png(fig)

    fig, ax = figure("Mean arterial pressure", "mmHg")
    ax.plot(times, [r["map"] for r in rows], color="#b22222", linewidth=1.2, label="MAP")
    ax.axhline(65, color="#b22222", linestyle="--", linewidth=0.8, label="65 mmHg")
    ax.legend(fontsize=7, loc="upper right")
    out["Mean arterial pressure"] = _png(fig)

    if rows and "solute" in rows[0]:
        fig, ax = figure("Plasma solutes (simulation), % of start", "%")
        for name in rows[0]["solute"]:
            first = rows[0]["solute"][name] or 1.0
            # a gap where a row has no solutes (matplotlib draws None and NaN alike: not at all)
            level = [100 * r["solute"][name] / first if "solute" in r else math.nan for r in rows]
            ax.plot(times, level, label=name)
        ax.legend(fontsize=7, loc="upper right")
        out["Plasma solutes (simulation)"] = _png(fig)

    column_plot = _column_removal(rows)
    if column_plot is not None:
        out["Single-pass removal per column (simulation)"] = column_plot
    out["Alarm timeline"] = _alarm_timeline(record, spans, times[-1] if times else 0.0)
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
    fig, ax = plt.subplots(figsize=(10, 3.0))
    ax.set_title("Single-pass removal per column (simulation)", loc="left", fontsize=11)
    ax.set_xlabel("plasma processed through the loop (L)")
    ax.set_ylabel("removal, % of inlet")
    ax.grid(True, alpha=0.3)
    for label, (xs, ys) in sorted(lines.items()):
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncols=3, loc="upper right")
    return _png(fig)


def _alarm_timeline(
    record: SessionRecord, spans: list[tuple[float, float, str]], end: float
) -> str:
    fig, ax = plt.subplots(figsize=(10, 2.4))
    _shade(ax, spans)
    ax.set_title("Alarm timeline", loc="left", fontsize=11)
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
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if not names:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no alarm", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(0, max(end, 0.01))
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
    parts.append("<h2>Plots</h2><p class='legend'>Phases: ")
    parts += [f"<span style='background:{c}'>{p}</span>" for p, c in PHASE_COLOURS.items()]
    parts.append("</p>")
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
        f"<pre>{html.escape(json.dumps(rx, indent=2))}</pre>",
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
