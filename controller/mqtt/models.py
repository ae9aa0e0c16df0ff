"""Everything that goes over MQTT, as pydantic models.

The AsyncAPI file (docs/asyncapi.yaml) takes its schemas from these models, so a dashboard
author reads the same types the rig publishes. Names are docs/spec.md's: pumps, sensors, phases.

Alarms and events carry their journal number (`id`): it only ever increases within a
journal file, so a subscriber can put them in order and drop a copy it has already seen
(QoS 1 is at-least-once: an event whose acknowledgement was lost in an outage comes again,
and one a controller left unacknowledged when it ended or died comes from the next start of
the rig, `replayed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag, create_model

from controller.config._fields import OneLine, text
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES

ROOT = "als"


def topic(rig_id: str, *parts: str) -> str:
    """`als/<rig_id>/...`: the tree a rig's broker user may write (config/mosquitto/acl)."""
    return "/".join((ROOT, rig_id, *parts))


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Every message names its journal session and the wall time, so a dashboard can tell two
#: treatments of one rig apart and line messages up with a clock; `t_ms` is rig time.
STAMP_DOC = "wall time (Unix s)"
EVENT_STAMP = (
    f"{STAMP_DOC} the event was committed to the journal (as the publisher learned of it):"
    " a replay after a broker outage keeps it; a replay by a later start of the rig"
    " (`replayed`) has the time that start read it from the journal"
)


def _replayed() -> Any:
    return Field(
        False,
        description="published by a later start of this rig: the run that journaled it ended"
        " or died before a broker acknowledged it (same `id` and `session`: drop an `id`"
        " already seen)",
    )


def _session() -> Any:
    return Field(description="journal session of this treatment (`alsctl report SESSION`)")


def _named(name: str, names: tuple[str, ...], unit: str, doc: str) -> type[BaseModel]:
    """A model with one float field per name, so the schema lists every sensor by name."""
    fields: dict[str, Any] = {n: (float, Field(description=unit)) for n in names}
    return create_model(name, __base__=Payload, __doc__=doc, **fields)


if TYPE_CHECKING:
    # built at run time from the rig's layout, one float field per name; to a type checker
    # they are payloads whose fields it cannot know
    Pressures: TypeAlias = Payload
    Flows: TypeAlias = Payload
    Bags: TypeAlias = Payload
else:
    Pressures = _named(
        "Pressures", PRESSURE_NAMES, "mmHg", "Every pressure sensor, zeroed at rest."
    )
    Flows = _named("Flows", PUMP_NAMES, "mL/min (heparin mL/h)", "Each pump's encoder flow.")
    Bags = _named("Bags", SCALE_NAMES, "mL", "Each scale, as the volume it weighs.")


class Telemetry(Payload):
    """`als/<rig>/telemetry`, QoS 0, at `mqtt.telemetry_hz` of rig time."""

    rig_id: str
    session: int | None = _session()
    t_ms: int = Field(description="rig time of the sample, ms")
    phase: str
    safe: bool = Field(description="the firmware is in its safe state")
    pressure: Pressures
    flow: Flows
    bag: Bags
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
    stamp: float = Field(description=f"{STAMP_DOC} the sample reached the publisher")


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


class PhaseProgress(Payload):
    """The phase's goal: `exchanged 1200 of 3185 mL`; `target` 0 when the measure has no
    prescribed end (a pause, an alarm, rinse-back by volume is still a target)."""

    what: str = Field(description="the measure: exchanged, collected, processed, ...")
    done: float
    target: float = Field(description="the prescribed end of `done` (0: none)")
    unit: str


class ActiveAlarm(Payload):
    alarm: str = Field(description="hazard id from docs/spec.md 5.2, e.g. air_return")
    priority: Literal["high", "medium", "low"]
    raised_ms: int
    latched: bool = Field(description="stays until acknowledged, even once the cause is gone")
    acknowledged: bool
    present: bool = Field(description="its condition still holds")
    detail: str


class ActiveAlarms(Payload):
    """`als/<rig>/alarms/active`, retained: what a dashboard joining now must know."""

    rig_id: str
    session: int | None = _session()
    t_ms: int
    audio_paused: bool
    alarms: list[ActiveAlarm]
    stamp: float = Field(description=f"{STAMP_DOC} of publication")


