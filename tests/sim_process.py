"""`alsctl firmware-sim` in a process of its own, as an operator would start it.

On the lockstep clock unless a test asks for the wall clock: the controller then grants the
rig its time, so a test's outcome does not depend on how busy the machine is
(docs/protocol.md, "Lockstep clock"). `speed` is the pace when no controller grants time
(before the first HELLO, after a controller was killed).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from controller.config.loading import to_yaml
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario


@contextlib.contextmanager
def firmware_sim_process(
    tmp_path: Path,
    rig: RigConfig,
    prescription: Prescription | None = None,
    speed: float = 1.0,
    scenario: Scenario | None = None,
    tcp: str | None = None,
    clock: str = "lockstep",
) -> Iterator[str]:
    """Start it on a new pty (or TCP, `host:port`); yield the port it prints; stop it after."""
    rig_file = tmp_path / "rig.yaml"
    rig_file.write_text(to_yaml(rig))
    cmd = [sys.executable, "-m", "controller", "firmware-sim", "--rig", str(rig_file)]
    if prescription is not None:
        rx_file = tmp_path / "prescription.yaml"
        rx_file.write_text(to_yaml(prescription))
        cmd += ["--prescription", str(rx_file)]
    if scenario is not None:
        scenario_file = tmp_path / "scenario.yaml"
        scenario_file.write_text(to_yaml(scenario))
        cmd += ["--scenario", str(scenario_file)]
    cmd += ["--speed", str(speed), "--clock", clock]
    if tcp is not None:
        cmd += ["--tcp", tcp]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = "#"
        while line.startswith("#"):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"firmware-sim exited with {proc.wait()}")
        yield line.strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
