"""The pre-start gate (docs/spec.md 5.3, consensus section 5: relative contraindications).

Before `connecting`, the operator answers a checklist and the patient's current MAP is read.
Any "yes", or a MAP below its limit, refuses the start with the reason. The consensus allows
treating a critically ill patient after informed consent in a relatively safe mode: an
override names the clinician, the reason, confirms consent, and restricts the prescription
(blood flow <= 100 mL/min, mode `pe` or `adsorption`), which is validated again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller.config.checklist import QUESTIONS, Checklist, GateAnswers, Override
from controller.config.loading import issues_from
from controller.config.prescription import Prescription

OVERRIDE_BLOOD_MAX_ML_MIN = 100.0
__all__ = [
    "QUESTIONS",
    "Checklist",
    "GateAnswers",
    "GateResult",
    "Override",
    "evaluate",
    "restrict",
]


@dataclass(frozen=True, slots=True)
class GateResult:
    allowed: bool
    reasons: list[str]
    prescription: Prescription
    override: Override | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any], prescription: Prescription) -> GateResult:
        """The gate a journaled session passed (a resumed run does not ask again)."""
        override = event.get("override")
        return cls(
            allowed=bool(event["allowed"]),
            reasons=list(event["reasons"]),
            prescription=prescription,
            override=Override.model_validate(override) if override else None,
        )

    def as_event(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reasons": self.reasons,
            "override": self.override.model_dump() if self.override else None,
            "mode": self.prescription.mode,
            "blood_flow_ml_min": self.prescription.blood_flow_ml_min,
        }


def restrict(rx: Prescription, override: Override) -> Prescription:
    """The prescription an override allows: safer mode, blood flow capped; re-validated."""
    data = rx.model_dump(exclude_none=True, by_alias=True)
    data["mode"] = override.mode
    data["blood_flow_ml_min"] = min(rx.blood_flow_ml_min, OVERRIDE_BLOOD_MAX_ML_MIN)
    if override.mode == "pe":
        for key in ("loop_flow_multiple", "filtrate_ml_min", "adsorbers", "purification"):
            data.pop(key, None)
        data["net_fluid_removal_ml_h"] = 0
    else:
        data.pop("exchange_volume_ml", None)
        data.pop("exchange_volume_pv", None)
        data.pop("filtrate_ml_min", None)
    data["name"] = f"{rx.name} (restricted by override)"[:80]
    return Prescription.model_validate(data)


def evaluate(
    rx: Prescription,
    answers: GateAnswers | None,
    map_mmhg: float | None,
    map_low_mmhg: float,
) -> GateResult:
    """Allowed as prescribed, allowed restricted under an override, or refused with reasons."""
    if answers is None:
        return GateResult(False, ["pre-start checklist not answered"], rx)
    reasons = [QUESTIONS[name] for name, yes in answers.checklist.model_dump().items() if yes]
    if map_mmhg is None:
        reasons.append("no valid MAP reading")
    elif map_mmhg < map_low_mmhg:
        reasons.append(f"MAP {map_mmhg:.0f} mmHg is below {map_low_mmhg:g} mmHg")
    if not reasons:
        return GateResult(True, [], rx)
    if answers.override is None:
        return GateResult(False, reasons, rx)
    try:
        restricted = restrict(rx, answers.override)
    except ValidationError as exc:
        lines = [str(i) for i in issues_from(Prescription, exc)]
        return GateResult(
            False, [*reasons, "restricted prescription invalid: " + "; ".join(lines)], rx
        )
    return GateResult(True, reasons, restricted, answers.override)
