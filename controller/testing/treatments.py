"""Starting treatments for a test, and ending every one of them after it.

The `treatment` fixture is one of these: a test calls it as many times as it needs runs,
each from the start or from a phase, on the simulated rig or over a serial link, and the
fixture's teardown ends whatever is still running (interrupted, the rig commanded safe).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.journal import Journal
from controller.testing import files
from controller.testing.checkpoints import caught_entering
from controller.testing.files import Given
from controller.testing.run import Run, start_run
from firmware_sim.server import FirmwareServer


class Treatments:
    """`await treatments(...)` starts a `Run`; `aclose()` ends them all."""

    def __init__(self, rig: RigConfig, prescription: Prescription) -> None:
        #: what a call without `rig=` or a prescription runs (the plugin: --alsctl-rig ...)
        self.rig = rig
        self.prescription = prescription
        self._stack = contextlib.AsyncExitStack()

    async def __call__(
        self,
        prescription: Given | None = None,
        *,
        start: str | None = None,
        rig: Given | None = None,
        scenario: Given | None = None,
        checklist: Given = "clear",
        auto_resume_s: float | None = None,
        max_rig_s: float | None = None,
        link: Literal["sim", "serial"] = "sim",
        journal: str | Path | None = None,
    ) -> Run:
        """A treatment started and held at its first cycle.

        - `prescription`, `rig`, `scenario`, `checklist`: a shipped example's name, a file, a
          model or a dict (`controller.testing.prescription("pe", exchange_volume_pv=0.2)`
          for a short one); the defaults are the plugin's `--alsctl-rig` and
          `--alsctl-prescription` (the shipped `sim` and `li_als`).
        - `start`: None, from the very start (self-test, priming, the pre-start gate answered
          by `checklist`, connection); or a phase (`"exchange"`, `"purification"` ...): from
          the instant a run of the same rig, prescription and checklist entered it (the
          first such test of the process pays for getting there).
        - `auto_resume_s`: acknowledge and resume an alarm once its conditions have been gone
          that long, as `alsctl run --auto-resume` does; None: the test is the operator.
        - `max_rig_s`: the run ends at this session time (rig s); None: 10 min past its plan.
        - `link`: `"serial"` runs it over a real serial link (`serial_pair`'s): slower, no
          `start`, and `at_s` counts the firmware's clock.
        - `journal`: an SQLite file the run is journaled in, as `alsctl run --journal`
          does (the summary's `session` is its number); closed after the test.
        """
        rig_config = self.rig if rig is None else files.rig(rig)
        rx = self.prescription if prescription is None else files.prescription(prescription)
        answers = files.checklist(checklist)
        faults = files.scenario(scenario) if scenario is not None else None
        journaled = None
        if journal is not None:
            journaled = Journal(journal)
            self._stack.callback(journaled.close)  # after the run: the stack unwinds LIFO
        if link == "serial":
            if start is not None:
                raise ValueError("a run starts from a checkpoint on the simulated rig only")
            server = FirmwareServer(rig_config, rx, faults, clock="lockstep")
            self._stack.push_async_callback(server.close)
            path = server.serve_pty()
            server.start_clock()
            serial = rig_config.serial.model_copy(update={"url": path})
            on_link = rig_config.model_copy(update={"backend": "serial", "serial": serial})
            run = await start_run(
                on_link, rx, gate=answers, auto_resume_s=auto_resume_s, max_rig_s=max_rig_s,
                server=server, journal=journaled,
            )  # fmt: skip
        else:
            midway = None
            if start is not None:
                midway = await caught_entering(rig_config, rx, start, answers)
                rx = midway.prescription  # as the gate left it (an override restricts it)
            run = await start_run(
                rig_config, rx, gate=answers, start=midway, scenario=faults,
                auto_resume_s=auto_resume_s, max_rig_s=max_rig_s, journal=journaled,
            )  # fmt: skip
        self._stack.push_async_callback(run.close)
        return run

    async def aclose(self) -> None:
        """End every run still going, then the links they ran on."""
        await self._stack.aclose()