class State(Payload):
    """`als/<rig>/state`, retained: refreshed with telemetry and on every event."""

    rig_id: str
    session: int | None = _session()
    t_ms: int
    phase: str
    interrupted: str | None = Field(description="in alarm: the phase it interrupted")
    firmware: Literal["running", "safe"]
    safe_reason: str
    prescription: PrescriptionBrief
    volumes: VolumesNow
    progress: PhaseProgress | None = Field(
        None, description="the phase's progress toward its prescribed target"
    )
    alarms: list[ActiveAlarm]
    allowed: list[str] = Field(
        description="the remote commands (of `commands`) that the rig would carry out now:"
        " the state machine accepts them, and for acknowledge_alarm and pause_audio an"
        " unacknowledged alarm is active; a command may still be refused when it arrives"
    )
    commands: list[str] = Field(description="remote commands this rig obeys (its allow-list)")
    outcome: Literal["completed", "stopped", "alarm", "fault", "interrupted"] | None = Field(
        None,
        description="how the session ended, once it has (the summary's outcome, README: exit"
        " status); null while it runs",
    )
    outcome_detail: str | None = Field(None, description="the outcome in one line, once ended")
    stamp: float = Field(description=f"{STAMP_DOC} of publication")


class AlarmMessage(Payload):
    """`als/<rig>/alarms`, QoS 1: one alarm event, as journaled."""

    id: int = Field(description="journal event number: increasing, for order and duplicates")
    session: int = _session()
    t_ms: int
    kind: Literal["raised", "cleared", "acknowledged", "audio_paused", "escalated"]
    alarm: str = Field(description="hazard id; `*` (every alarm) for audio_paused")
    priority: Literal["high", "medium", "low", ""] = Field(description="empty for audio_paused")
    detail: str = ""
    stamp: float = Field(description=EVENT_STAMP)
    replayed: bool = _replayed()


# -- events: one body model per kind -----------------------------------------------------
class EventBody(BaseModel):
    """The body of a journaled event. Fields may be added later: a dashboard ignores what it
    does not know, so these allow more than they name."""

    model_config = ConfigDict(extra="allow")


class TransitionBody(EventBody):
    source: str = Field(description="the state left (docs/spec.md name, e.g. exchange)")
    dest: str = Field(description="the state entered")
    trigger: str
    cause: str


class OperatorBody(EventBody):
    request: str = Field(description="the operator request (pause, stop, acknowledge, ...)")
    cause: str = Field(description="who asked: operator, auto: ..., or mqtt <by>: <reason>")
    result: str = Field(description="done, refused: why, failed: why, or expired: ...")


class CommandBody(EventBody):
    command: str = Field(description="the command's name as sent (clipped), or * for a count")
    result: str = Field(description="refused: why")
    by: str | None = None
    reason: str | None = None
    count: int | None = Field(
        None,
        description="over the rate limit: how many commands this one event stands for"
        " (refused in the second before it); absent for a single command",
    )
    commands: dict[str, int] | None = Field(
        None, description="with `count`: how many of each name (a few names, the rest as ...)"
    )


class PreStartBody(EventBody):
    allowed: bool = Field(description="the gate let the treatment start")
    reasons: list[str] = Field(description="why not, one per reason")
    override: dict[str, Any] | None = Field(description="an informed-consent override, if any")
    mode: str = Field(description="the mode the treatment runs in")
    blood_flow_ml_min: float
    checklist: dict[str, Any] | None = Field(description="the checklist's answers")
    map_mmhg: float | None = Field(description="MAP at the gate, mmHg")


class HalBody(EventBody):
    kind: str = Field(description="entered_safe, armed, limits_changed, reset, link_lost, ...")
    detail: str


class ResumedBody(EventBody):
    phase: str = Field(description="the phase the session resumed in")
    firmware_was: str = Field(description="the firmware's state as found")
    moved_while_away_ml: dict[str, float] = Field(description="per pump, mL")


class ErrorBody(EventBody):
    error: str
    traceback: str | None = None


class InterruptedBody(EventBody):
    cause: str = Field(description="SIGINT (Ctrl-C), SIGTERM, or a link lost for too long")
    phase: str = Field(description="the state the run was in")


class AutoResumeHeldBody(EventBody):
    why: str = Field(description="the alarm that keeps coming back, and how often")


class BloodLossBody(EventBody):
    estimate_ml: float = Field(description="what the encoders moved into a lost line")
    from_ms: int = Field(description="the last trustworthy sample (session ms)")
    to_ms: int = Field(description="the blood pump stopped (session ms)")


class ResumeCheckBody(EventBody):
    result: str = Field(description="passed: ..., or failed: the alarm came back")


class NoteBody(EventBody):
    note: str


class _Event(Payload):
    id: int = Field(description="journal event number: increasing, for order and duplicates")
    session: int = _session()
    t_ms: int
    stamp: float = Field(description=EVENT_STAMP)
    replayed: bool = _replayed()


class TransitionEvent(_Event):
    kind: Literal["transition"]
    body: TransitionBody


class OperatorEvent(_Event):
    """Every operator request and its result, remote ones included."""

    kind: Literal["operator"]
    body: OperatorBody


class CommandEvent(_Event):
    """A remote command the bridge refused before it reached the controller."""

    kind: Literal["command"]
    body: CommandBody


