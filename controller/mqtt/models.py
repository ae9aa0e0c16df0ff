"""Everything that goes over MQTT, as pydantic models.

The AsyncAPI file (docs/asyncapi.yaml) takes its schemas from these models, so a dashboard
author reads the same types the rig publishes. Names are SPEC.md's: pumps, sensors, phases.

Alarms and events carry their journal number (`id`): it only ever increases within a
journal file, so a subscriber can put them in order and drop a copy it has already seen
(QoS 1 is at-least-once: an event whose acknowledgement was lost in an outage comes again).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from controller.config._fields import OneLine, text
from controller.config.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES

ROOT = "als"


def topic(rig_id: str, *parts: str) -> str:
    """`als/<rig_id>/...`: the tree a rig's broker user may write (config/mosquitto/acl)."""
    return "/".join((ROOT, rig_id, *parts))


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _named(name: str, names: tuple[str, ...], unit: str, doc: str) -> type[BaseModel]:
    """A model with one float field per name, so the schema lists every sensor by name."""
    model = create_model(  # type: ignore[call-overload]
        name,
        __base__=Payload,
        __doc__=doc,
        **{n: (float, Field(description=unit)) for n in names},
    )
    return model  # type: ignore[no-any-return]


Pressures = _named("Pressures", PRESSURE_NAMES, "mmHg", "Every pressure sensor, zeroed at rest.")
Flows = _named("Flows", PUMP_NAMES, "mL/min (heparin mL/h)", "Each pump's encoder flow.")
Bags = _named("Bags", SCALE_NAMES, "mL", "Each scale, as the volume it weighs.")


class Telemetry(Payload):
    """`als/<rig>/telemetry`, QoS 0, at `mqtt.telemetry_hz` of rig time."""

    rig_id: str
    t_ms: int = Field(description="rig time of the sample (ms since the firmware started)")
    phase: str
    safe: bool = Field(description="the firmware is in its safe state")
    pressure: Pressures  # type: ignore[valid-type]
    flow: Flows  # type: ignore[valid-type]
    bag: Bags  # type: ignore[valid-type]
    map: float = Field(description="mean arterial pressure, mmHg")
    plasma_temp: float = Field(description="plasma temperature, degrees C")
    exchanged_ml: float
    processed_ml: float
    balance_ml: float = Field(description="fluid balance: into the patient minus out, mL")
    solute: dict[str, float] | None = Field(
        None, description="simulated rig only: the patient's solute levels"
    )
    dropped: int = Field(
        description="telemetry messages this rig dropped so far (a full queue, a broker outage)"
    )
    stamp: float = Field(description="wall time (Unix s) the sample reached the publisher")


class PrescriptionBrief(Payload):
    name: str | None
    mode: str
    blood_flow_ml_min: float
    plasma_flow_ml_min: float
    exchange_ml: float = Field(description="plasma to exchange (0: no exchange)")
    loop_flow_ml_min: float
    purification_min: float | None
    processed_plasma_ml: float | None


class VolumesNow(Payload):
    exchanged_ml: float
    collected_ml: float
    processed_ml: float
    filtrate_ml: float
    substitution_ml: float
    heparin_ml: float
    fluid_balance_ml: float


class ActiveAlarm(Payload):
    alarm: str = Field(description="hazard id from SPEC 5.2, e.g. air_return")
    priority: Literal["high", "medium", "low"]
    raised_ms: int
    latched: bool = Field(description="stays until acknowledged, even once the cause is gone")
    acknowledged: bool
    present: bool = Field(description="its condition still holds")
    detail: str


class ActiveAlarms(Payload):
    """`als/<rig>/alarms/active`, retained: what a dashboard joining now must know."""

    rig_id: str
    t_ms: int
    audio_paused: bool
    alarms: list[ActiveAlarm]


class State(Payload):
    """`als/<rig>/state`, retained: refreshed with telemetry and on every event."""

    rig_id: str
    session: int | None = Field(description="journal session of this treatment")
    t_ms: int
    phase: str
    interrupted: str | None = Field(description="in alarm: the phase it interrupted")
    firmware: Literal["running", "safe"]
    safe_reason: str
    prescription: PrescriptionBrief
    volumes: VolumesNow
    alarms: list[ActiveAlarm]
    allowed: list[str] = Field(description="operator requests the state machine accepts now")
    commands: list[str] = Field(description="remote commands this rig obeys (its allow-list)")
    stamp: float = Field(description="wall time (Unix s) of publication")


class AlarmMessage(Payload):
    """`als/<rig>/alarms`, QoS 1: one alarm event, as journaled."""

    id: int = Field(description="journal event number: increasing, for order and duplicates")
    session: int
    t_ms: int
    kind: Literal["raised", "cleared", "acknowledged", "audio_paused", "escalated"]
    alarm: str = Field(description="hazard id; `*` (every alarm) for audio_paused")
    priority: Literal["high", "medium", "low", ""] = Field(description="empty for audio_paused")
    detail: str = ""


class EventMessage(Payload):
    """`als/<rig>/events`, QoS 1: every journaled event that is not an alarm."""

    id: int = Field(description="journal event number: increasing, for order and duplicates")
    session: int
    t_ms: int
    kind: str = Field(
        description="transition, operator (every request and its result, remote ones"
        " included), command (a remote command refused before it reached the controller),"
        " pre_start (the checklist, any override), hal, resumed, error"
    )
    body: dict[str, Any]


class CommandRequest(Payload):
    """`als/<rig>/cmd/<name>`: the body of a command (`{}` will do)."""

    by: OneLine = text("dashboard", 64, "who asks: journaled with it")
    reason: OneLine = text("", 200, "why: journaled with it", min_length=0)
    reply_to: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^+#]*$",
        description="MQTT 3.1.1 clients: where to answer (MQTT 5: the Response Topic property)",
    )
    correlation: str | None = Field(
        None,
        max_length=200,
        description="MQTT 3.1.1 clients: echoed in the answer (MQTT 5: Correlation Data)",
    )


class CommandResult(Payload):
    """The answer, on the request's response topic (default `als/<rig>/reply/<name>`)."""

    rig_id: str
    command: str
    accepted: bool = Field(description="true only when the controller carried it out")
    result: str = Field(description="done, or why it was refused or expired")
    correlation: str | None = Field(None, description="the request's, for MQTT 3.1.1 clients")
    t_ms: int | None = Field(None, description="rig time it was applied or refused")


#: Every message type of the API, by the name the AsyncAPI file gives it.
MESSAGES: dict[str, type[Payload]] = {
    "Telemetry": Telemetry,
    "State": State,
    "ActiveAlarms": ActiveAlarms,
    "AlarmMessage": AlarmMessage,
    "EventMessage": EventMessage,
    "CommandRequest": CommandRequest,
    "CommandResult": CommandResult,
}
