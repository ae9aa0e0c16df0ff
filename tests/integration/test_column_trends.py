"""A journaled DPMAS run on the simulated rig: each column's inlet and outlet concentrations
reach the trends, and the report plots single-pass removal per column against volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller import journal as jr
from controller import report
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.config.prescription import Prescription
from controller.journal import Journal

RIG = load_rig("config/rigs/sim.yaml")
TITLE = "Single-pass removal per column (simulation)"


def short_dpmas() -> Prescription:
    base = load_prescription("config/prescriptions/adsorption.yaml")
    data: dict[str, Any] = base.model_dump(exclude_none=True)
    data["purification"] = {"patient_plasma_ml": 600}
    return Prescription.model_validate(data)


async def test_trends_carry_each_column_inlet_and_outlet_and_the_report_plots_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    with Journal(path) as journal:
        summary, _ = await run_treatment(
            RIG, short_dpmas(), RunOptions(gate=CLEAR, journal=journal)
        )
    assert summary.completed, summary.error
    rec = jr.load(path, 1)
    rows = [body for _t, full, body in rec.trends if not full and "adsorber" in body]
    assert len(rows) > 60  # the loop ran for minutes, a row a second
    for row in rows:
        assert set(row["adsorber"]) == {"resin", "anion_resin"}
        for column in row["adsorber"].values():
            assert set(column) == {"il6", "bilirubin"}
            for c_in, c_out in column.values():
                assert 0 <= c_out <= c_in
    first, last = rows[0]["adsorber"]["anion_resin"], rows[-1]["adsorber"]["anion_resin"]
    # the anion-exchange column takes most of the bilirubin fresh, and less as it loads
    removal = [1 - out / inlet for inlet, out in (first["bilirubin"], last["bilirubin"])]
    assert removal[0] > 0.85 and removal[1] < removal[0]
    # what enters the second column is what left the first
    resin_out = rows[-1]["adsorber"]["resin"]["bilirubin"][1]
    assert last["bilirubin"][0] == resin_out
    plots = report.plots(rec)
    assert TITLE in plots
    assert f"alt='{TITLE}'" in report.render(rec)


def test_a_session_without_a_loop_has_no_column_plot() -> None:
    rows: list[dict[str, Any]] = [{"processed_ml": 0.0}]
    assert report.column_removal(rows) is None
