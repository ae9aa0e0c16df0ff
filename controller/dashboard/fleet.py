"""What the dashboard knows of every rig, built only from the MQTT API (docs/mqtt.md).

Pure: messages in (`apply`, with the wall time they arrived), JSON-ready views out (`tile`,
`detail`), so the server, the tests and the load bench share it. A rig is `offline` when its
retained status says so (the broker's last will), `stale` when it says `online` but its
telemetry is older than `STALE_S` (a frozen controller keeps its connection), else `online`.
Tiles sort with alarms first (highest priority, then the oldest), as a supervisor scans them.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from controller.mqtt.models import ROOT
from controller.words import alarm_words, event_words

#: docs/mqtt.md: telemetry older than this marks a rig stale
STALE_S = 5.0
#: The rig view's trends: the last 30 min of rig time, one point per rig-second at most
TREND_S = 30 * 60
TREND_POINTS = TREND_S
#: The rig view's event log, newest last
LOG_LINES = 200
RANK = {"high": 0, "medium": 1, "low": 2}
#: Phases that hold the treatment: no time remaining is shown ("held")
HELD = frozenset({"alarm", "paused"})
#: The time remaining needs this much rig time of steady progress in the phase
RATE_MIN_MS = 20_000
#: ... sampled this often (rig time), whatever the telemetry rate
RATE_EVERY_MS = 2_000
#: What the trends show, from each telemetry message
TRENDS = {
    "access": ("pressure", "access"),
    "pre_separator": ("pressure", "pre_separator"),
    "return": ("pressure", "return"),
    "blood": ("flow", "blood"),
    "plasma": ("flow", "plasma"),
    "loop": ("flow", "loop"),
    "exchanged_ml": (None, "exchanged_ml"),
    "processed_ml": (None, "processed_ml"),
    "balance_ml": (None, "balance_ml"),
    "map": (None, "map"),
}


def alarm_view(a: dict[str, Any]) -> dict[str, Any]:
    """An active alarm as the dashboard shows it: in words, with the rig's response."""
    words = alarm_words(a["alarm"])
    return {
        "alarm": a["alarm"],
        "priority": a["priority"],
        "what": words.what,
        "response": words.response,
        "next": words.next_step,
        "acknowledged": a.get("acknowledged", False),
        "present": a.get("present", True),
        "detail": a.get("detail", ""),
        "raised_ms": a.get("raised_ms", 0),
    }


@dataclass(slots=True)
class Rig:
    rig_id: str
    status: str = "unknown"
    state: dict[str, Any] | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    audio_paused: bool = False
    telemetry: dict[str, Any] | None = None
    #: wall time the last message of any kind arrived, and the last telemetry
    updated_at: float | None = None
    telemetry_at: float | None = None
    trend: deque[tuple[int, list[float]]] = field(
        default_factory=lambda: deque(maxlen=TREND_POINTS)
    )
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    seen_id: int = 0
    #: (rig time, done, measure) of the phase's progress, for the time remaining
    rate: deque[tuple[int, float, str]] = field(default_factory=lambda: deque(maxlen=64))


