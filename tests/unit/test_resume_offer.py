"""Which sessions `alsctl sessions` offers `--resume` for: only those a resume can continue.

The rule is `resume_refusal`, shared by the listing and by the resume itself, so the listing
never prints a command that would be refused. Rows as the journal reads them (`SessionRow`),
with a real process for "alive" (this one) and for "dead" (a child that has exited).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.app import resume_refusal
from controller.journal import SessionRow
from controller.journal.reading import HOST, STALE_S


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


NOW = datetime.now(UTC)
#: serial, started, never ended; the heartbeat is fresh but its process is gone (killed)
DEAD = SessionRow(
    id=7,
    started_utc=(NOW - timedelta(minutes=30)).isoformat(),
    rig_id="bench-01",
    backend="serial",
    prescription="PE",
    mode="pe",
    state="treatment.exchange",
    rig_time_ms=900_000,
    completed=False,
    ended_utc=None,
    pid=_dead_pid(),
    host=HOST,
    heartbeat_utc=NOW.isoformat(),
)


@pytest.mark.parametrize("state", ["idle", "self_test", "priming", "ready"])
def test_a_dead_session_before_the_treatment_is_not_offered(state: str) -> None:
    row = replace(DEAD, state=state)
    assert not row.running()
    refusal = resume_refusal(row)
    assert refusal is not None and f"stopped in {state}, before the treatment began" in refusal


@pytest.mark.parametrize(
    "state", ["treatment.connecting", "treatment.exchange", "treatment.exchange_collect"]
)
def test_a_dead_serial_session_in_the_treatment_is_offered(state: str) -> None:
    row = replace(DEAD, state=state)
    assert row.status() == "interrupted"
    assert resume_refusal(row) is None


def test_a_session_whose_heartbeat_went_stale_is_dead_whatever_its_pid() -> None:
    stale = (NOW - timedelta(seconds=STALE_S + 5)).isoformat()
    row = replace(DEAD, pid=os.getpid(), heartbeat_utc=stale)
    assert resume_refusal(row) is None


def test_a_running_session_is_not_offered() -> None:
    """Alive here (this process, a fresh heartbeat), or on another host (its pid cannot be
    checked from here, so the fresh heartbeat decides)."""
    fresh = datetime.now(UTC).isoformat()
    for row in (
        replace(DEAD, pid=os.getpid(), heartbeat_utc=fresh),
        replace(DEAD, host=f"not-{HOST}", heartbeat_utc=fresh),
    ):
        assert row.status() == "running"
        assert resume_refusal(row) == f"session 7 is running (process {row.pid} on {row.host})"


def test_a_simulated_session_is_not_offered() -> None:
    """The simulated rig ends with its controller's process: even dead mid-exchange, there
    is no rig left to continue on."""
    refusal = resume_refusal(replace(DEAD, backend="sim"))
    assert refusal is not None and "ran on sim" in refusal


def test_an_ended_session_is_not_offered() -> None:
    ended = replace(DEAD, ended_utc=NOW.isoformat(), outcome="aborted")
    assert resume_refusal(ended) == "session 7 ended (aborted): nothing to resume"


def test_an_unknown_backend_is_not_offered() -> None:
    """A backend whose package is not installed here: nothing known to outlive us."""
    assert resume_refusal(replace(DEAD, backend="nosuchrig")) is not None
