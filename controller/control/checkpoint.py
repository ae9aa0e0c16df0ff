"""The checkpoint: all a resumed run needs, typed and versioned, and how it is taken and put
back.

The journal keeps the newest (every `CHECKPOINT_MS` of rig time, and before every transition
and raised alarm). A resume adds what the pumps moved after it, counted by the firmware's
own encoder totals until its watchdog stopped them, so the period bounds only how stale the
phase and alarms can be, never the volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.fsm.machine import TransitionRecord, leaf
from controller.rig import PUMP_NAMES, Sample
from controller.summary import AlarmOut

if TYPE_CHECKING:
    from controller.config.prescription import Prescription
    from controller.control.loop import Controller
    from controller.safety.gate import GateResult

CHECKPOINT_MS = 500
#: Raise it with any change a resume of an older checkpoint would misread.
CHECKPOINT_VERSION: Final = 1


class Checkpoint(BaseModel):
    """Plain data, as the journal stores it (JSON)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: Literal[1] = CHECKPOINT_VERSION
    #: session time of the sample it was taken at
    t_ms: int
    #: the machine's full state name (`treatment.exchange`)
    state: str
    interrupted: str | None = None
    entered_ms: int
    pumped_ml: dict[str, float]
    exchanged_ml: float
    collected_ml: float
    phase_ms: dict[str, int]
    safe_ms: int
    purification_ms: int
    rinse_start_ml: float
    #: every alarm raised so far (session s, id)
    raised: list[tuple[float, str]] = Field(default_factory=list)
    #: the scale levels at connection (the fluid balance by scales starts from them)
    scale_base: dict[str, float] | None = None
    return_line: dict[str, float] | None = None
    pressure_pair: list[float] | None = None
    active_alarms: list[dict[str, Any]] = Field(default_factory=list)
    #: the encoders' own totals at this sample: a resume counts what moved after it
    totals_ml: dict[str, float] = Field(default_factory=dict)
    #: the firmware's clock at the session's start: session time = its clock - this
    t0_ms: int = 0
    #: the plasma route was on `collect`: what moved meanwhile was collected
    collecting: bool = False

    @property
    def phase(self) -> str:
        return leaf(self.state)

    @property
    def acting(self) -> str:
        """The phase whose flows ran: the interrupted one under an alarm."""
        if self.phase == "alarm" and self.interrupted:
            return leaf(self.interrupted)
        return self.phase


def take(c: Controller) -> Checkpoint:
    m = c.machine
    v = c.accounting.volumes
    r = c.accounting.run
    sample = c.sample
    return Checkpoint(
        t_ms=sample.t_ms if sample is not None else 0,
        state=m.state,
        interrupted=m.interrupted,
        entered_ms=m.entered_ms,
        pumped_ml=dict(v.pumped_ml),
        exchanged_ml=v.exchanged_ml,
        collected_ml=v.collected_ml,
        phase_ms=dict(r.phase_ms),
        safe_ms=r.safe_ms,
        purification_ms=r.purification_ms,
        rinse_start_ml=r.rinse_start_ml,
        raised=[(a.t_s, a.cause) for a in r.alarms],
        scale_base=c.safety.scale_base,
        return_line=c.safety.return_line.state(),
        pressure_pair=c.safety.pressure_pair.state(),
        active_alarms=c.safety.alarms.snapshot(),
        totals_ml=dict(sample.totals_ml) if sample is not None else {},
        t0_ms=c.t0_ms or 0,
        collecting=sample is not None and sample.valves.get("plasma_route") == "collect",
    )


def moved_since(cp: Checkpoint, sample: Sample) -> dict[str, float] | None:
    """What the encoders counted after the checkpoint; None when the firmware's totals (or
    clock) went back, i.e. it restarted since."""
    then = cp.totals_ml
    now = sample.totals_ml
    if not then or not now or sample.t_ms < cp.t_ms:
        return None
    if any(now[n] < then[n] for n in PUMP_NAMES):
        return None
    return {n: round(now[n] - then[n], 4) for n in PUMP_NAMES}


def restore(
    c: Controller, cp: Checkpoint, history: list[TransitionRecord], moved: dict[str, float]
) -> None:
    """The journaled state back in place, plus what the pumps moved after the checkpoint
    until the watchdog stopped them (counted by the encoders)."""
    now = c.sample.t_ms if c.sample is not None else 0
    v = c.accounting.volumes
    v.pumped_ml.update(cp.pumped_ml)
    v.exchanged_ml = cp.exchanged_ml
    v.collected_ml = cp.collected_ml
    v.last_t_ms = now if c.sample is not None else None
    v.add_moved(moved, cp.acting, cp.collecting)
    r = c.accounting.run
    r.phase_ms = dict(cp.phase_ms)
    r.safe_ms = cp.safe_ms
    r.purification_ms = cp.purification_ms
    r.rinse_start_ml = cp.rinse_start_ml
    r.alarms = [AlarmOut(t_s=t, cause=cause) for t, cause in cp.raised]
    c.safety.restore(cp.scale_base, cp.active_alarms)
    c.safety.return_line.restore(cp.return_line)
    c.safety.pressure_pair.restore(cp.pressure_pair)
    c.machine.now_ms = now
    # `connecting` ramps the blood flow up from its entry: it starts again
    entered = now if cp.phase == "connecting" else cp.entered_ms
    c.machine.restore(cp.state, cp.interrupted, entered, history)


@dataclass(frozen=True, slots=True)
class Midway:
    """A treatment caught as it entered a phase, to start others from there: the loop's
    checkpoint and history, the prescription it ran on, and the rig's own snapshot (a
    backend that can take one: `SimHal.snapshot()`). Tests and benches start from one
    instead of paying for self-test, priming and connection again."""

    checkpoint: Checkpoint
    history: tuple[TransitionRecord, ...]
    prescription: Prescription
    gate: GateResult | None
    #: the backend's snapshot of the rig at the same instant
    rig: Any


def carry_on(c: Controller, midway: Midway) -> None:
    """Put a fresh controller where `midway` left off, before its first sample: the next
    sample's interval is accounted from the checkpoint's, as if nothing had happened."""
    cp = midway.checkpoint
    c.t0_ms = cp.t0_ms
    c.gate_result = midway.gate
    restore(c, cp, list(midway.history), dict.fromkeys(PUMP_NAMES, 0.0))
    c.accounting.volumes.last_t_ms = cp.t_ms
    c.machine.now_ms = cp.t_ms
    c.machine.entered_ms = cp.entered_ms
