"""The MQTT API's description and its edges that need no broker: the AsyncAPI file is
current, and the broker address and credentials are read as documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.config.mqtt import MqttSettings
from controller.mqtt.asyncapi import asyncapi_yaml
from controller.mqtt.broker import Broker, MqttConfigError
from controller.mqtt.models import EVENT_KINDS, MESSAGES


def test_committed_asyncapi_is_current(tmp_path: Path) -> None:
    assert main(["asyncapi", "--out", str(tmp_path / "a.yaml")]) == 0
    assert (tmp_path / "a.yaml").read_text() == asyncapi_yaml()
    assert Path("docs/asyncapi.yaml").read_text() == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `alsctl asyncapi` (make schema)"
    )


def test_asyncapi_describes_every_message_and_resolves_every_ref() -> None:
    doc = yaml.safe_load(asyncapi_yaml())
    assert doc["asyncapi"] == "3.0.0"
    assert set(MESSAGES) <= set(doc["components"]["messages"])
    text = asyncapi_yaml()
    for line in text.splitlines():
        if "$ref: '#/" in line:
            node = doc
            for part in line.split("'#/")[1].rstrip("'").split("/"):
                node = node[part]  # a KeyError names the dangling reference
    telemetry = doc["components"]["schemas"]["Telemetry"]
    assert "dropped" in telemetry["required"]
    assert set(doc["components"]["schemas"]["Pressures"]["properties"]) >= {"return", "access"}


def test_asyncapi_says_what_is_on_the_wire() -> None:
    """The reply goes where the request says (no fixed address), correlation data is bytes,
    every message has its session and wall time, and event bodies are typed by kind."""
    doc = yaml.safe_load(asyncapi_yaml())
    assert doc["channels"]["reply"]["address"] is None
    reply = doc["operations"]["receive_command"]["reply"]
    assert reply["address"]["location"] == "$message.payload#/reply_to"
    assert "Response Topic" in reply["address"]["description"]
    messages = doc["components"]["messages"]
    for name in ("CommandRequest", "CommandResult"):
        correlation = messages[name]["bindings"]["mqtt"]["correlationData"]
        assert (correlation["type"], correlation["format"]) == ("string", "binary")
    schemas = doc["components"]["schemas"]
    for name in ("Telemetry", "State", "ActiveAlarms", "AlarmMessage", "CommandResult",
                 *(f"{k.title().replace('_', '')}Event" for k in EVENT_KINDS)):  # fmt: skip
        assert {"session", "stamp"} <= set(schemas[name]["required"]), name
    variants = [v["$ref"].rsplit("/", 1)[1] for v in schemas["EventMessage"]["oneOf"]]
    kinds = {schemas[v]["properties"]["kind"].get("const"): v for v in variants}
    assert set(kinds) == {*EVENT_KINDS, None}  # None: the kind of any later kind
    assert schemas["OtherEvent"]["properties"]["kind"]["not"] == {"enum": list(EVENT_KINDS)}
    assert schemas["TransitionBody"]["required"] == ["source", "dest", "trigger", "cause"]


def test_credentials_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = MqttSettings(password_file=str(secret))
    b = Broker.from_url("mqtt://broker.lan", settings, default_user="sim-01", env={})
    assert (b.host, b.port, b.username, b.password, b.tls) == (
        "broker.lan", 1883, "sim-01", "from-file", None,
    )  # fmt: skip
    env = {"ALSCTL_MQTT_USERNAME": "u", "ALSCTL_MQTT_PASSWORD": "p"}
    b = Broker.from_url("mqtts://broker.lan:9999", settings, default_user="sim-01", env=env)
    assert (b.port, b.username, b.password, b.tls is not None) == (9999, "u", "p", True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://me:pw@broker.lan", "no credentials in the URL"),
        ("http://broker.lan", "expected mqtt://HOST[:PORT]"),
        ("mqtt://broker.lan:99999", "Port out of range"),
    ],
)
def test_bad_broker_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(MqttConfigError, match=re.escape(message)):
        Broker.from_url(url, env={})


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    settings = MqttSettings(password_file=str(tmp_path / "nope"))
    with pytest.raises(MqttConfigError, match="nope: No such file"):
        Broker.from_url("mqtt://h", settings, env={})


def test_the_monitor_shows_each_event_once_and_the_rig_going_offline() -> None:
    from controller.mqtt.monitor import Board

    board = Board()
    event = {"id": 7, "session": 1, "t_ms": 65_000, "kind": "transition",
             "body": {"source": "exchange", "dest": "paused", "cause": "mqtt me"}}  # fmt: skip
    raw = json.dumps(event).encode()
    lines = board.apply("als/sim-01/status", b"online", 0.0)
    lines += board.apply("als/sim-01/events", raw, 0.0)
    lines += board.apply("als/sim-01/events", raw, 0.0)  # a QoS 1 copy after an outage
    body = {"command": "*", "result": "refused: over the rate limit", "count": 990}
    flood = {"id": 8, "session": 1, "t_ms": 66_000, "kind": "command", "body": body}
    lines += board.apply("als/sim-01/events", json.dumps(flood).encode(), 0.0)
    lines += board.apply("als/sim-01/status", b"offline", 0.0)
    assert lines == [
        "sim-01 online",
        "sim-01 0:01:05 exchange -> paused (mqtt me)",
        "sim-01 0:01:06 command * x990: refused: over the rate limit",
        "sim-01 offline",
    ]
    assert board.rigs["sim-01"].last == "command * x990: refused: over the rate limit"


def test_the_monitor_marks_an_event_an_earlier_run_left_and_this_start_replayed() -> None:
    from controller.mqtt.monitor import Board

    board = Board()
    left = {"id": 40, "session": 3, "t_ms": 65_000, "kind": "transition", "replayed": True,
            "body": {"source": "exchange", "dest": "rinse_back", "cause": "done"}}  # fmt: skip
    live = {**left, "id": 41, "session": 4, "replayed": False, "t_ms": 0}
    lines = board.apply("als/sim-01/status", b"online", 0.0)
    lines += board.apply("als/sim-01/events", json.dumps(left).encode(), 0.0)
    lines += board.apply("als/sim-01/events", json.dumps(left).encode(), 0.0)  # a copy
    lines += board.apply("als/sim-01/events", json.dumps(live).encode(), 0.0)
    assert lines == [
        "sim-01 online",
        "sim-01 0:01:05 exchange -> rinse_back (done) (replayed, session 3)",
        "sim-01 0:00:00 exchange -> rinse_back (done)",
    ]


def test_the_monitor_marks_a_silent_rig_stale_on_its_timer_and_orders_alarms() -> None:
    from controller.mqtt.monitor import STALE_S, Board

    board = Board()
    telemetry = {"t_ms": 1000, "flow": {"blood": 120}, "pressure": {"access": -120, "return": 70},
                 "map": 80}  # fmt: skip
    board.apply("als/sim-01/status", b"online", 0.0)
    board.apply("als/sim-01/telemetry", json.dumps(telemetry).encode(), 0.0)
    board.apply("als/sim-02/status", b"online", 0.0)
    active = {"alarms": [
        {"alarm": "map_low", "priority": "medium", "acknowledged": True},
        {"alarm": "air_return", "priority": "high", "acknowledged": False},
    ]}  # fmt: skip
    board.apply("als/sim-02/alarms/active", json.dumps(active).encode(), 0.0)
    rig = board.rigs["sim-01"]
    assert board.tick(STALE_S - 0.1) == [] and board.status(rig, STALE_S - 0.1) == "online"
    assert board.tick(STALE_S + 1) == ["sim-01 stale: no telemetry for 6 s"]
    assert board.tick(STALE_S + 2) == []  # told once
    assert board.status(rig, STALE_S + 2) == "stale"
    lines = board.apply("als/sim-01/telemetry", json.dumps(telemetry).encode(), 7.0)
    assert lines == ["sim-01 telemetry again"] and board.status(rig, 7.0) == "online"
    board.apply("als/sim-01/status", b"offline", 8.0)
    assert board.status(rig, 100.0) == "offline"  # the last will, not staleness
    # the high alarm first; the rig in alarm on top of the table
    assert [a[0] for a in board.rigs["sim-02"].alarms] == ["air_return", "map_low"]
    table = board.table(8.0)
    assert list(table.columns[0].cells) == ["sim-02", "sim-01"]
    cell = str(next(iter(table.columns[10].cells)))
    assert cell.index("HIGH") < cell.index("MEDIUM")
    assert "air in the return line" in cell


def test_the_monitor_says_alarms_and_operator_requests_in_words() -> None:
    from controller.mqtt.monitor import Board

    board = Board()
    alarm = {"id": 3, "t_ms": 1000, "kind": "raised", "alarm": "air_return", "priority": "high",
             "detail": "air detected"}  # fmt: skip
    op = {"id": 4, "t_ms": 2000, "kind": "operator",
          "body": {"request": "pause_audio", "cause": "mqtt nurse", "result": "done"}}  # fmt: skip
    lines = board.apply("als/sim-01/alarms", json.dumps(alarm).encode(), 0.0)
    lines += board.apply("als/sim-01/events", json.dumps(op).encode(), 0.0)
    assert lines[0].startswith("sim-01 0:00:01 alarm raised: air in the return line (high,")
    assert lines[1] == "sim-01 0:00:02 pause audio (mqtt nurse): done"
