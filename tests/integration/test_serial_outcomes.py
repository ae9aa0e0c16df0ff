"""A serial treatment told to end (SIGTERM, as a service manager does): the rig commanded
safe, the outcome `interrupted`, the exact resume command printed and offered by
`alsctl sessions`, and that command finishing the session. Times shown are session times
on this backend too, not the firmware's uptime.

Real parts: `alsctl firmware-sim` and `alsctl run` as processes on a pty, SQLite, a signal.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from controller import journal as jr
from controller.config.loading import load_rig, to_yaml
from controller.outcome import EXIT_CODES, Outcome
from tests.integration.test_crash_resume import Lines
from tests.integration.test_treatment import rx
from tests.sim_process import firmware_sim_process

ALSCTL = [sys.executable, "-m", "controller"]


def test_sigterm_on_a_serial_rig_is_safe_resumable_and_timed_in_session_time(
    tmp_path: Path,
) -> None:
    rig = load_rig("config/rigs/sim.yaml").model_copy(update={"heartbeat_timeout_ms": 1000})
    p = rx("pe", exchange_volume_pv=None, exchange_volume_ml=300)
    (tmp_path / "rig.yaml").write_text(to_yaml(rig))
    (tmp_path / "rx.yaml").write_text(to_yaml(p))
    db = tmp_path / "journal.db"
    common = ["--journal", str(db), "--rig", str(tmp_path / "rig.yaml"), "--plain"]
    with firmware_sim_process(tmp_path, rig, p, speed=20.0) as port:  # lockstep
        proc = subprocess.Popen(
            [*ALSCTL, "run", "--port", port, "--prescription", str(tmp_path / "rx.yaml"),
             "--checklist", "clear", *common],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines = Lines(proc)
        try:
            lines.wait_for(r"-> exchange ", timeout=120)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = lines.all()
        assert proc.stderr is not None and proc.stdout is not None
        err = proc.stderr.read()
        proc.stderr.close()
        proc.stdout.close()
        assert code == EXIT_CODES[Outcome.INTERRUPTED], out + err
        command = f"alsctl run --resume 1 --port {port} --journal {db}"
        assert f"resume with: {command}" in out
        assert "outcome: interrupted: SIGTERM in exchange" in out
        # session time: the first transition at 0:00:00, and the self-test the summary
        # times is the one the transitions show (not the firmware's uptime)
        assert re.search(r"^0:00:00  idle -> self_test ", out, re.M), out
        shown = re.search(r"^(\d+):(\d\d):(\d\d)  self_test -> priming", out, re.M)
        assert shown is not None
        summary = jr.load(db, 1).snapshots["summary"]
        h, m, s = (int(x) for x in shown.groups())
        assert abs(h * 3600 + m * 60 + s - summary["phases_s"]["self_test"]) <= 1
        first = next(e for e in jr.load(db, 1).events if e.kind == "transition")
        assert first.t_ms == 0
        # offered where it can succeed, with the same command
        [row] = jr.sessions(db)
        assert (row.status(), row.outcome, row.ended_utc) == ("interrupted", "interrupted", None)
        listed = subprocess.run(
            [*ALSCTL, "sessions", "--journal", str(db)], capture_output=True, text=True, timeout=60
        ).stdout
        assert f"resume: {command}" in listed and " interrupted " in listed
        resumed = subprocess.run(
            [*ALSCTL, "run", "--resume", "1", "--port", port, "--yes", *common],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # SIGTERM commanded the safe state itself: the firmware says so, not its watchdog
    assert "firmware safe (command)" in resumed.stdout
    assert "outcome: completed" in resumed.stdout
    [row] = jr.sessions(db)
    assert (row.status(), row.outcome) == ("completed", "completed")
