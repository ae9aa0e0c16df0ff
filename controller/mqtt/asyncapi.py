"""docs/asyncapi.yaml, generated: the MQTT API as AsyncAPI 3, schemas from the models.

Written by `alsctl asyncapi` (and `make schema`); a test fails when the file in the
repository differs from what this writes, so the document cannot drift from the code.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from controller.config.mqtt import COMMANDS, DEFAULT_COMMANDS
from controller.mqtt.models import MAX_COMMAND_BYTES, MAX_CORRELATION_BYTES, MESSAGES

SEND, RECEIVE = "send", "receive"

#: channel: (address under als/{rigId}/, message, QoS, retained, what it is)
CHANNELS: dict[str, tuple[str, str, int, bool, str]] = {
    "status": (
        "status",
        "Status",
        1,
        True,
        "online while the controller is connected; offline is its last will (a killed"
        " controller or a lost network) and what it publishes when it ends",
    ),
    "state": ("state", "State", 1, True, "phase, prescription, volumes, active alarms"),
    "telemetry": ("telemetry", "Telemetry", 0, False, "sensors and flows at mqtt.telemetry_hz"),
    "alarms": ("alarms", "AlarmMessage", 1, False, "every alarm raise, clear, acknowledge"),
    "alarmsActive": ("alarms/active", "ActiveAlarms", 1, True, "the alarms active now"),
    "events": ("events", "EventMessage", 1, False, "transitions, operator actions, commands"),
    "command": (
        "cmd/{command}",
        "CommandRequest",
        1,
        False,
        "a request to the rig: live and not retained (a retained or empty one is refused),"
        " one level below cmd/ (a deeper topic is refused), at most mqtt.commands_per_s"
        f" (default 10 per s) and {MAX_COMMAND_BYTES} bytes",
    ),
    "reply": (
        "",  # dynamic: the operation's reply address says where
        "CommandResult",
        1,
        False,
        "the rig's answer to a command: on the request's response topic when it lies under"
        " als/{rigId}/reply/, else on als/{rigId}/reply/ followed by what followed cmd/ in"
        " the request's topic",
    ),
}
#: MQTT 5 Correlation Data is binary on the wire; the rig echoes it unchanged.
CORRELATION_DATA = {
    "type": "string",
    "format": "binary",
    "maxLength": MAX_CORRELATION_BYTES,
    "description": "bytes (MQTT 5 property), echoed unchanged in the answer; longer is refused",
}


def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(model, "serialization") for model in MESSAGES.values()],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = {"Status": {"type": "string", "enum": ["online", "offline"]}}
    schemas |= defs["$defs"]
    messages: dict[str, Any] = {
        name: {
            "name": name,
            "contentType": "text/plain" if name == "Status" else "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        for name in ("Status", *MESSAGES)
    }
    messages["CommandRequest"]["bindings"] = {
        "mqtt": {
            "responseTopic": {"type": "string", "pattern": "^als/[^/]+/reply/.+"},
            "correlationData": CORRELATION_DATA,
            "bindingVersion": "0.2.0",
        }
    }
    messages["CommandResult"]["bindings"] = {
        "mqtt": {"correlationData": CORRELATION_DATA, "bindingVersion": "0.2.0"}
    }
    params = {
        "rigId": {"description": "the rig's rig_id (its rig file); its broker user too"},
        "command": {
            "enum": list(COMMANDS),
            "description": "allowed by default: "
            + ", ".join(DEFAULT_COMMANDS)
            + "; a rig file's mqtt.commands may change the list",
        },
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, (address, message, qos, retain, about) in CHANNELS.items():
        used = {"rigId": params["rigId"]}
        if "{command}" in address:
            used["command"] = params["command"]
        channels[name] = {
            "address": f"als/{{rigId}}/{address}" if address else None,
            "description": about,
            **({"parameters": used} if address else {}),
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        if name == "reply":
            continue  # part of the command operation
        op: dict[str, Any] = {
            "action": RECEIVE if name == "command" else SEND,
            "channel": {"$ref": f"#/channels/{name}"},
            "bindings": {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": "0.2.0"}},
        }
        if name == "command":
            op["reply"] = {
                "address": {
                    "location": "$message.payload#/reply_to",
                    "description": "MQTT 5: the request's Response Topic property; MQTT 3.1.1:"
                    " the body's reply_to. Either must lie under als/{rigId}/reply/; otherwise,"
                    " and without either, als/{rigId}/reply/ followed by what followed cmd/",
                },
                "channel": {"$ref": "#/channels/reply"},
            }
            op["description"] = (
                "MQTT 5: answered on the request's Response Topic (under als/{rigId}/reply/)"
                " with its Correlation Data; MQTT 3.1.1: on the body's reply_to, echoing its"
                " correlation; default topic als/{rigId}/reply/{command}"
            )
        operations[f"{RECEIVE if name == 'command' else 'publish'}_{name}"] = op
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "alsctl supervisory API",
            "version": version("alsctl"),
            "description": "A Li-ALS rig controller publishes its treatment and obeys"
            " allow-listed commands (docs/mqtt.md). Not for clinical use.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "bench": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "description": "config/mosquitto/mosquitto.conf",
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
            },
            "tls": {
                "host": "broker.example:8883",
                "protocol": "secure-mqtt",
                "description": "the same over TLS (mqtts:// URL)",
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "userPassword": {
                    "type": "userPassword",
                    "description": "a user per rig (its rig_id) and dashboard users; no"
                    " anonymous access (config/mosquitto/acl)",
                }
            },
        },
    }


class _Plain(yaml.SafeDumper):
    """No anchors and aliases: each channel reads whole on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def asyncapi_yaml() -> str:
    header = "# Generated by `alsctl asyncapi` from controller/mqtt/models.py: do not edit.\n"
    body = yaml.dump(document(), Dumper=_Plain, sort_keys=False, width=100, allow_unicode=True)
    return header + body
