"""Every place that reports a session says the same true thing about how it ended: the
summary, the journal's session row (`alsctl sessions`), the report and the exit status.

Real parts: the simulated rig in-process or `alsctl run` as a process, a real SQLite file,
real signals.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.cli import main, report_path
from controller.config.loading import load_rig
from controller.config.prescription import Prescription
from controller.control import Controller, View
from controller.journal import Journal
from controller.outcome import EXIT_CODES, Outcome
from controller.report import render
from controller.rig import SafeReason
from tests.integration.test_crash_resume import Lines

ALSCTL = [sys.executable, "-m", "controller"]
RIG = load_rig("config/rigs/sim.yaml")
PE_SHORT = {
    "name": "PE short",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "pe",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 600,
}
PE = Prescription.model_validate(PE_SHORT)


async def _journaled_run(tmp_path: Path, act: object = None) -> tuple[jr.SessionRecord, object]:
    """A PE run journaled to a real file; `act(controller, status)` plays the operator."""
    refs: list[Controller] = []

    def on_status(status: View) -> None:
        if callable(act):
            act(refs[0], status)

    with Journal(tmp_path / "j.db") as journal:
        summary, _ = await run_treatment(
            RIG,
            PE,
            RunOptions(gate=CLEAR, journal=journal, on_view=on_status, on_controller=refs.append),
        )
    return jr.load(tmp_path / "j.db", 1), summary


async def test_a_stopped_treatment_is_stopped_everywhere_with_who_why_and_how_far(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[bool] = []

    def stop_at_300(c: Controller, status: View) -> None:
        if status.volumes.exchanged_ml >= 300 and not asked:
            asked.append(True)
            c.request("stop", "mqtt dashboard: shift change")

    record, summary = await _journaled_run(tmp_path, stop_at_300)
    assert summary.outcome is Outcome.STOPPED and not summary.completed  # type: ignore[attr-defined]
    stop = summary.stop  # type: ignore[attr-defined]
    assert stop is not None
    assert (stop.by, stop.reason, stop.phase, stop.target, stop.unit) == (
        "mqtt dashboard",
        "shift change",
        "exchange",
        600,
        "mL",
    )
    assert 300 <= stop.done < 320
    assert summary.final_state == "done"  # type: ignore[attr-defined]  # rinsed back all the same
    detail = summary.outcome_detail  # type: ignore[attr-defined]
    assert detail.startswith("by mqtt dashboard (shift change) in exchange at exchanged 3")
    assert detail.endswith(" of 600 mL")
    # the journal's row, `alsctl sessions` and the report say the same
    assert (record.row.outcome, record.row.completed, record.row.detail) == (
        "stopped",
        False,
        detail,
    )
    assert record.row.status() == "stopped"
    assert main(["sessions", "--journal", str(tmp_path / "j.db")]) == 0
    listed = capsys.readouterr().out
    assert " stopped " in listed and detail in listed and "resume:" not in listed
    page = render(record)
    assert "Outcome: stopped</b>" in page and "Completed through rinse-back" not in page
    assert EXIT_CODES[Outcome.STOPPED] == 3


async def test_a_fault_is_a_fault_everywhere(tmp_path: Path) -> None:
    def break_the_link(c: Controller, status: View) -> None:
        if status.phase == "exchange":

            async def broken(*_args: object) -> None:
                raise RuntimeError("a bug in a command path")

            c.hal.set_pump = broken  # type: ignore[method-assign]

    record, summary = await _journaled_run(tmp_path, break_the_link)
    assert summary.outcome is Outcome.FAULT  # type: ignore[attr-defined]
    assert "a bug in a command path" in summary.outcome_detail  # type: ignore[attr-defined]
    assert record.row.outcome == "fault" and record.row.status() == "fault"
    assert "Outcome: fault</b>" in render(record)


async def test_an_interruption_commands_the_safe_state_and_is_journaled(tmp_path: Path) -> None:
    refs: list[Controller] = []

    def interrupt(c: Controller, status: View) -> None:
        if status.volumes.exchanged_ml >= 100 and c.interrupt_cause is None:
            refs.append(c)
            c.interrupt("SIGTERM")

    record, summary = await _journaled_run(tmp_path, interrupt)
    assert summary.outcome is Outcome.INTERRUPTED  # type: ignore[attr-defined]
    assert summary.outcome_detail == "SIGTERM in exchange"  # type: ignore[attr-defined]
    firmware = refs[0].hal.firmware  # type: ignore[attr-defined]
    assert firmware.safe and firmware.reason == SafeReason.COMMAND  # pumps stopped
    event = next(e for e in record.events if e.kind == "interrupted")
    assert event.body == {"cause": "SIGTERM", "phase": "exchange"}
    # a simulated rig ends with its process: the session is over, and not resumable
    assert record.row.ended_utc is not None and record.row.status() == "interrupted"
    assert summary.resume is None  # type: ignore[attr-defined]


def _sim_run(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump({**PE_SHORT, "exchange_volume_ml": 3000}))
    return subprocess.Popen(
        [
            *ALSCTL, "run", "--sim", "--plain", "--prescription", str(rx), "--speed", "100",
            "--checklist", "clear", "--journal", str(tmp_path / "j.db"),
            "--summary-json", str(tmp_path / "s.json"), *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_the_run_safely_with_its_summary(
    tmp_path: Path, sig: signal.Signals
) -> None:
    proc = _sim_run(tmp_path)
    lines = Lines(proc)
    try:
        lines.wait_for(r"-> exchange ", timeout=60)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == EXIT_CODES[Outcome.INTERRUPTED] == 6
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = lines.all()
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    name = "SIGINT (Ctrl-C)" if sig is signal.SIGINT else "SIGTERM"
    assert f"outcome: interrupted: {name} in exchange" in out, out + err
    assert f"interrupted: cause {name}, phase exchange" in out  # journaled, then shown
    assert "report: " in out and "resume with" not in out  # simulated: nothing to resume
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outcome"] == "interrupted" and not summary["completed"]
    row = jr.sessions(tmp_path / "j.db")[0]
    assert (row.outcome, row.status()) == ("interrupted", "interrupted")
    assert "Traceback" not in err


def test_sessions_tells_a_running_session_from_a_dead_one(tmp_path: Path) -> None:
    proc = _sim_run(tmp_path)
    lines = Lines(proc)
    try:
        lines.wait_for(r"-> exchange ", timeout=60)
        [row] = jr.sessions(tmp_path / "j.db")
        assert row.running() and row.status() == "running"
        listed = subprocess.run(
            [*ALSCTL, "sessions", "--journal", str(tmp_path / "j.db")],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert " running " in listed and "resume:" not in listed
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no goodbye
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines.all()
    for stream in (proc.stdout, proc.stderr):
        assert stream is not None
        stream.close()
    [row] = jr.sessions(tmp_path / "j.db")
    assert row.ended_utc is None and not row.running() and row.status() == "interrupted"
    listed = subprocess.run(
        [*ALSCTL, "sessions", "--journal", str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    # dead, but on the simulated rig: no resume is offered (it could not succeed)
    assert " interrupted " in listed and "resume:" not in listed


def test_reports_of_two_journals_in_one_folder_do_not_overwrite_each_other(
    tmp_path: Path,
) -> None:
    assert report_path(tmp_path / "a.db", 1) != report_path(tmp_path / "b.db", 1)
    assert report_path(tmp_path / "a.db", 1) != report_path(tmp_path / "a.db", 2)
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    for journal in ("a.db", "b.db"):
        done = subprocess.run(
            [*ALSCTL, "run", "--sim", "--plain", "--prescription", str(rx), "--checklist",
             "clear", "--journal", str(tmp_path / journal)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"report: {report_path(tmp_path / journal, 1)}" in done.stdout
    assert (
        report_path(tmp_path / "a.db", 1).is_file() and report_path(tmp_path / "b.db", 1).is_file()
    )


def _alsctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALSCTL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_rig_files_backend_is_obeyed_and_never_falls_back_to_simulation(
    tmp_path: Path,
) -> None:
    no_port = tmp_path / "no-port.yaml"
    no_port.write_text(yaml.safe_dump({"rig_id": "bench-02", "backend": "serial"}))
    done = _alsctl(
        "run", "--rig", str(no_port), "--checklist", "clear", "--journal", str(tmp_path / "j.db")
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{no_port}: serial.url: (missing) -> a serial rig needs its port"
        " (set serial.url in the rig file, or give --port)"
    ]
    assert not (tmp_path / "j.db").exists()  # nothing ran
    # the shipped bench rig names /dev/ttyUSB0: a clear link error, not a simulated run
    gone = tmp_path / "no-such-port"
    done = _alsctl("run", "--rig", "bench", "--port", str(gone), "--checklist", "clear",
                   "--journal", str(tmp_path / "j.db"))  # fmt: skip
    assert done.returncode == 1 and f"cannot open {gone}" in done.stderr
    assert "on serial rig bench-01" in done.stdout and "sim" not in done.stdout
    assert not (tmp_path / "j.db").exists() or jr.sessions(tmp_path / "j.db") == []
    done = _alsctl("run", "--sim", "--port", "/dev/null", "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 1 and "simulated rig has none" in done.stderr
    done = _alsctl("run", "--backend", "serial", "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 2 and "serial.url: (missing)" in done.stderr


def test_a_run_that_never_connected_leaves_no_session(tmp_path: Path) -> None:
    """A port that cannot be opened, and one that opens but where nobody answers HELLO (a
    pty with nothing behind it: a rig switched off, the wrong adapter): a clear error, a
    non-zero exit, no session to list or resume. The serial link gives up on HELLO after its
    few short tries (SerialHal's ack timeout and retries), so this takes well under a
    second."""
    db = tmp_path / "j.db"
    done = _alsctl("run", "--port", str(tmp_path / "absent"), "--checklist", "clear",
                   "--journal", str(db))  # fmt: skip
    assert done.returncode == 1 and "cannot open" in done.stderr
    assert not db.exists() or jr.sessions(db) == []
    master, slave = os.openpty()
    try:
        silent = os.ttyname(slave)
        done = _alsctl("run", "--port", silent, "--checklist", "clear", "--journal", str(db))
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == ["alsctl: hello: no answer after 4 tries"]
    assert f"on serial rig sim-01 on {silent}" in done.stdout
    assert not db.exists() or jr.sessions(db) == []


def test_the_report_help_names_the_file_report_writes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alsctl report --help` tells where the report goes by default: the name report_path
    gives it, not an older one."""
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at hyphens on a narrow terminal
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert str(report_path("out/journal.db", 1)) in capsys.readouterr().out


def test_the_installed_package_runs_from_any_directory(tmp_path: Path) -> None:
    """A wheel built from this tree, installed apart from it, run from elsewhere: the
    examples come from the package, not from a checkout."""
    root = Path(__file__).resolve().parents[2]
    wheels, target, away = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    away.mkdir()
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info into the tree
    shutil.copytree(
        root,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "out", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("alsctl-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    site = next(p for p in sys.path if p.endswith("site-packages"))
    # -S: no site-packages of ours, so no editable link back to this checkout
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{site}"}

    def installed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", "-m", "controller", *args],
            capture_output=True, text=True, timeout=120, cwd=away, env=env,
        )  # fmt: skip

    found = subprocess.run(
        [sys.executable, "-S", "-c", "import controller; print(controller.__file__)"],
        capture_output=True, text=True, cwd=away, env=env,
    )  # fmt: skip
    assert found.stdout.startswith(str(target)), found
    version = installed("--version")
    assert version.returncode == 0 and version.stdout.strip() == "alsctl 0.1.0"
    run = installed("run", "--sim", "--plain", "--checklist", "clear", "--prescription", "pe")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "outcome: completed" in run.stdout
    assert (away / "out" / "journal.db").is_file()
    assert installed("init", "mine").returncode == 0
    assert (away / "mine" / "rigs" / "sim.yaml").is_file()
    assert (away / "mine" / "mosquitto" / "mosquitto.conf").is_file()
    help_text = installed("run", "--help").stdout
    assert "examples:" in help_text and "exit status:" in help_text
    diagram = installed("diagram")
    assert diagram.returncode == 0 and "stateDiagram" in diagram.stdout
    assert not (away / "docs").exists()  # generated documents go to stdout unless told
    schema = installed("schema", "summary")
    assert json.loads(schema.stdout)["properties"]["outcome"]


def test_the_journal_file_migrates_forward_and_old_sessions_still_list(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(jr.MIGRATIONS[0] + ";PRAGMA user_version=1;")
    conn.execute(
        "INSERT INTO session (started_utc, rig_id, backend, prescription, mode, state,"
        " completed, ended_utc) VALUES ('2026-01-01T00:00:00+00:00', 'sim-01', 'sim', 'x',"
        " 'pe', 'done', 1, '2026-01-01T01:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    [row] = jr.sessions(db)
    assert row.status() == "completed" and row.outcome is None
