"""Compile the hot modules with mypyc, in place (`make build`; `make install` runs it).

A whole treatment is hundreds of thousands of control cycles of the simulated rig and the
controller; compiled, these modules run about twice as fast, which is what lets a 6-h
treatment run in seconds (bench/treatment_speed.py). The sources stay the truth: the
compiled code is the same program (mypyc keeps Python's semantics and IEEE doubles, so every
result is bit-for-bit the same, as the suite's snapshot and drill-equality tests check), and
without a build the same modules simply run as Python.

A `.so` older than its `.py` is refused at import (controller/__init__.py), so an edited
module never runs stale compiled code.

Usage: python tools/build_native.py [--clean | --list]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The hot path of a simulated treatment: the rig's firmware and physics, the control loop
#: and its safety checks. mypy --strict clean, no monkeypatching or subclassing from Python.
MODULES = (
    "firmware_sim/physics.py",
    "firmware_sim/firmware.py",
    "firmware_sim/faults.py",
    "controller/safety/interlocks.py",
    "controller/safety/alarms.py",
    "controller/safety/balance.py",
    "controller/safety/return_line.py",
    "controller/safety/pressure_pair.py",
    "controller/safety/sensors.py",
    "controller/safety/hazards.py",
    "controller/control/accounting.py",
    "controller/control/loop.py",
    "controller/control/actuator.py",
)
#: One shared library for the group, inside the package, so an editable install finds it
GROUP = "controller._native"


def built() -> list[Path]:
    """The compiled files now in the tree (the modules' and the group's)."""
    return [p for pkg in ("controller", "firmware_sim") for p in (ROOT / pkg).rglob("*.so")]


def main() -> None:
    if sys.argv[1:] == ["--list"]:  # for make: what the build depends on
        print(" ".join(MODULES))
        return
    for path in built():
        path.unlink()
    if sys.argv[1:] == ["--clean"]:
        return
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]  # no stubs: not a dependency

    setup(
        name="alsctl-native",
        ext_modules=mypycify(list(MODULES), opt_level="3", group_name=GROUP),
        script_args=["--quiet", "build_ext", "--inplace", "--build-temp", "build/native"],
    )
    # A module's own extension is a small shim into the group's library, rebuilt only when
    # the shim's C changes: after a good build every one is current, so mark it so for the
    # staleness check at import
    for path in built():
        path.touch()


if __name__ == "__main__":
    main()
