"""docs/safety.md's balanced-stops table: complete, and what the controller does.

Issue 15 item 3: for each hazard row the document must say which pumps stop, which go on,
and why that moves no net fluid. A hazard added to the table without a row there, or a
response changed without regenerating the page, would leave the document silently wrong;
these tests fail instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.safety_latency import DOC, alarm_ids, balance_section, balanced_stops
from controller.config.loading import load_rig
from controller.rig import PUMP_NAMES
from controller.safety.balance import balanced
from controller.safety.hazards import hazard_table


def _alarm_cells() -> list[tuple[str, list[str]]]:
    """(hazard title, alarm ids) of each row of the generated table."""
    cells = []
    for line in balanced_stops()[2:]:
        title, alarms = line.split(" | ")[:2]
        cells.append((title.lstrip("| "), re.findall(r"`([^`]+)`", alarms)))
    return cells


def test_every_hazard_of_the_table_has_a_row() -> None:
    rig = load_rig("config/rigs/sim.yaml")
    hazards = {h.id for h in hazard_table(rig.alarms, rig.link_lost_ms)}
    shown = {alarm.split(":", 1)[0] for _title, alarms in _alarm_cells() for alarm in alarms}
    assert hazards <= shown, f"no balanced-stops row for {sorted(hazards - shown)}"
    assert "firmware_safe" in shown


def test_every_alarm_id_of_every_hazard_has_exactly_one_row_per_condition() -> None:
    """Each alarm id (each bag, pump, sensor, valve) shows up, and never twice at once."""
    shown = [alarm for _title, alarms in _alarm_cells() for alarm in alarms]
    expected = {alarm for ids in alarm_ids().values() for alarm in ids}
    assert expected <= set(shown)
    for alarm in expected:
        # more than one row only when a condition (escalation, 30 s) changes the outcome
        rows = [line for line in balanced_stops()[2:] if f"`{alarm}`" in line]
        assert len(rows) == 1 or "| always |" not in "".join(rows), alarm


def test_every_stop_is_closed_over_partners() -> None:
    """The generator refuses an unbalanced stop; here the rows say so as well."""
    for line in balanced_stops()[2:]:
        stops = line.split(" | ")[4]
        stopped = {p for p in PUMP_NAMES if re.search(rf"\b{p}\b", stops)}
        assert stopped == balanced(stopped), line


def test_the_document_holds_the_generated_table() -> None:
    """docs/safety.md is regenerated whenever a response changes
    (`python -m bench.safety_latency --balance`, or `--write`)."""
    assert balance_section() in Path(DOC).read_text()
