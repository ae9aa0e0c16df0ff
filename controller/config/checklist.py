"""The pre-start checklist and the informed-consent override (docs/spec.md 5.3), as config models.

`alsctl run --checklist FILE` reads a `GateAnswers`; `controller.safety.gate` judges it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.config._fields import OneLine, Strict, text


class Checklist(Strict):
    severe_active_bleeding: bool = Field(description="severe active bleeding?")
    uncontrolled_map_below_65: bool = Field(
        description="MAP below 65 mmHg that cannot be controlled?"
    )
    severe_allergy_with_shock: bool = Field(
        description="severe allergy to consumables or blood products with uncorrected shock?"
    )


#: Each checklist item as the operator is asked it.
QUESTIONS: dict[str, str] = {
    name: str(field.description) for name, field in Checklist.model_fields.items()
}


class Override(Strict):
    """Informed-consent override; every field is required and consent must be confirmed."""

    clinician: OneLine = text(..., 80, "the clinician who decided", min_length=2)
    reason: OneLine = text(..., 400, "why the patient is treated anyway", min_length=5)
    consent_confirmed: Literal[True]
    mode: Literal["pe", "adsorption"] = "pe"


class GateAnswers(Strict):
    """What `alsctl run --checklist FILE` reads."""

    checklist: Checklist
    override: Override | None = None
