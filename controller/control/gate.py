"""The pre-start gate at `ready` (docs/spec.md 5.3): the checklist and the patient's MAP, and
an override that restricts the prescription. A start held at `ready` is judged again when it
comes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.control.events import Occurred
from controller.control.summary import stop_record
from controller.fsm.machine import IllegalRequest
from controller.rig import Sample
from controller.safety import gate

if TYPE_CHECKING:
    from controller.control.loop import Controller


def judge(c: Controller, sample: Sample) -> gate.GateResult:
    """The checklist and this sample's MAP against starting."""
    reading = sample.sensors["map"]
    return gate.evaluate(
        c.rx,
        c.gate_answers,
        reading.value if reading.valid else None,
        c.rig.alarms.map_low_mmhg,
    )


def gate_still_passes(c: Controller, sample: Sample) -> None:
    """A start held at `ready` may come long after the pre-start checks: the MAP and the
    alarms are judged again, now, and a start they would refuse is refused."""
    result = judge(c, sample)
    present = c.safety.alarms.conditions_present()
    reasons = result.reasons if not result.allowed else []
    if present:
        reasons = [*reasons, "alarm conditions present: " + ", ".join(present)]
    if reasons:
        raise IllegalRequest("cannot start: " + "; ".join(reasons))


async def pre_start(c: Controller) -> bool:
    """The pre-start gate at `ready`; False (and the run ends) when refused."""
    sample = await c.step()
    reading = sample.sensors["map"]
    result = judge(c, sample)
    c.gate_result = result
    answers = c.gate_answers.checklist.model_dump() if c.gate_answers else None
    c.emit(
        Occurred(
            sample.t_ms,
            "pre_start",
            {
                **result.as_event(),
                "checklist": answers,
                "map_mmhg": round(reading.value, 1) if reading.valid else None,
            },
        )
    )
    if not result.allowed:
        why = "start refused: " + "; ".join(result.reasons)
        await c.machine.end(cause=why)
        c.accounting.run.stop = stop_record(c, f"pre-start gate: {why}", "ready")
        return False
    if result.override is not None:
        c.rx = c.safety.rx = c.machine.rx = result.prescription
        o = result.override
        c.override_note = (
            f"override by {o.clinician} ({o.reason}); consent confirmed; "
            f"mode {c.rx.mode}, blood {c.rx.blood_flow_ml_min:g} mL/min"
        )
    return True
