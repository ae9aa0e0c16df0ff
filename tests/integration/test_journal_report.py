"""A journaled run as an operator starts it, then `alsctl sessions` and `alsctl report`, the
report rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib import image

from controller import journal as jr
from tests.browser import dump_dom, screenshot
from tests.integration.test_cli_run import PE_SHORT, alsctl

PE_AIR = {**PE_SHORT, "exchange_volume_ml": 900}  # still exchanging when the bubble comes


@pytest.fixture(scope="module")
def journaled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One PE run with an air bubble at 20 min, resumed automatically once clear."""
    tmp = tmp_path_factory.mktemp("journaled")
    rx = tmp / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_AIR))
    done = alsctl(
        "run", "--sim", "--plain", "--prescription", str(rx),
        "--scenario", "config/scenarios/air_bubble.yaml", "--auto-resume", "5",
        "--checklist", "config/checklists/clear.yaml",
        "--journal", str(tmp / "journal.db"), "--summary-json", str(tmp / "summary.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp, done.stdout


def test_the_journal_holds_the_run_as_the_summary_tells_it(journaled: tuple[Path, str]) -> None:
    tmp, stdout = journaled
    summary = json.loads((tmp / "summary.json").read_text())
    rec = jr.load(tmp / "journal.db", 1)
    assert (rec.row.state, rec.row.completed, rec.row.mode) == ("done", True, "pe")
    transitions = [e.body["dest"] for e in rec.events if e.kind == "transition"]
    assert transitions == [t["dest"] for t in summary["transitions"]]
    assert set(rec.snapshots) >= {"rig", "prescription", "prescription_effective", "summary"}
    assert rec.snapshots["summary"]["volumes"] == summary["volumes"]
    alarms = [(e.body["kind"], e.body["alarm"]) for e in rec.events if e.kind == "alarm"]
    assert ("raised", "air_return") in alarms and ("acknowledged", "air_return") in alarms
    assert any(e.kind == "operator" and e.body["request"] == "resume" for e in rec.events)
    assert any(e.kind == "pre_start" and e.body["allowed"] for e in rec.events)
    # every line shown on the console was committed first, under the number it shows
    shown = {int(n) for n in re.findall(r"\[#(\d+)\]", stdout)}
    assert shown and shown <= {e.id for e in rec.events}
    assert "report: " in stdout and "journal: " in stdout


def test_trends_at_1_hz_and_full_rate_around_the_alarm(journaled: tuple[Path, str]) -> None:
    tmp, _ = journaled
    rec = jr.load(tmp / "journal.db", 1)
    slow = [t for t, full, _ in rec.trends if not full]
    fast = [t for t, full, _ in rec.trends if full]
    assert np.diff(slow).max() <= 1100  # one a second of rig time, start to end
    assert slow[-1] >= rec.row.rig_time_ms - 1100
    raised = next(e.t_ms for e in rec.events if e.kind == "alarm" and e.body["kind"] == "raised")
    assert min(fast) <= raised - 29_000 and max(fast) >= raised + 29_000  # 30 s either side
    assert np.diff(fast).max() <= 100 + 1  # every sample in the window
    row = rec.trends[-1][2]
    assert set(row["solute"]) == {"il6", "bilirubin"} and row["pressure"]["return"] > 0


def test_sessions_lists_it_and_the_report_renders_in_chromium(
    journaled: tuple[Path, str], tmp_path: Path
) -> None:
    tmp, _ = journaled
    db = str(tmp / "journal.db")
    listed = alsctl("sessions", "--journal", db)
    assert listed.returncode == 0
    assert re.search(
        r"^\s+1\s+\S+\s+sim-01\s+pe\s+completed\s+done\s+\d:\d\d:\d\d\s+PE short$",
        listed.stdout,
        re.M,
    )
    assert "resume:" not in listed.stdout  # a simulated session ends with its process
    out = tmp_path / "report.html"
    made = alsctl("report", "last", "--journal", db, "--out", str(out))
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: no network
    dom = dump_dom(out)
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None
    assert 'data-plots="7"' in body.group(0) and 'data-plots-loaded="7"' in body.group(0)
    for title in (
        "Pressures",
        "Separator TMP and adsorber pressure drop",
        "Alarm timeline and operator actions",
        "Plasma solutes",
        "Pre-start checklist",
    ):
        assert title in dom
    # the alarm limits drawn, said in words under the plots
    assert "access low -250, return 10 to 300, separator TMP 60, adsorber dP 150" in dom
    # every phase the session went through is in the legend, and only those
    legend = re.search(r"<p class=\"legend\">(.*?)</p>", dom)
    assert legend is not None
    shown = re.findall(r"<span[^>]*>([a-z_]+)</span>", legend.group(1))
    assert shown == [
        "self_test",
        "priming",
        "ready",
        "connecting",
        "exchange",
        "alarm",
        "rinse_back",
    ]
    # planned against actual, phase by phase
    plan = dom[dom.index("Planned and actual") : dom.index("<h2>Plots")]
    assert re.search(
        r"<td>exchange</td><td>0:30:00</td><td>900 mL plasma to waste</td>"
        r"<td>0:3\d:\d\d</td><td>exchanged (89\d|90\d) mL</td>",
        plan,
    ), plan
    assert "<td>alarm</td><td>-</td><td>not planned</td>" in plan
    # heparin and replacement totals; the prescription as a table
    assert re.search(r"heparin given</td><td>\d+\.\d mL", dom)
    assert re.search(r"replacement fluid given</td><td>(89\d|90\d) mL", dom)
    assert "<td>patient.weight_kg</td><td>70" in dom
    assert "<td>exchange_volume_ml</td><td>900" in dom
    assert "Outcome: completed</b>: exchanged 900 of 900 mL, blood rinsed back" in dom
    assert "severe active bleeding?</td><td>no" in dom  # the answers, one by one
    assert re.search(r"MAP at the gate</td><td>\d+ mmHg", dom)
    png = screenshot(out, tmp_path / "report.png")
    pixels = image.imread(png)
    assert pixels.shape[0] > 3000
    # the plots drew: many distinct colours, not a blank or an error page
    colours = {tuple(p) for p in (pixels[::7, ::7, :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 200


def test_a_report_for_a_missing_session_is_a_clear_error(journaled: tuple[Path, str]) -> None:
    tmp, _ = journaled
    done = alsctl("report", "9", "--journal", str(tmp / "journal.db"))
    assert done.returncode == 2
    assert "no session 9" in done.stderr


def test_the_file_is_intact(journaled: tuple[Path, str]) -> None:
    tmp, _ = journaled
    conn = sqlite3.connect(tmp / "journal.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
