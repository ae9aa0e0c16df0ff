"""The end-of-treatment summary: what `alsctl run --summary-json` writes.

A pydantic model so its JSON Schema (docs/schemas/summary.schema.json) is generated, not
typed, and a dashboard or a test can validate what it reads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransitionOut(_Model):
    t_s: float
    source: str
    dest: str
    trigger: str
    cause: str


class AlarmOut(_Model):
    t_s: float
    cause: str


class VolumesOut(_Model):
    """Encoder-integrated volumes from connection to the end, mL."""

    exchange_ml: float = Field(description="plasma exchanged (to waste and collected)")
    collected_ml: float = Field(description="plasma sent to the outer chamber")
    processed_plasma_ml: float = Field(description="plasma pumped through filter and adsorbers")
    passes: float = Field(description="processed plasma / plasma held in the bag")
    filtrate_ml: float
    substitution_ml: float
    replacement_ml: float
    return_ml: float
    plasma_ml: float
    blood_ml: float
    heparin_ml: float
    fluid_balance_ml: float = Field(description="into the patient minus out of the patient")


class SoluteOut(_Model):
    unit: str
    start: float
    end: float
    removal: float = Field(description="1 - end/start")


class GateOut(_Model):
    allowed: bool
    reasons: list[str] = Field(description="checklist answers and readings against starting")
    override: dict[str, str | bool] | None = Field(
        None, description="clinician, reason, consent, mode of an informed-consent override"
    )
    mode: str = Field(description="the mode treated (restricted by an override)")
    blood_flow_ml_min: float


class Summary(_Model):
    rig_id: str
    backend: str
    prescription: str
    mode: str
    final_state: str
    completed: bool = Field(description="the treatment reached `done` through rinse-back")
    rig_time_s: float
    phases_s: dict[str, float] = Field(description="time spent in each state, summed")
    volumes: VolumesOut
    alarms: list[AlarmOut]
    time_in_safe_s: float = Field(description="time the firmware spent in its safe state")
    transitions: list[TransitionOut]
    solutes: dict[str, SoluteOut] | None = Field(
        None, description="simulation only: each solute's plasma level and removal"
    )
    truth_ml: dict[str, float] | None = Field(
        None, description="simulation only: what each pump really moved since connection"
    )
    pre_start: GateOut | None = Field(None, description="the pre-start gate, once it ran")
    error: str | None = Field(None, description="why the run ended in `fault`, if it did")
