"""The journal's full-rate windows are bounded: a session with many alarms keeps at most
FULL_RATE_BUDGET rows at full rate, and says where it stopped keeping them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import journal as jr
from controller import recorder
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig, load_scenario
from controller.journal import Journal
from tests.integration.test_treatment import rx


async def test_full_rate_rows_stop_at_the_budget_and_the_journal_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "FULL_RATE_BUDGET", 700)  # one window is about 600 rows
    db = tmp_path / "j.db"
    with Journal(db) as journal:
        summary, _ = await run_treatment(
            load_rig("config/rigs/sim.yaml"),
            rx("pe", exchange_volume_pv=None, exchange_volume_ml=1500),  # faults at 15, 40 min
            RunOptions(
                gate=CLEAR,
                journal=journal,
                scenario=load_scenario("config/scenarios/bad_day.yaml"),
                auto_resume_s=5.0,
            ),
        )
    assert len(summary.alarms) >= 2  # more windows than the budget holds
    record = jr.load(db, 1)
    full = [t for t, is_full, _row in record.trends if is_full]
    assert 0 < len(full) <= 700
    notes = [e for e in record.events if e.kind == "note"]
    assert len(notes) == 1 and "full-rate trends end here" in notes[0].body["note"]
