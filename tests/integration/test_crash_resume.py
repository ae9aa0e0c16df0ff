"""The controller killed (`kill -9`) mid-treatment: the journal stays whole, and on a serial rig
`alsctl run --resume` finishes the session as if nothing had happened.

Real parts only: `alsctl run` and `alsctl firmware-sim` as processes, a real pty, a real
SQLite file, SIGKILL (no handler, no flush, no goodbye).
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig, to_yaml
from controller.config.scenario import Scenario
from tests.integration.test_serial_treatment import LOOP_SHORT
from tests.integration.test_treatment import rx
from tests.sim_process import firmware_sim_process

ALSCTL = [sys.executable, "-m", "controller"]
CLEAR_FILE = "config/checklists/clear.yaml"


class Lines:
    """A child's stdout read on a thread: lines as they come, with a way to wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # end of output
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(re.search(pattern, x) for x in self.lines) or "" in self.lines,
                timeout,
            )
            hit = next((x for x in self.lines if re.search(pattern, x)), None)
        assert found and hit is not None, f"never printed {pattern!r}: {''.join(self.lines)}"
        return hit

    def all(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_killed_at_random_points_the_journal_is_whole_and_keeps_what_it_showed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "journal.db"
    rng = random.Random(20261127)
    delays = sorted(rng.uniform(0.3, 4.0) for _ in range(8))
    shown_total = 0
    for delay in delays:
        proc = subprocess.Popen(
            [
                *ALSCTL,
                "run",
                "--sim",
                "--plain",
                "--journal",
                str(db),
                "--checklist",
                CLEAR_FILE,
                "--scenario",
                "config/scenarios/bad_day.yaml",
                "--auto-resume",
                "5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines = Lines(proc)
        lines.wait_for(r"^alsctl run:", timeout=60)  # started: the interpreter is up
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            _kill(proc)
        out = lines.all()
        assert proc.stdout is not None
        proc.stdout.close()
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept = dict(conn.execute("SELECT id, kind FROM event"))
        conn.close()
        # a line on the console is only ever printed after its commit: it must be there
        shown = {int(n) for n in re.findall(r"\[#(\d+)\]", out)}
        assert shown <= set(kept), f"shown but lost after kill at {delay:.2f} s"
        shown_total += len(shown)
    rows = jr.sessions(db)
    assert len(rows) == len(delays)
    assert shown_total > len(delays)  # the kills fell among events, not only before them
    # every session can be read and reported, however it ended
    for row in rows:
        record = jr.load(db, row.id)
        assert record.row.id == row.id


#: the loop starts during collection: purification needs more plasma to last long enough
#: (a few wall seconds at 40x) for the kill to land in it
LONGER_LOOP = {**LOOP_SHORT, "purification": {"processed_plasma_ml": 2500}}


#: On the lockstep clock (tests/sim_process.py): the controller grants the rig its time, so
#: a busy machine changes nothing. Once the controller is killed nobody grants: after 2 s of
#: wall time the firmware's clock runs on its own at this pace, and its watchdog stops the
#: pumps 1 s of rig time later, as on a real rig. (Before lockstep: 25x on the wall clock,
#: and in CI a resumed run met a heartbeat loss from a 25 ms stall.)
RESUME_SPEED = 25.0

#: air in the return line 5 min in: the controller is killed while in `alarm`
AIR = Scenario.model_validate(
    {"name": "air", "events": [{"at_s": 300, "fault": "air_bubble", "duration_s": 2}]}
)


@pytest.mark.timeout(300)  # two controllers over ~25 min of rig time at 25x
@pytest.mark.parametrize(
    ("kill_in", "changes", "scenario"),
    [
        ("exchange_collect", LOOP_SHORT, None),
        ("purification", LONGER_LOOP, None),
        ("alarm", LOOP_SHORT, AIR),
    ],
)
async def test_a_killed_controller_resumes_on_the_serial_rig_and_finishes_the_same(
    tmp_path: Path, kill_in: str, changes: dict[str, Any], scenario: Scenario | None
) -> None:
    rig = load_rig("config/rigs/sim.yaml").model_copy(update={"heartbeat_timeout_ms": 1000})
    p = rx("li_als", exchange_volume_pv=None, **changes)
    # long enough in rig time for the kill to land in `alarm` at lockstep pace (~0.1 s wall)
    auto = 60.0 if scenario else None
    reference, _ = await run_treatment(
        rig, p, RunOptions(gate=CLEAR, scenario=scenario, auto_resume_s=auto)
    )
    (tmp_path / "rig.yaml").write_text(to_yaml(rig))
    (tmp_path / "rx.yaml").write_text(to_yaml(p))
    db = tmp_path / "journal.db"
    common = ["--journal", str(db), "--rig", str(tmp_path / "rig.yaml"), "--plain"]
    if auto:
        common += ["--auto-resume", str(auto)]
    with firmware_sim_process(tmp_path, rig, p, speed=RESUME_SPEED, scenario=scenario) as port:
        proc = subprocess.Popen(
            [
                *ALSCTL,
                "run",
                "--port",
                port,
                "--prescription",
                str(tmp_path / "rx.yaml"),
                "--checklist",
                CLEAR_FILE,
                *common,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = Lines(proc)
        try:
            lines.wait_for(rf"-> {kill_in} ", timeout=120)
        finally:
            _kill(proc)  # also when it never got there: no process outlives the test
        assert proc.stderr is not None
        proc.stderr.close()
        lines.all()
        assert proc.stdout is not None
        proc.stdout.close()
        row = jr.sessions(db)[0]
        assert row.ended_utc is None and row.state == kill_in
        # nobody at a terminal to confirm: declined, nothing armed, the session unchanged
        declined = subprocess.run(
            [*ALSCTL, "run", "--resume", "last", "--port", port, *common],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert declined.returncode == 1 and "declined" in declined.stderr
        assert jr.sessions(db)[0] == row
        resumed = subprocess.run(
            [
                *ALSCTL,
                "run",
                "--resume",
                "last",
                "--port",
                port,
                "--yes",
                "--summary-json",
                str(tmp_path / "summary.json"),
                *common,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # the firmware had gone safe on its own when the heartbeats stopped (or was already,
    # for the air in the line)
    assert f"firmware safe ({'air' if kill_in == 'alarm' else 'heartbeat'})" in resumed.stdout
    assert "confirmed by --yes" in resumed.stdout
    summary = jr.load(db, 1).snapshots["summary"]
    assert summary["completed"], summary
    dests = [t["dest"] for t in summary["transitions"]]
    assert dests == [t.dest for t in reference.transitions], [
        (e.t_ms, e.kind, e.body) for e in jr.load(db, 1).events if e.kind != "pre_start"
    ]
    got: dict[str, Any] = summary["volumes"]
    want: dict[str, Any] = reference.volumes.model_dump()
    for name in ("exchange_ml", "processed_plasma_ml", "fluid_balance_ml", "filtrate_ml"):
        assert got[name] == pytest.approx(want[name], abs=5), name
    record = jr.load(db, 1)
    assert record.row.completed and record.row.ended_utc is not None
    resumed_event = next(e.body for e in record.events if e.kind == "resumed")
    assert resumed_event["phase"] == kill_in
    # the pumps ran on after the last checkpoint until the watchdog: the encoders' totals
    # counted it, and the resumed run took it into account
    moved = resumed_event["moved_while_away_ml"]
    if kill_in == "alarm":
        # it stayed safe until the alarm was acknowledged and resumed, as before the kill
        after = [
            e
            for e in record.events
            if e.id > next(x.id for x in record.events if x.kind == "resumed")
        ]
        first_transition = next(e.body for e in after if e.kind == "transition")
        assert first_transition["source"] == "alarm"
        assert any(e.kind == "operator" and e.body["request"] == "acknowledge" for e in after)
    else:
        # the kill can land in the very cycle that entered purification, whose commands
        # were sent before the machine moved on: the exchange's end had just stopped the
        # plasma side; the loop, running since the bag's threshold in collection, has not
        assert moved["blood"] > 0
        assert moved["plasma" if kill_in == "exchange_collect" else "loop"] > 0, moved
    assert len(jr.sessions(db)) == 1  # the same session, continued


def test_a_simulated_session_is_not_resumed_and_a_resume_needs_a_port(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    done = subprocess.run(
        [*ALSCTL, "run", "--sim", "--plain", "--journal", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # no checklist: refused at the gate, before any treatment
    assert done.returncode == 3  # stopped by the gate
    again = subprocess.run(
        [*ALSCTL, "run", "--resume", "1", "--port", "/dev/null", "--journal", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2
    # the simulated rig ended with its process (checked before anything else)
    assert "ran on sim" in again.stderr and "nothing to resume" in again.stderr
    sim = subprocess.run(
        [*ALSCTL, "run", "--resume", "1", "--journal", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sim.returncode == 1 and "give --port" in sim.stderr
