"""End to end at a real terminal: `alsctl run` in tmux on a serial rig (`alsctl firmware-sim`
on a pty, lockstep clock: the test does not depend on the machine's load). Air in the return
line is injected; the operator sees the alarm in words, acknowledges (A), resumes (R), stops
(X) and confirms (y); the session ends `stopped`, every key journaled from `console`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from controller import journal as jr
from controller.config.loading import load_rig, to_yaml
from controller.config.scenario import Scenario
from controller.outcome import EXIT_CODES, Outcome
from tests.console.helpers import short_pe
from tests.sim_process import firmware_sim_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    """A real terminal is this test's point: without tmux it fails, it never skips."""
    assert shutil.which("tmux") is not None, "tmux is missing: run `make system-deps`"


class Tmux:
    """One tmux server of the test's own (its own socket), one window of 160 x 50."""

    def __init__(self, command: str) -> None:
        self.socket = f"alsctl-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "50", command)
        # a detached session may keep the default 80 x 24 all the same (tmux >= 3.1)
        self.tmux("set-option", "-t", "t", "window-size", "manual")
        self.tmux("resize-window", "-t", "t", "-x", "160", "-y", "50")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the screen after {timeout_s} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_the_console_in_tmux_over_serial(tmp_path: Path) -> None:
    rig = load_rig("config/rigs/sim.yaml")
    rx = short_pe()
    (tmp_path / "rig.yaml").write_text(to_yaml(rig))
    (tmp_path / "rx.yaml").write_text(to_yaml(rx))
    # connecting ends at about 5 min of rig time: air 2 min into the exchange
    air = Scenario.model_validate(
        {"name": "air", "events": [{"at_s": 420, "fault": "air_bubble", "duration_s": 2}]}
    )
    db = tmp_path / "journal.db"
    with firmware_sim_process(tmp_path, rig, rx, scenario=air) as port:
        # the terminal's size is tmux's: no COLUMNS or LINES inherited from pytest
        path = os.environ.get("PYTHONPATH", ROOT)
        run = " ".join(
            [
                f"env -u COLUMNS -u LINES PYTHONPATH={path} TERM=xterm-256color",
                sys.executable, "-m", "controller", "run", "--port", port,
                "--rig", str(tmp_path / "rig.yaml"), "--prescription", str(tmp_path / "rx.yaml"),
                "--checklist", "clear", "--journal", str(db),
            ]
        )  # fmt: skip
        term = Tmux(f"cd {ROOT} && {run}; echo EXIT=$?; sleep 60")
        try:
            term.wait_for("air in the return line", 50)
            term.wait_for("all pumps stopped, venous clamp closed")
            term.wait_for("latched until acknowledged")
            term.keys("a")
            term.wait_for("console: acknowledge -> done")
            term.keys("r")
            term.wait_for("console: resume -> done")
            term.keys("x")
            term.wait_for("Stop the treatment and rinse the blood back?")
            term.keys("y")
            term.wait_for("console: stop -> done")
            term.wait_for("the run has ended", 120)
            term.keys("q")
            shown = term.wait_for("EXIT=", 60)
        finally:
            term.close()
    assert f"EXIT={EXIT_CODES[Outcome.STOPPED]}" in shown, shown
    assert "outcome: stopped" in shown
    record = jr.load(db, 1, trends=False)
    assert record.row.outcome == "stopped"
    console = [
        (e.body["request"], e.body["result"])
        for e in record.events
        if e.kind == "operator" and e.body["cause"] == "console"
    ]
    assert console == [("acknowledge", "done"), ("resume", "done"), ("stop", "done")]
