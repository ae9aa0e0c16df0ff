"""The wire format's tables, frozen: the one `PROTOCOL_VERSION`, and the order in which pumps,
sensors, valves and codes travel.

Literal tuples on purpose: a firmware written in C from docs/protocol.md numbers them this
way, so reordering the rig's names (controller/rig) must not silently reorder the wire. A
test (tests/unit/test_protocol.py) holds these tables and the rig's layout together.
"""

from __future__ import annotations

PROTOCOL_VERSION = 3

WIRE_PUMPS: tuple[str, ...] = (
    "blood",
    "plasma",
    "replacement",
    "loop",
    "filtrate",
    "substitution",
    "return",
    "heparin",
)
WIRE_SENSORS: tuple[str, ...] = (
    "access",
    "pre_separator",
    "plasma",
    "return",
    "pre_filter",
    "filtrate",
    "pre_adsorber",
    "post_adsorber",
    "replacement_bag",
    "waste_bag",
    "substitution_bag",
    "outer_chamber",
    "inner_chamber",
    "plasma_temp",
    "map",
)
WIRE_VALVES: tuple[str, ...] = ("plasma_route", "venous_clamp")
#: each valve's positions by number (0, 1)
WIRE_VALVE_POSITIONS: dict[str, tuple[str, ...]] = {
    "plasma_route": ("waste", "collect"),
    "venous_clamp": ("closed", "open"),
}
#: Safe-state reasons, event codes and NAK codes by number (docs/protocol.md tables).
REASONS: tuple[str, ...] = (
    "none",
    "air",
    "return_low",
    "return_high",
    "access_low",
    "blood_leak",
    "heartbeat",
    "command",
    "boot",
    "sensor",
)
EVENTS: tuple[str, ...] = (
    "none",
    "entered_safe",
    "armed",
    "limits_changed",
    "reset",
    "fault_injected",
    "fault_cleared",
)
NAKS: tuple[str, ...] = (
    "none",
    "out_of_range",
    "unknown_id",
    "in_safe_state",
    "cause_present",
    "bad_limits",
    "bad_payload",
    "unsupported",
    "no_session",
    "session_busy",
    "not_owner",
    "limit_below_rate",
)
