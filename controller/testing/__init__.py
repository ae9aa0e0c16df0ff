"""The testing kit: drive the simulated rig and the real controller from a test.

For people who test controllers, safety behaviours or HAL backends against the simulated
rig, in their own project (docs/testing.md). With pytest, the plugin
(`controller.testing.plugin`, loaded by the `pytest11` entry point of an installed alsctl)
gives the fixtures `sim_hal`, `serial_pair` and `treatment`; everything here also works
without pytest, as async context managers and plain classes:

- `sim_rig(...)`, `serial_pair(...)`: a connected `HalRig` (the HAL, samples, heartbeats,
  `until`, `faults`), on the simulated rig or behind a serial link on a pty;
- `Treatments` / `start_run(...)`: the controller running a treatment (`Run`), from the
  start or from a phase, its rig's clock held between the test's awaits;
- `Injector`: faults as scenario files schedule them, in rig time or into a phase;
- `assert_safe`, `assert_balance_within`: what a safety test asserts most;
- `rig`, `prescription`, `scenario`, `checklist`: configs by shipped name or file, with
  changes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.testing.checks import assert_balance_within, assert_safe
    from controller.testing.errors import RunEnded, UntilTimeout
    from controller.testing.faults import Injector
    from controller.testing.files import checklist, prescription, rig, scenario
    from controller.testing.hal_rig import HalRig
    from controller.testing.rigs import SerialRig, serial_pair, sim_rig
    from controller.testing.run import Run, start_run
    from controller.testing.treatments import Treatments

#: Each name and the module it lives in. Imported on first use: the plugin is loaded into
#: every pytest run of an environment alsctl is installed in, and must not make the runs
#: that never use it load the controller.
_WHERE = {
    "assert_balance_within": "checks",
    "assert_safe": "checks",
    "RunEnded": "errors",
    "UntilTimeout": "errors",
    "Injector": "faults",
    "checklist": "files",
    "prescription": "files",
    "rig": "files",
    "scenario": "files",
    "HalRig": "hal_rig",
    "SerialRig": "rigs",
    "serial_pair": "rigs",
    "sim_rig": "rigs",
    "Run": "run",
    "start_run": "run",
    "Treatments": "treatments",
}
__all__ = [
    "HalRig",
    "Injector",
    "Run",
    "RunEnded",
    "SerialRig",
    "Treatments",
    "UntilTimeout",
    "assert_balance_within",
    "assert_safe",
    "checklist",
    "prescription",
    "rig",
    "scenario",
    "serial_pair",
    "sim_rig",
    "start_run",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
