"""The rig's MQTT settings: what it publishes, how fast, and which remote commands it obeys.

In the rig file because they belong to the rig (its broker user, its allow-list), never on
the command line: a password there would end up in shell histories and `ps` listings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.config._fields import Strict, bounded

#: Every command a dashboard may send, and the operator request each one becomes.
COMMANDS: dict[str, str] = {
    "pause": "pause",
    "resume": "resume",
    "acknowledge_alarm": "acknowledge",
    "pause_audio": "pause_audio",
    "stop_treatment": "stop",
    "start_treatment": "start",
    "set_blood_flow": "set_blood_flow",
}
CommandName = Literal[
    "pause",
    "resume",
    "acknowledge_alarm",
    "pause_audio",
    "stop_treatment",
    "start_treatment",
    "set_blood_flow",
]
#: Starting a treatment and changing its blood flow remotely are off unless a rig file
#: lists them.
DEFAULT_COMMANDS: tuple[CommandName, ...] = (
    "pause",
    "resume",
    "acknowledge_alarm",
    "pause_audio",
    "stop_treatment",
)


class MqttTls(Strict):
    """TLS to the broker (an `mqtts://` URL); the files are PEM."""

    ca_file: str | None = Field(None, description="CA certificate; default: the system's")
    cert_file: str | None = Field(None, description="client certificate, if the broker asks")
    key_file: str | None = Field(None, description="the client certificate's key")


class MqttSettings(Strict):
    username: str | None = Field(
        None,
        description="broker user; default: the rig id (the ACL gives each rig user its tree)."
        " ALSCTL_MQTT_USERNAME overrides it",
    )
    password_file: str | None = Field(
        None,
        description="file holding the broker password (ALSCTL_MQTT_PASSWORD overrides it);"
        " never given on the command line",
    )
    telemetry_hz: float = bounded(
        2.0, 0.1, 10.0, "Hz", "telemetry (and retained state) rate, in rig time"
    )
    commands: tuple[CommandName, ...] = Field(
        DEFAULT_COMMANDS, description="remote commands this rig obeys; any other is refused"
    )
    queue_size: int = bounded(
        200,
        10,
        100000,
        "messages",
        "telemetry waiting to be published; beyond it the oldest"
        " is dropped and counted (alarms and events are never dropped)",
    )
    commands_per_s: float = bounded(
        10.0,
        0.1,
        1000.0,
        "per s",
        "remote commands taken per second (bursts of as many); the excess is refused and"
        " journaled as one count per second, never one entry per command",
    )
    command_timeout_s: float = bounded(
        5.0, 0.5, 60.0, "s", "a command not applied by the control loop in this time expires"
    )
    keepalive_s: int = bounded(
        10,
        2,
        300,
        "s",
        "MQTT keepalive; the broker sends the last will after 1.5 x this without a word",
    )
    tls: MqttTls | None = None
