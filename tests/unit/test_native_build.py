"""The compiled build (tools/build_native.py) never runs code that is not the source's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import controller
from controller import compiled_modules, stale_native

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def test_a_module_edited_after_its_build_is_named_and_refused(tmp_path: Path) -> None:
    folder = tmp_path / "firmware_sim"
    folder.mkdir()
    source, built = folder / "physics.py", folder / f"physics{SUFFIX}"
    source.write_text("x = 1\n")
    built.write_bytes(b"")
    os.utime(source, (1_000, 1_000))
    os.utime(built, (2_000, 2_000))
    assert stale_native(tmp_path) == []  # built after the last edit
    os.utime(source, (3_000, 3_000))
    assert stale_native(tmp_path) == ["firmware_sim/physics.py"]
    # the group's library has no source of its own: never stale
    (folder / f"_native__mypyc{SUFFIX}").write_bytes(b"")
    assert stale_native(tmp_path) == ["firmware_sim/physics.py"]


def test_this_tree_is_current_and_says_what_it_runs() -> None:
    # what `import controller` checks: the suite runs the sources as they are
    assert stale_native() == []
    root = Path(controller.__file__).resolve().parent.parent
    built = {
        str(p.relative_to(root)).split(".", 1)[0].replace("/", ".")
        for p in (root / "firmware_sim").glob("*.so")
    }
    probe = "import firmware_sim.firmware, controller; print(controller.compiled_modules())"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    # compiled where a build exists, Python where none does (both are the same program)
    assert ("firmware_sim.firmware" in out) == ("firmware_sim.firmware" in built)
    assert all(name.startswith(("controller", "firmware_sim")) for name in compiled_modules())
