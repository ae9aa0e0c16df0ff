"""A scenario may not run two faults of one kind on one target at the same time: the
simulator keeps one per kind and target, so the second would silently replace the first."""

from typing import Any

import pytest

from controller.config.loading import validate
from controller.config.scenario import Scenario
from controller.errors import ConfigError


def event(at: float, fault: str, duration: float | None = None, **params: Any) -> dict:
    out: dict[str, Any] = {"at_s": at, "fault": fault, "params": params}
    if duration is not None:
        out["duration_s"] = duration
    return out


def lines(*events: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(Scenario, {"name": "s", "events": list(events)}, "s.yaml")
    return caught.value.lines()


def test_the_same_fault_on_the_same_pump_twice_at_once_names_both_events() -> None:
    (line,) = lines(
        event(10, "hypotension", 60),
        event(100, "pump_stall", 60, pump="blood"),
        event(130, "pump_stall", 10, pump="blood"),
    )
    assert line == (
        "s.yaml: events.2: 'pump_stall on blood from 130 s to 140 s' -> overlaps events.1"
        " (pump_stall on blood from 100 s to 160 s): one would replace the other"
        " (the same fault on the same target once at a time)"
    )


def test_a_fault_without_a_target_that_never_ends_overlaps_every_later_one() -> None:
    (line,) = lines(event(10, "hypotension"), event(4000, "hypotension", 5, drop_mmhg=10))
    assert "events.1:" in line and "overlaps events.0 (hypotension from 10 s to the end)" in line
    (line,) = lines(event(5, "air_bubble", 0), event(5, "air_bubble", 0))
    assert "events.1: 'air_bubble from 5 s to 5 s' -> overlaps events.0" in line


@pytest.mark.parametrize(
    "events",
    [
        [event(100, "pump_stall", 60, pump="blood"), event(120, "pump_stall", 60, pump="plasma")],
        [event(100, "bag_empty", 60, bag="waste_bag"), event(100, "bag_full", 60, bag="waste_bag")],
        [event(100, "pump_stall", 60, pump="blood"), event(160, "pump_stall", 5, pump="blood")],
        [event(1, "sensor_stuck", sensor="map"), event(1, "sensor_stuck", sensor="return")],
    ],
    ids=["different-pumps", "different-kinds", "back-to-back", "different-sensors"],
)
def test_faults_that_do_not_replace_each_other_are_fine(events: list[dict]) -> None:
    assert len(validate(Scenario, {"name": "s", "events": events}, "s.yaml").events) == 2
