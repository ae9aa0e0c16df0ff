"""The patient's fluid balance against what the prescription allows, every cycle of a run.

Watched on every view rather than read at the end, because a balance that wandered 200 mL
off during an alarm and came back by the end is exactly the failure a test must catch.
"""

from __future__ import annotations

from controller.control.accounting import ACCOUNTED
from controller.control.events import View
from controller.control.loop import Controller
from firmware_sim.physics import Physics, patient_plasma_ml


class BalanceWatch:
    """How far the balance is from its prescribed trajectory (`controller.safety.balance`):
    by the simulator's truth when the rig is simulated in this process, else by the
    controller's encoder account."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        physics = getattr(controller.hal, "physics", None)
        self._physics = physics if isinstance(physics, Physics) else None
        self.basis = "simulator's truth" if self._physics is not None else "encoders"
        self._pv0 = (
            patient_plasma_ml(self._physics.params.weight_kg, self._physics.params.hematocrit)
            if self._physics is not None
            else 0.0
        )
        #: the latest and the farthest (signed) off, mL, and when the farthest was (rig ms)
        self.now_ml = 0.0
        self.worst_ml = 0.0
        self.worst_t_ms: int | None = None

    def observe(self, view: View) -> None:
        if view.phase not in ACCOUNTED:
            return  # nothing has moved into or out of the patient before connection
        c = self._c
        allowed = c.accounting.allowed_balance_ml(c.rx)
        if self._physics is not None:
            v = self._physics.volumes
            gained = v["patient"] - self._pv0 + v["spill"]  # spilled blood: blood_lost_ml
        else:
            gained = view.volumes.fluid_balance_ml
        self.now_ml = off = gained - allowed
        if self.worst_t_ms is None or abs(off) > abs(self.worst_ml):
            self.worst_ml = off
            self.worst_t_ms = view.t_ms
