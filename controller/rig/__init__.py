"""The rig's topology, as docs/spec.md section 3 names it: pumps, valves and sensors with their
units and hard maxima; the `Sample` a firmware reports; why it is safe; why it refuses.

A leaf: it imports nothing of ours, so every other package (config, protocol, HAL, safety,
the loop, the simulated firmware) can depend on it without a cycle. The names are the ones
used everywhere (config, telemetry, MQTT, journal); their order is the firmware's wire and
encoder order (`controller.protocol.wire` freezes it, and a test holds the two together).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Pump(StrEnum):
    BLOOD = "blood"
    PLASMA = "plasma"
    REPLACEMENT = "replacement"
    LOOP = "loop"
    FILTRATE = "filtrate"
    SUBSTITUTION = "substitution"
    RETURN = "return"
    HEPARIN = "heparin"


class Valve(StrEnum):
    PLASMA_ROUTE = "plasma_route"
    VENOUS_CLAMP = "venous_clamp"


class Pressure(StrEnum):
    ACCESS = "access"
    PRE_SEPARATOR = "pre_separator"
    PLASMA = "plasma"
    RETURN = "return"
    PRE_FILTER = "pre_filter"
    FILTRATE = "filtrate"
    PRE_ADSORBER = "pre_adsorber"
    POST_ADSORBER = "post_adsorber"


class Scale(StrEnum):
    REPLACEMENT_BAG = "replacement_bag"
    WASTE_BAG = "waste_bag"
    SUBSTITUTION_BAG = "substitution_bag"
    OUTER_CHAMBER = "outer_chamber"
    INNER_CHAMBER = "inner_chamber"


class Detector(StrEnum):
    AIR_RETURN = "air_return"
    BLOOD_LEAK = "blood_leak"


#: Plain-string tuples of the names, in wire order: what the hot paths iterate (a dict keyed
#: by plain strings is the fastest lookup Python has).
PUMP_NAMES: tuple[str, ...] = tuple(p.value for p in Pump)
PRESSURE_NAMES: tuple[str, ...] = tuple(p.value for p in Pressure)
SCALE_NAMES: tuple[str, ...] = tuple(s.value for s in Scale)
SENSOR_NAMES: tuple[str, ...] = (*PRESSURE_NAMES, *SCALE_NAMES, "plasma_temp", "map")
DETECTOR_NAMES: tuple[str, ...] = tuple(d.value for d in Detector)
VALVE_POSITIONS: dict[str, tuple[str, ...]] = {
    Valve.PLASMA_ROUTE.value: ("waste", "collect"),
    Valve.VENOUS_CLAMP.value: ("closed", "open"),
}
#: The loop runs while the double-chamber bag (outer + inner) holds at least this much plasma:
#: enough that the loop pump never runs the outer chamber dry between samples.
BAG_MIN_ML = 100.0
#: Hard maxima of each pump (docs/spec.md 3), mL/min; heparin in mL/h.
PUMP_HARD_MAX: dict[str, float] = {
    "blood": 250.0,
    "plasma": 60.0,
    "replacement": 60.0,
    "loop": 300.0,
    "filtrate": 100.0,
    "substitution": 100.0,
    "return": 60.0,
    "heparin": 20.0,
}
PUMP_UNITS: dict[str, str] = {
    name: "mL/h" if name == "heparin" else "mL/min" for name in PUMP_NAMES
}
SENSOR_UNITS: dict[str, str] = {
    **dict.fromkeys(PRESSURE_NAMES, "mmHg"),
    **dict.fromkeys(SCALE_NAMES, "g"),
    "plasma_temp": "degC",
    "map": "mmHg",
}


class FirmwareState(StrEnum):
    RUNNING = "running"
    SAFE = "safe"


class SafeReason(StrEnum):
    """Why the firmware is in its safe state (protocol codes in docs/protocol.md)."""

    NONE = "none"
    AIR = "air"
    RETURN_LOW = "return_low"
    RETURN_HIGH = "return_high"
    ACCESS_LOW = "access_low"
    BLOOD_LEAK = "blood_leak"
    HEARTBEAT = "heartbeat"
    COMMAND = "command"
    BOOT = "boot"
    SENSOR = "sensor"


class Refusal(StrEnum):
    """Why a firmware refuses a command (a NAK's code; its number is its place here, as
    docs/protocol.md tabulates them)."""

    NONE = "none"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_ID = "unknown_id"
    IN_SAFE_STATE = "in_safe_state"
    CAUSE_PRESENT = "cause_present"
    BAD_LIMITS = "bad_limits"
    BAD_PAYLOAD = "bad_payload"
    UNSUPPORTED = "unsupported"
    NO_SESSION = "no_session"
    #: HELLO with a new nonce while another session's firmware is armed
    SESSION_BUSY = "session_busy"
    #: a command from a session that does not own the firmware
    NOT_OWNER = "not_owner"
    #: SET_LIMITS with a pump maximum below that pump's running rate
    LIMIT_BELOW_RATE = "limit_below_rate"


class FirmwareEvent(StrEnum):
    """What a firmware tells unasked (its number is its place here, docs/protocol.md)."""

    NONE = "none"
    ENTERED_SAFE = "entered_safe"
    ARMED = "armed"
    LIMITS_CHANGED = "limits_changed"
    RESET = "reset"
    FAULT_INJECTED = "fault_injected"
    FAULT_CLEARED = "fault_cleared"


class PumpReading(NamedTuple):
    """A pump's rate as sent and as its encoder measures it.

    A named tuple, not a dataclass: a sample holds 8 of these and 15 `Reading`s, built
    ten times a second of rig time, thousands of times a second in simulation, and a
    tuple is built several times faster than a frozen dataclass."""

    commanded: float
    measured: float


class Reading(NamedTuple):
    """A sensor value and whether the firmware vouches for it (missing / out of range)."""

    value: float
    valid: bool = True


@dataclass(frozen=True, slots=True)
class Sample:
    """One timestamped snapshot of the whole rig, as the firmware reported it."""

    t_ms: int
    seq: int
    pumps: Mapping[str, PumpReading]
    sensors: Mapping[str, Reading]
    detectors: Mapping[str, bool]
    valves: Mapping[str, str]
    state: FirmwareState
    safe_reason: SafeReason
    #: each pump's cumulative encoder volume since the firmware's power-on (mL): what a
    #: resumed controller needs to account what moved while nobody was listening
    totals_ml: Mapping[str, float] = field(default_factory=dict)

    @property
    def t_s(self) -> float:
        return self.t_ms / 1000.0

    @property
    def safe(self) -> bool:
        return self.state is FirmwareState.SAFE


__all__ = [
    "DETECTOR_NAMES",
    "PRESSURE_NAMES",
    "PUMP_HARD_MAX",
    "PUMP_NAMES",
    "PUMP_UNITS",
    "SCALE_NAMES",
    "SENSOR_NAMES",
    "SENSOR_UNITS",
    "VALVE_POSITIONS",
    "Detector",
    "FirmwareEvent",
    "FirmwareState",
    "Pressure",
    "Pump",
    "PumpReading",
    "Reading",
    "Refusal",
    "SafeReason",
    "Sample",
    "Scale",
    "Valve",
]
