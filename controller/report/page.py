"""The report's page: one self-contained HTML file, every table and the plots inlined.

No external reference of any kind: the page opens from a USB stick on a PC with no network.
A small script tells a headless browser (and the test) that every plot decoded.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Iterable
from typing import Any

from controller.config.checklist import QUESTIONS
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.fsm.plan import PRIME_FLOW_ML_MIN, plan
from controller.journal import SessionRecord
from controller.report.plots import PHASE_COLOURS, alarm_limits, phase_spans, plots
from controller.words import event_words


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
    shaded = dict.fromkeys(p for _a, _b, p in phase_spans(record))
    parts += [f"<span style='background:{PHASE_COLOURS[p]}'>{p}</span>" for p in shaded]
    lim = alarm_limits(record)
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
    for a, b, phase in phase_spans(record):
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
