"""The end-of-treatment summary: what `alsctl run --summary-json` writes.

A pydantic model so its JSON Schema (docs/schemas/summary.schema.json) is generated, not
typed, and a dashboard or a test can validate what it reads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.outcome import Outcome


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
    patient_plasma_ml: float = Field(
        0.0, description="plasma drawn from the patient while the loop ran (each mL once)"
    )
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


class StopOut(_Model):
    """Who ended a treatment early, why, and how far it had got."""

    by: str = Field(description="operator, console, mqtt <user>, pre-start gate ...")
    reason: str = Field(description="the reason given, or what refused the start")
    phase: str = Field(description="the phase it stopped (the interrupted one in alarm/pause)")
    t_s: float = Field(description="session time of the stop")
    progress: str = Field(description="how far toward the prescription, in words")
    done: float | None = Field(None, description="the phase's measure so far")
    target: float | None = Field(None, description="the prescription's target of that measure")
    unit: str = ""


class JournalOut(_Model):
    """A journal that could not be written for a while: when, why, where records went."""

    degraded_since_utc: str = Field(description="first failed commit of this run")
    unavailable: bool = Field(description="still unavailable when the summary was made")
    reason: str | None = Field(None, description="the last failure")
    recovered_utc: str | None = Field(None, description="when the kept records were merged")
    kept_events: int = Field(description="events kept outside the journal meanwhile")
    trends_dropped: int = Field(0, description="trend rows dropped (memory cap)")
    fallback_file: str | None = Field(None, description="where kept records wait to be merged")


class Summary(_Model):
    rig_id: str
    backend: str
    session: int | None = Field(None, description="the journal session (None: not journaled)")
    prescription: str
    mode: str
    outcome: Outcome = Field(
        description="completed, stopped, alarm, fault or interrupted (README: exit status)"
    )
    outcome_detail: str = Field(description="the outcome in one line, as a person reads it")
    final_state: str
    completed: bool = Field(description="outcome is `completed`: the prescription was done")
    stop: StopOut | None = Field(None, description="a stopped treatment: by whom, why, how far")
    resume: str | None = Field(
        None, description="an interrupted serial session: the command that continues it"
    )
    rig_time_s: float = Field(description="session time: rig time since the session started")
    phases_s: dict[str, float] = Field(description="time spent in each state, summed")
    volumes: VolumesOut
    alarms: list[AlarmOut]
    time_in_safe_s: float = Field(description="time the firmware spent in its safe state")
    blood_lost_ml: float = Field(
        0.0,
        description="estimated blood lost through a lost return line: what the encoders"
        " moved into it from the last trustworthy sample until the blood pump stopped",
    )
    blood_lost_truth_ml: float | None = Field(
        None, description="simulation only: what the simulated line really spilled"
    )
    transitions: list[TransitionOut]
    solutes: dict[str, SoluteOut] | None = Field(
        None, description="simulation only: each solute's plasma level and removal"
    )
    truth_ml: dict[str, float] | None = Field(
        None, description="simulation only: what each pump really moved since connection"
    )
    pre_start: GateOut | None = Field(None, description="the pre-start gate, once it ran")
    error: str | None = Field(None, description="why the run ended in `fault`, if it did")
    journal: JournalOut | None = Field(
        None, description="only when the journal could not be written at some point"
    )