class Fleet:
    """Every rig seen on the broker; `apply` says which rig a message changed."""

    def __init__(self) -> None:
        self.rigs: dict[str, Rig] = {}

    def apply(self, topic: str, payload: bytes, now: float) -> str | None:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != ROOT or parts[2] in ("cmd", "reply"):
            return None
        rig = self.rigs.setdefault(parts[1], Rig(parts[1]))
        rig.updated_at = now
        kind = "/".join(parts[2:])
        if kind == "status":
            rig.status = payload.decode(errors="replace")
            if rig.status == "online":
                rig.seen_id = 0  # a new run may start a new journal: its numbers start over
            return rig.rig_id
        try:
            body = json.loads(payload)
            self._apply(rig, kind, body, now)
        except (ValueError, KeyError, TypeError):
            return None  # one odd message is not the end of the dashboard
        return rig.rig_id

    def _apply(self, rig: Rig, kind: str, body: dict[str, Any], now: float) -> None:
        if kind == "telemetry":
            rig.telemetry = body
            rig.telemetry_at = now
            t = int(body["t_ms"])
            if not rig.trend or t >= rig.trend[-1][0] + 1000 or t < rig.trend[-1][0]:
                if rig.trend and t < rig.trend[-1][0]:
                    rig.trend.clear()  # a new session: its time starts over
                row = [float(body[g][k] if g else body[k]) for g, k in TRENDS.values()]
                rig.trend.append((t, row))
                while rig.trend and rig.trend[0][0] < t - TREND_S * 1000:
                    rig.trend.popleft()
        elif kind == "state":
            rig.state = body
            rig.alarms = [alarm_view(a) for a in body["alarms"]]
            progress, t = body.get("progress"), int(body["t_ms"])
            if rig.rate and t < rig.rate[-1][0]:
                rig.rate.clear()  # a new session: its time starts over
            if progress and (not rig.rate or t >= rig.rate[-1][0] + RATE_EVERY_MS):
                rig.rate.append((t, progress["done"], progress["what"]))
        elif kind == "alarms/active":
            rig.alarms = [alarm_view(a) for a in body["alarms"]]
            rig.audio_paused = body["audio_paused"]
        elif kind in ("alarms", "events"):
            if body["id"] <= rig.seen_id:
                return  # a copy (QoS 1 after an outage)
            rig.seen_id = body["id"]
            if kind == "alarms":
                text = "alarm " + event_words("alarm", body)
                priority = body["priority"]
            else:
                text = event_words(body["kind"], body["body"])
                priority = ""
            rig.log.append({"t_ms": body["t_ms"], "text": text, "priority": priority})

    # -- views ----------------------------------------------------------------------------
    @staticmethod
    def status(rig: Rig, now: float) -> str:
        silent = rig.telemetry_at is not None and now - rig.telemetry_at > STALE_S
        return "stale" if rig.status == "online" and silent else rig.status

    @staticmethod
    def remaining_ms(rig: Rig) -> float | None:
        """Time left in the phase at its recent rate of progress (rig time)."""
        state = rig.state
        progress = state.get("progress") if state else None
        if not progress or not progress["target"] or len(rig.rate) < 2:
            return None
        if Fleet.held(rig):
            return None  # nothing progresses while a pause or an alarm holds the phase
        t1, d1, what = rig.rate[-1]
        t0, d0, what0 = next(((t, d, w) for t, d, w in rig.rate if t1 - t <= 60_000), rig.rate[0])
        if what0 != what or t1 - t0 < RATE_MIN_MS or d1 <= d0:
            return None  # no steady rate yet (a phase just begun, its pumps ramping)
        left: float = (progress["target"] - progress["done"]) / ((d1 - d0) / (t1 - t0))
        return max(0.0, left)

    @staticmethod
    def held(rig: Rig) -> bool:
        """A pause or an alarm holds the phase: pages show "held", not a time remaining."""
        return (rig.state or {}).get("phase") in HELD

    def tile(self, rig: Rig, now: float) -> dict[str, Any]:
        state = rig.state or {}
        alarms = sorted(rig.alarms, key=lambda a: (RANK.get(a["priority"], 3), a["raised_ms"]))
        telemetry = rig.telemetry or {}
        return {
            "rig_id": rig.rig_id,
            "status": self.status(rig, now),
            "phase": state.get("phase", "?"),
            "interrupted": state.get("interrupted"),
            "progress": state.get("progress"),
            "remaining_ms": self.remaining_ms(rig),
            "held": self.held(rig),
            "t_ms": telemetry.get("t_ms", state.get("t_ms", 0)),
            "balance_ml": (state.get("volumes") or {}).get("fluid_balance_ml"),
            "alarm": alarms[0] if alarms else None,
            "alarms": len(alarms),
            "outcome": state.get("outcome"),
            "age_s": None if rig.updated_at is None else round(now - rig.updated_at, 1),
            "stamp": telemetry.get("stamp"),
            "prescription": (state.get("prescription") or {}).get("name"),
        }

    def tiles(self, now: float) -> list[dict[str, Any]]:
        """Alarms first (by priority, then the oldest), then by name."""
        tiles = [self.tile(r, now) for r in self.rigs.values()]
        return sorted(
            tiles,
            key=lambda t: (
                RANK.get(t["alarm"]["priority"], 3) if t["alarm"] else 4,
                t["alarm"]["raised_ms"] if t["alarm"] else 0,
                t["rig_id"],
            ),
        )

    def detail(self, rig_id: str, now: float, since_ms: int | None = None) -> dict[str, Any]:
        """The rig view: the tile, every alarm, the commands, the log and the trends (only
        the points after `since_ms` when given: a page appends them)."""
        rig = self.rigs.get(rig_id) or Rig(rig_id)
        state = rig.state or {}
        points = [(t, row) for t, row in rig.trend if since_ms is None or t > since_ms]
        return {
            **self.tile(rig, now),
            "alarm_list": sorted(rig.alarms, key=lambda a: RANK.get(a["priority"], 3)),
            "audio_paused": rig.audio_paused,
            "commands": state.get("commands", []),
            "allowed": state.get("allowed", []),
            "volumes": state.get("volumes"),
            "blood_flow_ml_min": (state.get("prescription") or {}).get("blood_flow_ml_min"),
            "log": list(rig.log)[-50:],
            "trend_names": list(TRENDS),
            "trend": [[t, *row] for t, row in points],
        }
