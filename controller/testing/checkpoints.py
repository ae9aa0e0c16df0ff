"""Treatments caught as they enter a phase, kept for every test of the process to start from.

Reaching the exchange of the shipped plasma exchange costs 5 minutes of rig time (self-test,
priming, connection: about 0.2 s of wall time); reaching the purification of the shipped
Li-ALS costs 2 h 44 min (about 17 s). A test that is about the purification starts there
instead, from the rig's own snapshot and the controller's checkpoint (`controller.app.midway`),
and only the first test of a process with that rig, prescription and checklist pays.
"""

from __future__ import annotations

from controller.app import RunOptions, midway
from controller.config.checklist import GateAnswers
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import PHASES
from controller.control.checkpoint import Midway

_CACHE: dict[tuple[str, str, str, str], Midway] = {}


async def caught_entering(
    rig: RigConfig, rx: Prescription, phase: str, gate: GateAnswers
) -> Midway:
    """The treatment of `rx` on `rig` as it entered `phase` (one of PHASES), from the
    start the first time, from memory after. Each start works on its own copy."""
    if phase not in PHASES:
        raise ValueError(f"a run starts from a treatment phase: one of {', '.join(PHASES)}")
    key = (rig.model_dump_json(), rx.model_dump_json(), gate.model_dump_json(), phase)
    caught = _CACHE.get(key)
    if caught is None:
        caught = await midway(rig, rx, phase, RunOptions(gate=gate))
        _CACHE[key] = caught
    return caught
