"""A journal that cannot be written never ends a treatment badly: the `journal_unavailable`
alarm, the therapy going on, every record kept (fallback file, memory) and merged back; and
a journal that cannot be written before the start is refused in one line.

Real parts: SQLite files, a second process's lock, a file size limit (RLIMIT_FSIZE) on a real
`alsctl run`, an unprivileged user for a read-only file.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig
from controller.config.prescription import Prescription
from controller.control import Controller, View
from controller.journal import Committed, Journal
from controller.outcome import Outcome

ALSCTL = [sys.executable, "-m", "controller"]
RIG = load_rig("config/rigs/sim.yaml")
PE = {
    "name": "PE short",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "pe",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 900,
}


async def test_a_lock_held_past_the_busy_timeout_raises_the_alarm_and_the_therapy_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    seen: list[Committed] = []
    locked = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:  # another process's long transaction, as SQLite sees it
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        other.execute("ROLLBACK")
        other.close()

    holder = threading.Thread(target=hold_the_lock)
    refs: list[Controller] = []

    def operator(status: View) -> None:
        c = refs[0]
        if status.volumes.exchanged_ml >= 150 and not holder.is_alive() and not locked.is_set():
            holder.start()
            locked.wait(10)
        alarm = c.safety.alarms.active.get("journal_unavailable")
        shown = any(e.kind == "alarm" and e.body["alarm"] == "journal_unavailable" for e in seen)
        if shown and not release.is_set():
            release.set()  # the console showed it (kept, not yet journaled): let it come back
        if alarm is not None and not alarm.condition and not alarm.acknowledged:
            c.request("acknowledge", "operator: journal back")

    with Journal(db) as journal:
        journal.subscribe(seen.extend)
        summary, _ = await run_treatment(
            RIG,
            Prescription.model_validate(PE),
            RunOptions(
                gate=CLEAR,
                journal=journal,
                on_view=operator,
                on_controller=refs.append,
                speed=200.0,  # paced: the lock lands mid-exchange and the run outlives it
            ),
        )
    holder.join(10)
    # the therapy went on, untouched: the whole sequence, the prescribed volume
    assert summary.outcome is Outcome.COMPLETED, summary.outcome_detail
    assert [t.dest for t in summary.transitions][-3:] == ["exchange", "rinse_back", "done"]
    assert abs(summary.volumes.exchange_ml - 900) < 1
    assert summary.journal is not None and not summary.journal.unavailable
    assert summary.journal.recovered_utc is not None and summary.journal.kept_events > 0
    # everything the console saw is in the journal, in the same order, nothing twice
    record = jr.load(db, 1)
    ids = [e.id for e in record.events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert [(e.kind, e.body) for e in seen] == [(e.kind, e.body) for e in record.events]
    alarm = [(e.body["kind"], e.body["alarm"]) for e in record.events if e.kind == "alarm"]
    assert ("raised", "journal_unavailable") in alarm
    assert ("cleared", "journal_unavailable") in alarm
    assert record.row.outcome == "completed" and record.row.ended_utc is not None
    assert not list(tmp_path.glob("*.unjournaled.jsonl"))  # merged, then removed


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_mid_treatment_keeps_the_records_and_the_treatment_completes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE))
    Journal(db).close()  # created with room to spare; the limit bites as it grows
    run = subprocess.run(
        [*ALSCTL, "run", "--sim", "--plain", "--prescription", str(rx), "--checklist", "clear",
         "--journal", str(db), "--summary-json", str(tmp_path / "s.json")],
        capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: _limit_file_size(300_000),
    )  # fmt: skip
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    assert "outcome: completed" in run.stdout
    assert "ALARM raised journal_unavailable (high)" in run.stdout  # shown while unavailable
    assert "JOURNAL UNAVAILABLE since " in run.stdout
    assert "events kept in " + str(tmp_path / "j.db.unjournaled.jsonl") in run.stdout
    # whoever opens the journal next (here already the report, once the writer had let go
    # of its file) merges what was kept: the session is whole, in order
    listed = subprocess.run(
        [*ALSCTL, "sessions", "--journal", str(db)], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0 and " completed " in listed.stdout, listed.stdout
    assert not (tmp_path / "j.db.unjournaled.jsonl").exists()
    record = jr.load(db, 1)
    dests = [e.body["dest"] for e in record.events if e.kind == "transition"]
    assert dests[-2:] == ["rinse_back", "done"]
    ids = [e.id for e in record.events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert record.snapshots["summary"]["outcome"] == "completed"


def _refused(journal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ALSCTL, "run", "--sim", "--checklist", "clear", "--journal", str(journal)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_journal_that_cannot_be_written_is_refused_before_the_start(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just text " * 200)
    real = tmp_path / "real.db"
    Journal(real).close()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(real.read_bytes()[:1500])
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    under_a_file = garbage / "j.db"
    for journal, why in (
        (garbage, "not an alsctl journal"),
        (truncated, "a damaged one"),
        (folder, "is not a file"),
        (under_a_file, "is not a folder"),
    ):
        done = _refused(journal)
        assert done.returncode == 2, (journal, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0] and "Traceback" not in done.stderr, lines
        assert "alsctl run:" not in done.stdout  # nothing started


def test_a_read_only_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    """As an unprivileged user (root writes any file): the journal belongs to someone else."""
    # pytest's own folders are private to root: a folder of its own that others may enter
    folder = Path(tempfile.mkdtemp(prefix="alsctl-ro-"))
    folder.chmod(0o755)
    db = folder / "j.db"
    Journal(db).close()
    db.chmod(0o644)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux setpriv is needed to run as another user"
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *ALSCTL, "run", "--sim",
         "--checklist", "clear", "--journal", str(db)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    shutil.rmtree(folder)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot" in lines[0] and "Traceback" not in done.stderr, lines
