"""Debian's Chromium, headless, as the test set-up installs it (`make test`: system-deps).

A missing browser fails the test that needs it: a report nobody rendered is not tested.
The flags are the ones this machine needs (no sandbox as root, no background networking on a
closed network, a fresh profile each time).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed: `make test` installs Debian's chromium"
    return path


def _run(*args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(page: Path) -> str:
    """The DOM after the page's scripts ran (its load handler included)."""
    return _run("--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri())


def screenshot(page: Path, out: Path, width: int = 1100, height: int = 4200) -> Path:
    _run(f"--window-size={width},{height}", f"--screenshot={out}", page.resolve().as_uri())
    assert out.exists(), "chromium wrote no screenshot"
    return out
