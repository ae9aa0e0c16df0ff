"""docs/testing.md's examples, run as its reader runs them: alsctl built into a wheel from
this tree, installed with its `testing` extra into a fresh virtual environment, a project
made outside the repository from the guide's files, verbatim, and pytest run there.

So the guide stays true: its install line, its pyproject.toml, the plugin found through
the `pytest11` entry point (not through this repository's conftest), the shipped examples
found in the installed package, and each example within the guide's promise of 5 s of wall
time. Installing needs the package index pip is configured with (PyPI, or a local mirror);
pip's own cache makes every run after the first much faster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "testing.md"
#: a fenced block the reader is to save: ```python title="test_x.py"
BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```$', re.S | re.M)
EXAMPLES = ("test_hal_safety.py", "test_treatment.py", "test_serial_link.py")
#: the guide's promise for each example, wall time (setup, call and teardown)
EXAMPLE_LIMIT_S = 5.0


def guide_files() -> dict[str, str]:
    return {m.group(2): m.group(3) for m in BLOCK.finditer(GUIDE.read_text())}


def test_the_guide_gives_its_three_examples_and_the_config_they_run_with() -> None:
    assert sorted(guide_files()) == sorted([*EXAMPLES, "pyproject.toml"])
    assert "pip install '/path/to/alsctl[testing]'" in GUIDE.read_text()


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]  # kwargs: cwd, env, timeout
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]  # subprocess.run with text=True


def _wheel(tmp_path: Path) -> Path:
    """The wheel a user would install, built from a copy of this tree (building writes
    build/ and egg-info into the tree it builds)."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "out", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels)],
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    [wheel] = wheels.glob("alsctl-*.whl")
    return wheel


@pytest.mark.timeout(900)
def test_the_guides_examples_pass_in_a_fresh_environment_outside_the_repository(
    tmp_path: Path,
) -> None:
    wheel = _wheel(tmp_path)
    # nothing of this checkout or of the environment running this test leaks in
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "COV_"))
    }
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env, timeout=300)
    python = str(venv / "bin" / "python")
    # the guide's `pip install '/path/to/alsctl[testing]'`, with the wheel for the path
    _run([python, "-m", "pip", "install", "-q", f"{wheel}[testing]"], env=env, timeout=600)

    project = tmp_path / "project"
    project.mkdir()
    for name, text in guide_files().items():
        (project / name).write_text(text)
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [python, "-m", "pytest", f"--junitxml={report}", "-o", "junit_family=xunit2"],
        capture_output=True, text=True, cwd=project, env=env, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "3 passed" in out and "warning" not in out.lower(), out
    # found through the installed package's entry point, and nothing of this checkout
    assert re.search(r"^plugins: .*\balsctl-0\.1\.0\b", done.stdout, re.M), out
    where = _run(
        [python, "-c", "import controller.testing.plugin as p; print(p.__file__)"],
        cwd=project, env=env,
    )  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout

    cases = ET.parse(report).getroot().iter("testcase")
    took = {f"{c.get('classname')}.{c.get('name')}": float(c.get("time", "nan")) for c in cases}
    assert len(took) == len(EXAMPLES), took
    slow = {name: t for name, t in took.items() if not t < EXAMPLE_LIMIT_S}
    assert not slow, f"over {EXAMPLE_LIMIT_S} s of wall time: {slow}"

    # the plugin is loaded into every pytest run of the environment: without its extra, it
    # must not break one, and its fixtures must say what is missing
    _run([python, "-m", "pip", "uninstall", "-q", "-y", "pytest-asyncio"], env=env, timeout=120)
    other = tmp_path / "another-project"  # whose config knows nothing of asyncio
    other.mkdir()
    (other / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (other / "test_without_the_extra.py").write_text(
        "def test_plain():\n    assert True\n\n\ndef test_kit(sim_hal):\n    pass\n"
    )
    bare = subprocess.run(
        [python, "-m", "pytest"], capture_output=True, text=True, cwd=other, env=env, timeout=120
    )
    assert "1 passed, 1 error" in bare.stdout, bare.stdout + bare.stderr
    assert "need pytest-asyncio: pip install 'alsctl[testing]'" in bare.stdout
