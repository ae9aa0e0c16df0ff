"""`alsctl run` as an operator types it: exit status, summary file, refusal of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

PE_SHORT = {
    "name": "PE short",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "pe",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 600,
}


def alsctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=120
    )


def test_run_completes_and_writes_the_summary(tmp_path: Path) -> None:
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    out = tmp_path / "out" / "summary.json"
    done = alsctl(
        "run", "--sim", "--plain", "--prescription", str(rx), "--summary-json", str(out),
        "--checklist", "config/checklists/clear.yaml", "--journal", str(tmp_path / "j.db"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "outcome: completed: exchanged 600 of 600 mL, blood rinsed back" in done.stdout
    assert "final state: done after " in done.stdout
    assert "exchange -> rinse_back" in done.stdout
    summary = json.loads(out.read_text())
    assert summary["outcome"] == "completed" and summary["completed"] is True
    assert summary["mode"] == "pe" and summary["stop"] is None
    assert abs(summary["volumes"]["exchange_ml"] - 600) < 1


def test_run_that_ends_in_alarm_exits_non_zero(tmp_path: Path) -> None:
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    done = alsctl(
        "run", "--sim", "--plain", "--prescription", str(rx),
        "--scenario", "config/scenarios/air_bubble.yaml",
        "--checklist", "config/checklists/clear.yaml", "--journal", str(tmp_path / "j.db"),
    )  # fmt: skip
    assert done.returncode == 4  # ended in alarm (README: exit status)
    assert "outcome: alarm: air_return in exchange" in done.stdout
    assert "final state: alarm after " in done.stdout


def test_a_bad_prescription_is_refused_before_anything_runs(tmp_path: Path) -> None:
    rx = tmp_path / "bad.yaml"
    rx.write_text(yaml.safe_dump({**PE_SHORT, "blood_flow_ml_min": 400}))
    done = alsctl("run", "--sim", "--prescription", str(rx), "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 2
    assert "blood_flow_ml_min: 400 -> " in done.stderr
    assert "alsctl run:" not in done.stdout


def test_without_a_checklist_an_unattended_run_is_refused(tmp_path: Path) -> None:
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    done = alsctl(
        "run", "--sim", "--plain", "--prescription", str(rx), "--journal", str(tmp_path / "j.db")
    )
    assert done.returncode == 3  # stopped, by the pre-start gate
    assert "start refused: pre-start checklist not answered" in done.stdout
    assert "outcome: stopped: by pre-start gate (start refused: " in done.stdout
