"""Several `alsctl run` on one journal file at once (a bench with a few simulated rigs): no
migration race, no `database is locked`, every run completes in a session of its own.

8 processes here (a 2-core machine); `python -m bench.journal_size --concurrent 20` measures
20 (with its journal-size and report-memory figures).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from controller import journal as jr

ALSCTL = [sys.executable, "-m", "controller"]
PE = {
    "name": "PE short",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "pe",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 300,
}


def concurrent_runs(folder: Path, n: int) -> list[subprocess.CompletedProcess[str]]:
    """`n` runs started together on one new journal file; their results, in start order."""
    rx = folder / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE))
    common = ["--checklist", "clear", "--journal", str(folder / "shared.db")]
    procs = [
        subprocess.Popen(
            [*ALSCTL, "run", "--sim", "--plain", "--prescription", str(rx), *common,
             "--report", str(folder / f"{i}.html")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(n)
    ]  # fmt: skip
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_eight_runs_on_one_new_journal_all_complete_in_sessions_of_their_own(
    tmp_path: Path,
) -> None:
    done = concurrent_runs(tmp_path, 8)
    for run in done:
        assert run.returncode == 0, run.stdout[-500:] + run.stderr
        assert "outcome: completed" in run.stdout
        assert "locked" not in run.stderr and "already exists" not in run.stderr
    rows = jr.sessions(tmp_path / "shared.db")
    assert sorted(r.id for r in rows) == list(range(1, 9))
    assert all(r.status() == "completed" for r in rows)
    # each run's events are in its own session, numbered without a clash
    for row in rows:
        record = jr.load(tmp_path / "shared.db", row.id, trends=False)
        kinds = [e.body["dest"] for e in record.events if e.kind == "transition"]
        assert kinds[-2:] == ["rinse_back", "done"]
