"""Fixtures shared by every test: a guard against leaked asyncio tasks (as ophyd-async does).

A task still pending when an async test ends is a bug (a reader left running, a publisher
never cancelled): the test fails with the task's name instead of leaking into the next one.

The suite runs on two pytest-xdist workers. The few tests on a wall clock (the HAL contract
against a firmware-sim at real time, a faulty line in real time, self-test and priming at 2x,
the dashboard's alarm in the browser within 1 s) form one group, run one after the other on
one worker, first on the CPU. Every other serial test
runs firmware-sim on the lockstep clock (docs/protocol.md): the controller grants the rig its
time, so a busy machine slows those tests down but cannot change what they see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import pytest
import pytest_asyncio

#: The testing kit's plugin (controller/testing/plugin.py, docs/testing.md): an alsctl
#: installed from this tree loads it by its pytest11 entry point (named `alsctl`), and
#: naming it here too would register it twice; an environment installed before the entry
#: point existed, or one that turns entry points off, gets it from here.
_KIT = "controller.testing.plugin"
_ENTRY_POINTS = not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
pytest_plugins = (
    []
    if _ENTRY_POINTS and any(ep.value == _KIT for ep in entry_points(group="pytest11"))
    else [_KIT]
)

#: node id prefixes (and the parameters) of the tests that run on a wall clock
REALTIME = (
    "tests/integration/test_faulty_line.py",
    "tests/integration/test_serial_treatment.py::test_self_test_and_priming_on_the_wall_clock",
    # a deadline in wall time: the alarm's tile red in the browser within 1 s
    "tests/dashboard/test_browser.py",
)


def _realtime(item: pytest.Item) -> bool:
    return item.nodeid.startswith(REALTIME) or "[serial" in item.nodeid


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hal-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="also run the HAL contract suite on this backend (entry point alsctl.hal;"
        " docs/hal.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # known even when xdist is not loaded (`-p no:xdist`, a single test under a debugger)
    config.addinivalue_line("markers", "xdist_group(name): run on one xdist worker")
    config.addinivalue_line("markers", "faults: the test injects faults into the rig")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which turns the group into a nodeid suffix
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _realtime(item):
            item.add_marker(pytest.mark.xdist_group("realtime"))


#: scheduling priority (nice) while a test runs; processes it starts inherit it
NICE_REALTIME = -10
NICE_OTHER = 5


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Wall-clock tests first on the CPU: at 40x a 1 s watchdog is 25 ms of wall time, and
    the other worker's simulation would otherwise take its share of a 2-core machine. Best
    effort: only root may lower a nice value (CI runs as root)."""
    if (
        _realtime(item)
        and os.environ.get("PYTEST_XDIST_WORKER")
        and item.config.getoption("dist", None) == "loadgroup"
    ):
        # xdist groups by a suffix it writes into the node id; if a pytest upgrade makes
        # that write a no-op (as pytest 9 did), wall-clock tests would share the CPU
        assert item.nodeid.endswith("@realtime"), (
            f"{item.nodeid}: xdist did not group it (pytest {pytest.__version__})"
        )
    with contextlib.suppress(PermissionError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE_REALTIME if _realtime(item) else NICE_OTHER)


@pytest_asyncio.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    # give tasks cancelled during teardown one turn of the loop to finish
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left running by the test: {[repr(t) for t in leaked]}"


@pytest.fixture(autouse=True)
def _task_leak_guard(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("asyncio") is not None:
        request.getfixturevalue("_no_leaked_tasks")
