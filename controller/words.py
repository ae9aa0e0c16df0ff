"""Alarms and refusals in words an operator at the rig acts on: what was detected, what the rig
did about it, and what to do next (IEC 60601-1-8 asks the alarm signal to say all three).

One table, read by every front-end: the console, the report, the refusal of a resume, and the
MQTT bridge and the monitor when they come to it. An alarm id is the hazard's id of
`controller/safety/hazards.py`, sometimes with what it concerns after a colon
(`pump_fault:blood`, `bag:replacement_bag`, `firmware_safe:heartbeat`); the words name that too.
A leaf module (it imports nothing of ours) so that the edges may read it as the loop does;
`tests/unit/test_words.py` holds it to the hazard table, so no alarm is ever shown as a bare id.

The keys in parentheses are the console's (`A` acknowledge, `R` resume, `X` stop, `P` pause);
a dashboard reads the verbs before them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ACK = "acknowledge (A)"
RESUME = "resume (R)"
STOP = "stop with rinse-back (X)"


@dataclass(frozen=True, slots=True)
class AlarmWords:
    #: what was detected: "air in the return line"
    what: str
    #: what the rig did about it: "all pumps stopped, venous clamp closed"
    response: str
    #: what the operator does next: "clear the air, then acknowledge (A) and resume (R)"
    next_step: str


#: By hazard id; `{target}` is what follows the colon, in words.
WORDS: dict[str, AlarmWords] = {
    "air_return": AlarmWords(
        "air in the return line",
        "all pumps stopped, venous clamp closed",
        f"clear the air from the return line, then {ACK} and {RESUME}",
    ),
    "return_low": AlarmWords(
        "return pressure low: the return line may be disconnected or the needle out",
        "all pumps stopped, venous clamp closed",
        f"check the return line and the needle, then {ACK} and {RESUME} (checked at low flow)",
    ),
    "return_high": AlarmWords(
        "return pressure high: the return line is occluded",
        "all pumps stopped, venous clamp closed",
        f"free the return line (kink, clamp, clot), then {ACK} and {RESUME}",
    ),
    "access_low": AlarmWords(
        "access pressure too negative: the blood draw is failing",
        "blood pump stopped, and with it the whole circuit",
        f"check the access line and the patient's position, then {ACK} and {RESUME}",
    ),
    "separator_tmp": AlarmWords(
        "separator TMP high: risk of hemolysis",
        "plasma pump slowed (stopped if TMP stays high)",
        f"check the separator and the plasma line; {RESUME} once TMP is down",
    ),
    "blood_leak": AlarmWords(
        "blood in the plasma line: hemolysis or a torn separator membrane",
        "plasma, loop and return pumps stopped",
        f"inspect the separator and the plasma for blood, then {ACK}; {STOP} if it is torn",
    ),
    "clotting": AlarmWords(
        "adsorber or filter clotting: pressure drop or filter TMP high",
        "loop slowed, then stopped",
        f"check heparin and the adsorbers; {RESUME} once the drop is back, or {STOP}",
    ),
    "fluid_imbalance": AlarmWords(
        "fluid imbalance: the pump encoders and the scales disagree",
        "exchange and filtration pumps stopped",
        f"check the bags on their scales and the pump segments, then {ACK} and {RESUME}",
    ),
    "net_balance": AlarmWords(
        "patient fluid balance off its prescription",
        "exchange and filtration pumps stopped",
        f"check the bags and the lines for a leak, then {ACK} and {RESUME}",
    ),
    "bag": AlarmWords(
        "{target} empty or full",
        "the pump that uses the {target} paused",
        f"change the {{target}}; the pump resumes by itself ({ACK} to silence)",
    ),
    "hypotension": AlarmWords(
        "hypotension: the patient's MAP is below the limit",
        "blood flow at minimum, net fluid removal stopped",
        f"treat the patient's blood pressure; the flow returns once MAP recovers ({ACK})",
    ),
    "pump_fault": AlarmWords(
        "{target} pump fault: its measured flow differs from the command",
        "the {target} pump and the pumps that depend on it stopped",
        f"check the {{target}} pump's segment and door, then {ACK} and {RESUME}",
    ),
    "sensor_fault": AlarmWords(
        "sensor fault: {target} out of range, missing or stuck",
        "treated as the worst reading of its hazard",
        f"check the {{target}} sensor and its cable, then {ACK} and {RESUME}",
    ),
    "plasma_temp": AlarmWords(
        "plasma temperature out of range",
        "alarm; above the cut-off the warmer and the return pump stopped",
        f"check the warmer; {RESUME} once the temperature is back",
    ),
    "link_lost": AlarmWords(
        "link to the rig lost: no frame from the firmware",
        "the firmware went to its safe state by itself (heartbeat watchdog)",
        f"check the serial cable; once the link is back, {ACK} and {RESUME}",
    ),
    "valve_fault": AlarmWords(
        "{target} valve does not move as commanded",
        "plasma side stopped (venous clamp: safe state; clamp the line by hand)",
        f"check the {{target}} valve, then {ACK} and {RESUME}, or {STOP}",
    ),
    "bag_valve": AlarmWords(
        "the double-chamber bag's one-way valve leaks: unpurified plasma comes back",
        "nothing stopped: the treatment goes on",
        f"{ACK}; replace the bag at the next opportunity, or {STOP}",
    ),
    "filter_rupture": AlarmWords(
        "hemofilter membrane ruptured: filter TMP too low while filtrate is drawn",
        "loop, filtration and substitution stopped",
        f"{ACK}; replace the hemofilter, or {STOP}",
    ),
    "journal_unavailable": AlarmWords(
        "the journal cannot be written (records kept in a fallback file)",
        "nothing stopped: the treatment goes on",
        f"free disk space or fix the journal's folder, then {ACK}",
    ),
    "firmware_safe": AlarmWords(
        "the rig's firmware went to its safe state: {target}",
        "all pumps stopped, venous clamp closed (by the firmware)",
        f"find why, then {ACK} and {RESUME} (the firmware is armed again)",
    ),
}

#: What follows `firmware_safe:`, in words.
SAFE_REASONS = {
    "heartbeat": "it stopped hearing the controller (heartbeat)",
    "boot": "the rig's microcontroller restarted",
    "sensor": "a sensor out of its range",
    "command": "the controller commanded it",
    "air": "air in the return line",
    "return_low": "return pressure low",
    "return_high": "return pressure high",
    "access_low": "access pressure too negative",
    "blood_leak": "blood in the plasma line",
}


def _target(base: str, target: str) -> str:
    if base == "firmware_safe":
        return SAFE_REASONS.get(target, target.replace("_", " "))
    return target.replace("_", " ")


def alarm_words(alarm_id: str) -> AlarmWords:
    """The words for an alarm id; an id the table does not know still reads as words."""
    base, _, target = alarm_id.partition(":")
    words = WORDS.get(base)
    if words is None:
        return AlarmWords(
            alarm_id.replace("_", " ").replace(":", ": "),
            "see the hazard table (docs/safety.md)",
            f"find the cause, then {ACK} and {RESUME}, or {STOP}",
        )
    t = _target(base, target) if target else "the bag"
    return AlarmWords(
        words.what.format(target=t),
        words.response.format(target=t),
        words.next_step.format(target=t),
    )


def alarm_title(alarm_id: str) -> str:
    """One alarm in a few words, with its id (for a refusal or a report row)."""
    return f"{alarm_words(alarm_id).what} ({alarm_id})"


def condition_words(present: bool, latched: bool, acknowledged: bool) -> str:
    """Where an active alarm stands, as the operator must read it."""
    if present:
        return "still present" + ("; acknowledged" if acknowledged else "")
    if latched and not acknowledged:
        return "condition gone; latched until acknowledged"
    return "condition gone" + ("; acknowledged" if acknowledged else "")


#: How each request is named to a person, in a refusal or the journal.
REQUEST_WORDS = {
    "acknowledge": "acknowledge",
    "pause_audio": "pause audio",
    "pause": "pause",
    "resume": "resume",
    "stop": "stop",
    "start": "start",
    "end": "end",
    "set_blood_flow": "change the blood flow",
}


def event_words(kind: str, body: Mapping[str, Any]) -> str:
    """A journaled event in words: the report's rows and a finished session's console log."""
    if kind == "alarm":
        if body["kind"] == "audio_paused":
            return "audio paused 2 min"
        words = alarm_words(body["alarm"])
        head = f"{body['kind']}: {words.what} ({body['priority']}, {body['alarm']})"
        detail = f"; {body['detail']}" if body.get("detail") else ""
        if body["kind"] in ("raised", "escalated"):
            return f"{head}{detail}; rig: {words.response}; next: {words.next_step}"
        return head + detail
    if kind == "hal":
        detail = f": {body['detail']}" if body.get("detail") else ""
        return f"the rig: {str(body.get('kind', '')).replace('_', ' ')}{detail}"
    if kind == "transition" and {"source", "dest"} <= body.keys():
        return f"{body['source']} -> {body['dest']} ({body.get('cause', '')})"
    if kind == "operator":
        what = REQUEST_WORDS.get(body["request"], body["request"])
        return f"{what} ({body['cause']}): {body['result']}"
    if kind == "error":
        error: str = body["error"]
        return error
    if kind == "pre_start" and "allowed" in body:
        if body["allowed"]:
            return "pre-start gate: start allowed" + (
                " under an override" if body.get("override") else ""
            )
        return "pre-start gate: start refused: " + "; ".join(body.get("reasons") or [])
    fields = ", ".join(f"{k} {v}" for k, v in body.items() if k != "traceback")
    return f"{kind.replace('_', ' ')}: {fields}"
