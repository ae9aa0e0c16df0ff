"""Short treatments over `serial`: the controller here, `alsctl firmware-sim` in another
process on a pty. The summary must agree with the same prescription on `sim`
(docs/architecture.md rule 2: a difference between backends is a bug).

Each mode runs on the lockstep clock (the controller grants the rig its time: as fast as the
link allows, and a busy machine changes nothing). One run stays on the wall clock, as a
bench rig runs: self-test and priming at 2x with a 1 s watchdog, 500 ms of wall time, held at
`ready` and ended there. (A whole exchange at 10x, 100 ms, and then at 5x, 200 ms, each met a
heartbeat loss in priming once, with two CPU-bound processes beside the suite.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig
from tests.integration.test_treatment import rx
from tests.sim_process import firmware_sim_process

#: the lockstep runs' pace only while no controller grants time
SPEED = 5.0
#: the wall-clock run's pace: a 1 s watchdog is 500 ms of wall time
WALL_SPEED = 2.0
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


@pytest.mark.parametrize("mode", sorted(SHORT_SERIAL))
async def test_a_short_treatment_over_serial_matches_the_simulated_one(
    mode: str, tmp_path: Path
) -> None:
    rig = load_rig("config/rigs/sim.yaml").model_copy(update={"heartbeat_timeout_ms": 1000})
    p = rx(mode, **SHORT_SERIAL[mode])
    reference, _ = await run_treatment(rig, p, RunOptions(gate=CLEAR))
    with firmware_sim_process(tmp_path, rig, p, speed=SPEED, clock="lockstep") as port:
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


def end_at_ready() -> dict[str, Any]:
    """Options that hold the run at `ready` and end it there, as an operator who primed the
    circuit and then decided not to treat."""
    refs: list[Any] = []

    def probe(view: Any) -> None:
        if view.phase == "ready" and len(refs) == 1:
            refs[0].request("end", "operator")
            refs.append(view.t_ms)

    return {"hold_at_ready": True, "on_controller": refs.append, "on_view": probe}


@pytest.mark.timeout(300)  # minutes of wall time by design
async def test_self_test_and_priming_on_the_wall_clock_match_the_simulated_ones(
    tmp_path: Path,
) -> None:
    # the longest watchdog the rig allows: 1 s of rig time is 500 ms of wall time at 2x
    rig = load_rig("config/rigs/sim.yaml").model_copy(update={"heartbeat_timeout_ms": 1000})
    p = rx("pe")
    reference, _ = await run_treatment(rig, p, RunOptions(gate=CLEAR, **end_at_ready()))
    with firmware_sim_process(tmp_path, rig, p, speed=WALL_SPEED, clock="wall") as port:
        summary, _ = await run_treatment(
            rig, p, RunOptions(gate=CLEAR, backend="serial", port=port, **end_at_ready())
        )
    assert summary.backend == "serial" and summary.outcome == "stopped", summary.error
    dests = [t.dest for t in summary.transitions]
    assert dests == [t.dest for t in reference.transitions]
    assert dests[-3:] == ["priming", "ready", "done"]
    assert not summary.alarms and summary.time_in_safe_s < 1.0  # no watchdog on the way
    got, want = summary.volumes, reference.volumes
    assert got.blood_ml == pytest.approx(want.blood_ml, rel=0.02)  # the prime volume
