"""Fixtures shared by every test: a guard against leaked asyncio tasks (as ophyd-async does).

A task still pending when an async test ends is a bug (a reader left running, a publisher
never cancelled): the test fails with the task's name instead of leaking into the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


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