class PreStartEvent(_Event):
    kind: Literal["pre_start"]
    body: PreStartBody


class HalEvent(_Event):
    kind: Literal["hal"]
    body: HalBody


class ResumedEvent(_Event):
    kind: Literal["resumed"]
    body: ResumedBody


class ErrorEvent(_Event):
    kind: Literal["error"]
    body: ErrorBody


class InterruptedEvent(_Event):
    """The run was told to end (or lost its link for too long); the rig was commanded safe."""

    kind: Literal["interrupted"]
    body: InterruptedBody


class AutoResumeHeldEvent(_Event):
    kind: Literal["auto_resume_held"]
    body: AutoResumeHeldBody


class BloodLossEvent(_Event):
    kind: Literal["blood_loss"]
    body: BloodLossBody


class ResumeCheckEvent(_Event):
    """A resume checked at minimum blood flow before full flow returns."""

    kind: Literal["resume_check"]
    body: ResumeCheckBody


class NoteEvent(_Event):
    kind: Literal["note"]
    body: NoteBody


#: The event kinds with a body schema of their own.
EVENT_KINDS: dict[str, type[_Event]] = {
    "transition": TransitionEvent,
    "operator": OperatorEvent,
    "command": CommandEvent,
    "pre_start": PreStartEvent,
    "hal": HalEvent,
    "resumed": ResumedEvent,
    "error": ErrorEvent,
    "interrupted": InterruptedEvent,
    "auto_resume_held": AutoResumeHeldEvent,
    "blood_loss": BloodLossEvent,
    "resume_check": ResumeCheckEvent,
    "note": NoteEvent,
}
OTHER = "other"


class OtherEvent(_Event):
    """A kind this version does not describe (a later one may add kinds): still published."""

    kind: str = Field(json_schema_extra={"not": {"enum": list(EVENT_KINDS)}})
    body: dict[str, Any]


def _event_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in EVENT_KINDS else OTHER


class EventMessage(
    RootModel[
        Annotated[
            Annotated[TransitionEvent, Tag("transition")]
            | Annotated[OperatorEvent, Tag("operator")]
            | Annotated[CommandEvent, Tag("command")]
            | Annotated[PreStartEvent, Tag("pre_start")]
            | Annotated[HalEvent, Tag("hal")]
            | Annotated[ResumedEvent, Tag("resumed")]
            | Annotated[ErrorEvent, Tag("error")]
            | Annotated[InterruptedEvent, Tag("interrupted")]
            | Annotated[AutoResumeHeldEvent, Tag("auto_resume_held")]
            | Annotated[BloodLossEvent, Tag("blood_loss")]
            | Annotated[ResumeCheckEvent, Tag("resume_check")]
            | Annotated[NoteEvent, Tag("note")]
            | Annotated[OtherEvent, Tag(OTHER)],
            Discriminator(_event_kind),
        ]
    ]
):
    """`als/<rig>/events`, QoS 1: every journaled event that is not an alarm; `body` is
    typed by `kind`, and a kind not described here comes with a plain object."""


#: A command body is a few short fields, well under 1 kB: a larger payload is refused unread,
#: and never echoed into an answer, the journal or a report.
MAX_COMMAND_BYTES = 4096
#: MQTT 5 Correlation Data is a request id; a longer one is refused, not echoed.
MAX_CORRELATION_BYTES = 256


class CommandRequest(Payload):
    """`als/<rig>/cmd/<name>`, live (not retained), at most 4096 bytes: the body of a
    command. `{}` will do; an empty payload is refused (it is how a retained one is cleared).
    """

    by: OneLine = text("dashboard", 64, "who asks: journaled with it")
    reason: OneLine = text("", 200, "why: journaled with it", min_length=0)
    blood_flow_ml_min: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="set_blood_flow only: the new blood flow in mL/min; the controller"
        " refuses it outside the rig's minimum flow and pump maximum and the prescription's"
        " bounds",
    )
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
    session: int | None = _session()
    command: str = Field(description="the command's name as sent (clipped)")
    accepted: bool = Field(description="true only when the controller carried it out")
    result: str = Field(description="done, or why it was refused or expired")
    correlation: str | None = Field(None, description="the request's, for MQTT 3.1.1 clients")
    t_ms: int | None = Field(None, description="rig time it was applied or refused")
    stamp: float = Field(description=f"{STAMP_DOC} of the answer")


#: Every message type of the API, by the name the AsyncAPI file gives it.
MESSAGES: dict[str, type[BaseModel]] = {
    "Telemetry": Telemetry,
    "State": State,
    "ActiveAlarms": ActiveAlarms,
    "AlarmMessage": AlarmMessage,
    "EventMessage": EventMessage,
    "CommandRequest": CommandRequest,
    "CommandResult": CommandResult,
}
