"""alsctl's controller.

Some modules may be compiled in place by mypyc (`make build`, tools/build_native.py). A
compiled module older than its source would run code that is no longer the source's: the
check below refuses that at the first import, naming the module and the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def stale_native(root: Path | None = None) -> list[str]:
    """Sources edited after they were compiled (empty when nothing is compiled)."""
    root = root or Path(__file__).resolve().parent.parent
    stale: list[str] = []
    for pkg in ("controller", "firmware_sim"):
        for folder, _, files in os.walk(root / pkg):
            for name in files:
                if name.endswith(".so") and ".cpython-" in name:
                    source = Path(folder, name.split(".", 1)[0] + ".py")
                    compiled = Path(folder, name)
                    if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
                        stale.append(str(source.relative_to(root)))
    return stale


def compiled_modules() -> list[str]:
    """The modules of this program loaded from a compiled build (benches print them, so a
    figure says what it measured)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in ("controller", "firmware_sim")
        and (getattr(module, "__file__", None) or "").endswith(".so")
    )


if _stale := stale_native():
    raise ImportError(
        f"{', '.join(_stale)} changed after it was compiled: run `make build` to compile again"
        " (or `make clean-native` to run every module as Python)"
    )
