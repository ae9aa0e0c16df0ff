"""What `alsctl firmware-sim` tells the bench engineer: one line per thing the simulated
firmware saw or did, each stamped with rig time (`[  12.3 s] armed`).

A controller connecting or leaving (a TCP client; on a pty or a device, whose far end
cannot be seen closing, the first bytes after a silence longer than the heartbeat timeout),
each HELLO (its session nonce, new or the same), arming, new limits, a fault injected or
cleared, entry into the safe state with its reason, a power-on reset. The server wires it:
`FirmwareLink.observer` gives the firmware's events and the HELLOs, the transports give the
connections. The words are here, nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from controller.protocol import PROTOCOL_VERSION
from controller.rig import PUMP_HARD_MAX, PUMP_NAMES, PUMP_UNITS, SafeReason
from controller.rig import FirmwareEvent as Event
from firmware_sim.firmware import Firmware, FirmwareEvent, Limits
from firmware_sim.link import ForeignFrame, HelloSeen

#: Under this much wall time per heartbeat timeout, `--speed` is too fast for a controller
#: that can stall (a busy CPU, a garbage collection) as long as that.
MIN_HEARTBEAT_BUDGET_MS = 100.0


def heartbeat_budget_warning(speed: float, heartbeat_timeout_ms: float) -> str | None:
    """A warning when the rig's heartbeat timeout, in wall time at `speed`, is under
    `MIN_HEARTBEAT_BUDGET_MS`; None when it is not. It assumes the rig clock follows the
    wall clock at `speed`: a clock that waits for the controller does not need it."""
    budget_ms = heartbeat_timeout_ms / speed
    if budget_ms >= MIN_HEARTBEAT_BUDGET_MS:
        return None
    top = heartbeat_timeout_ms / MIN_HEARTBEAT_BUDGET_MS
    return (
        f"warning: at --speed {speed:g} the rig's {heartbeat_timeout_ms:g} ms heartbeat"
        f" timeout is {budget_ms:.3g} ms of wall time: a controller that stalls that long"
        " (a busy CPU, a garbage collection) looks dead to the firmware, which goes safe"
        f" (heartbeat). Use --speed {top:g} or lower for a run that must not see that."
    )


def stamp(t_ms: float) -> str:
    """Rig time as the lines start: `[  12.3 s]`."""
    return f"[{t_ms / 1000:6.1f} s]"


def safe_reason_words(reason: str, limits: Limits) -> str:
    """Why the firmware went safe, as a bench engineer says it, with the limit it crossed."""
    match reason:
        case SafeReason.AIR:
            return "air in the return line"
        case SafeReason.RETURN_LOW:
            return f"return pressure under its limit ({limits.return_low_mmhg:g} mmHg)"
        case SafeReason.RETURN_HIGH:
            return f"return pressure over its limit ({limits.return_high_mmhg:g} mmHg)"
        case SafeReason.ACCESS_LOW:
            return f"access pressure under its limit ({limits.access_low_mmhg:g} mmHg)"
        case SafeReason.BLOOD_LEAK:
            return "blood leak detector"
        case SafeReason.HEARTBEAT:
            return f"controller heartbeat lost (none for {limits.heartbeat_timeout_ms} ms)"
        case SafeReason.COMMAND:
            return "the controller asked for it"
        case SafeReason.BOOT:
            return "power-on"
        case SafeReason.SENSOR:
            return "return or access pressure sensor invalid (missing or out of range)"
    return reason


def limits_words(limits: Limits) -> str:
    """The limits in one short line; pump maxima only where under the rig's hard maximum."""
    lowered = [
        f"{name} {limits.pump_max[name]:g} {PUMP_UNITS[name]}"
        for name in PUMP_NAMES
        if limits.pump_max[name] < PUMP_HARD_MAX[name]
    ]
    pumps = "pump max " + ", ".join(lowered) if lowered else "pumps up to their hard maxima"
    return (
        f"limits: return {limits.return_low_mmhg:g}..{limits.return_high_mmhg:g} mmHg,"
        f" access >= {limits.access_low_mmhg:g} mmHg,"
        f" heartbeat {limits.heartbeat_timeout_ms} ms, {pumps}"
    )


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def fault_words(name: str, params: Mapping[str, Any]) -> str:
    """`pump_stall (pump=blood)`; a fault without parameters is its name."""
    if not params:
        return name
    return f"{name} ({', '.join(f'{k}={_value(v)}' for k, v in params.items())})"


def describe(e: FirmwareEvent | HelloSeen | ForeignFrame, limits: Limits) -> str | None:
    """The line (without its time stamp) for an event or a HELLO; None for none."""
    if isinstance(e, ForeignFrame):
        return (
            f"frames of protocol version {e.version} dropped: this firmware speaks"
            f" {PROTOCOL_VERSION} (docs/protocol.md); update the controller"
        )
    if isinstance(e, HelloSeen):
        if e.refused is not None:
            return (
                f"HELLO session {e.session:08x}: refused ({e.refused}), session"
                f" {e.previous or 0:08x} has the rig armed"
            )
        if e.session == e.previous:
            return f"HELLO session {e.session:08x}: same session (the same controller, back)"
        if e.previous is None:
            return f"HELLO session {e.session:08x}: new session"
        return (
            f"HELLO session {e.session:08x}: new session, replaces {e.previous:08x}"
            " (a restarted controller)"
        )
    match e.code:
        case Event.ARMED:
            return "armed"
        case Event.ENTERED_SAFE:
            return f"safe state: {safe_reason_words(e.detail, limits)} ({e.detail})"
        case Event.LIMITS_CHANGED:
            return limits_words(limits)
        case Event.RESET:
            return "power-on reset: safe (boot), default limits, session forgotten"
        case Event.FAULT_INJECTED:
            return f"fault injected: {fault_words(e.detail, e.params)}"
        case Event.FAULT_CLEARED:
            return f"fault cleared: {fault_words(e.detail, e.params)}"
    return f"{e.code} {e.detail}".strip()


class ConsoleLog:
    """Writes the lines of one simulated firmware to `write` (one call per line)."""

    def __init__(self, firmware: Firmware, write: Callable[[str], None]) -> None:
        self.firmware = firmware
        self.write = write
        #: rig time of the last bytes from the controller (pty, device); None: never any
        self._heard_ms: int | None = None

    def line(self, text: str) -> None:
        self.write(f"{stamp(self.firmware.t_ms)} {text}")

    def observe(self, e: FirmwareEvent | HelloSeen | ForeignFrame) -> None:
        """`FirmwareLink.observer`."""
        text = describe(e, self.firmware.limits)
        if text is not None:
            self.line(text)

    def connected(self, where: str) -> None:
        self.line(f"controller connected ({where})")

    def disconnected(self, where: str) -> None:
        self.line(f"controller disconnected ({where})")

    def bytes_in(self, where: str) -> None:
        """Bytes arrived on a line whose far end cannot be seen opening or closing (a pty, a
        serial device): the first ones, or the first after a silence longer than the
        firmware's heartbeat timeout, count as a controller connecting."""
        now = self.firmware.t_ms
        last, self._heard_ms = self._heard_ms, now
        if last is None:
            self.connected(f"first bytes on {where}")
        elif now - last > self.firmware.limits.heartbeat_timeout_ms:
            self.connected(f"bytes on {where} after {(now - last) / 1000:.1f} s of silence")
