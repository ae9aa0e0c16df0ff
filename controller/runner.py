"""One treatment from config to summary: the HAL chosen by name, the controller, the results.

Shared by `alsctl run`, the tests and the benches so they all run the same thing. In
simulation the summary also gets the simulator's truth (solute removal, what each pump really
moved since connection); that is read here, at the edge, never by the controller.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

from controller.app import Controller, Status
from controller.config.prescription import Prescription
from controller.config.rig import PUMP_NAMES, RigConfig
from controller.config.scenario import Scenario
from controller.errors import HalError
from controller.fsm.machine import TransitionRecord
from controller.hal import open_hal
from controller.hal.base import Hal
from controller.safety.gate import Checklist, GateAnswers
from controller.summary import SoluteOut, Summary

#: The checklist with every answer "no": for simulated runs and tests that are not about it.
CLEAR = GateAnswers(
    checklist=Checklist(
        severe_active_bleeding=False,
        uncontrolled_map_below_65=False,
        severe_allergy_with_shock=False,
    )
)


@dataclass(slots=True)
class RunOptions:
    backend: str = "sim"
    port: str | None = None
    scenario: Scenario | None = None
    #: simulation pace: None = as fast as possible, N = N x real time
    speed: float | None = None
    on_status: Callable[[Status], None] | None = None
    on_transition: Callable[[TransitionRecord], None] | None = None
    max_rig_s: float | None = None
    #: called with the controller before it runs (an operator console, MQTT, a test)
    on_controller: Callable[[Controller], None] | None = None
    #: the pre-start checklist (and any override); None = not answered: start refused
    gate: GateAnswers | None = None
    #: unattended: acknowledge and resume an alarm once its conditions are gone this long
    auto_resume_s: float | None = None


def build_hal(rig: RigConfig, rx: Prescription, opts: RunOptions) -> Hal:
    if opts.backend == "sim":
        return open_hal("sim", rig, prescription=rx, scenario=opts.scenario, speed=opts.speed)
    if opts.backend == "serial":
        if opts.scenario is not None:
            raise HalError("a scenario drives the simulated firmware: give it to firmware-sim")
        return open_hal("serial", rig, port=opts.port)
    return open_hal(opts.backend, rig)  # unknown names fail with the list of backends


async def run_treatment(
    rig: RigConfig, rx: Prescription, opts: RunOptions | None = None
) -> tuple[Summary, Controller]:
    opts = opts or RunOptions()
    hal = build_hal(rig, rx, opts)
    physics = getattr(hal, "physics", None)
    at_connection: list[float] = []

    def transition(record: TransitionRecord) -> None:
        if record.dest == "connecting" and physics is not None:
            at_connection[:] = physics.pumped_ml
        if opts.on_transition is not None:
            opts.on_transition(record)

    controller = Controller(
        hal,
        rig,
        rx,
        on_status=opts.on_status,
        on_transition=transition,
        max_rig_s=opts.max_rig_s,
        gate_answers=opts.gate,
        auto_resume_s=opts.auto_resume_s,
    )
    if opts.on_controller is not None:
        opts.on_controller(controller)
    # what exists now lives as long as the run: frozen, a full garbage collection never
    # walks it, so it cannot pause the control loop past the firmware's watchdog
    gc.collect()
    gc.freeze()
    try:
        async with hal:
            summary = await controller.run()
    finally:
        gc.unfreeze()
    if physics is not None:
        summary = summary.model_copy(update=_simulation_truth(physics, at_connection))
    return summary, controller


def _simulation_truth(physics, at_connection: list[float]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    start = at_connection or [0.0] * len(PUMP_NAMES)
    solutes = {
        s.name: SoluteOut(
            unit=s.unit,
            start=round(s.initial, 3),
            end=round(physics.concentration(s.name), 3),
            removal=round(physics.removal_fraction(s.name), 4),
        )
        for s in physics.params.solutes
    }
    truth = {
        name: round(now - before, 3)
        for name, now, before in zip(PUMP_NAMES, physics.pumped_ml, start, strict=True)
    }
    return {"solutes": solutes, "truth_ml": truth}
