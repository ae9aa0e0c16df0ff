"""Short treatments over `serial`: the controller here, `alsctl firmware-sim` in another
process on a pty. The summary must agree with the same prescription on `sim`
(docs/architecture.md rule 2: a difference between backends is a bug).

Each mode runs on the lockstep clock (the controller grants the rig its time: as fast as the
link allows, and a busy machine changes nothing). One short exchange runs on the wall clock
at 5x, as a bench rig would, with a 1 s watchdog: 200 ms of wall time. (At 10x, 100 ms, a
priming once met a heartbeat loss with two CPU-bound processes beside the suite.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig
from tests.integration.test_treatment import rx
from tests.sim_process import firmware_sim_process

#: the wall-clock run's pace; the lockstep runs use it only while no controller grants time
SPEED = 5.0
LOOP_SHORT = {
    "exchange_volume_ml": 450,
    "collection_threshold_ml": 250,
    "purification": {"processed_plasma_ml": 1000},
}
SHORT_SERIAL = {
    "pe": {"exchange_volume_pv": None, "exchange_volume_ml": 300},
    "pe_adsorption": LOOP_SHORT,
    "pe_filtration": LOOP_SHORT,
    "li_als": {"exchange_volume_pv": None, **LOOP_SHORT},
    "adsorption": {"purification": {"processed_plasma_ml": 1000}},
}
#: short: about 10 min of rig time, two minutes of wall time at 5x
WALL_CLOCK_PE = rx("pe", exchange_volume_pv=None, exchange_volume_ml=100)


@pytest.mark.timeout(300)  # the wall-clock run: minutes of wall time by design
@pytest.mark.parametrize(
    ("mode", "clock"),
    [(mode, "lockstep") for mode in sorted(SHORT_SERIAL)] + [("pe_wall_clock", "wall")],
)
async def test_a_short_treatment_over_serial_matches_the_simulated_one(
    mode: str, clock: str, tmp_path: Path
) -> None:
    # the longest watchdog the rig allows: 1 s of rig time is 200 ms of wall time at 5x
    rig = load_rig("config/rigs/sim.yaml").model_copy(update={"heartbeat_timeout_ms": 1000})
    p = rx(mode, **SHORT_SERIAL[mode]) if clock == "lockstep" else WALL_CLOCK_PE
    reference, _ = await run_treatment(rig, p, RunOptions(gate=CLEAR))
    with firmware_sim_process(tmp_path, rig, p, speed=SPEED, clock=clock) as port:
        summary, _ = await run_treatment(
            rig, p, RunOptions(gate=CLEAR, backend="serial", port=port)
        )
    assert summary.backend == "serial"
    assert summary.completed, (summary.final_state, summary.error, summary.alarms)
    assert [t.dest for t in summary.transitions] == [t.dest for t in reference.transitions]
    got: dict[str, Any] = summary.volumes.model_dump()
    want: dict[str, Any] = reference.volumes.model_dump()
    assert got["exchange_ml"] == pytest.approx(want["exchange_ml"], abs=5)
    assert got["fluid_balance_ml"] == pytest.approx(want["fluid_balance_ml"], abs=5)
    assert got["processed_plasma_ml"] == pytest.approx(want["processed_plasma_ml"], rel=0.05, abs=5)
    assert summary.solutes is None  # the simulator's truth is not on the wire
