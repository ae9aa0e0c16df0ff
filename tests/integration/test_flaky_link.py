"""A flaky link is an alarm, not the end: a 0.6 s stall, a firmware process killed and
started again, a link that never comes back.

Real parts: `alsctl firmware-sim` as a process on TCP, a TCP relay that can hold the line, the
controller in this process. On the lockstep clock: while the relay holds the line no grant
reaches the firmware, so its clock waits, and what the controller sees is the link's own
supervision (300 ms of wall time without a frame: link lost), not scheduling noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_rig
from controller.control import Controller, View
from controller.outcome import Outcome
from controller.summary import Summary
from tests.integration.test_treatment import rx
from tests.sim_process import firmware_sim_process

#: the firmware's pace while no controller grants time (after one was killed)
SPEED = 20.0
RIG = load_rig("config/rigs/sim.yaml").model_copy(
    update={"heartbeat_timeout_ms": 1000, "link_give_up_s": 5.0}
)
PE = rx("pe", exchange_volume_pv=None, exchange_volume_ml=150)


class Relay:
    """A TCP relay between the controller and the firmware that can hold the line: while
    held, nothing passes either way (as a USB adapter that stalls), then all of it does."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.open = asyncio.Event()
        self.open.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def hold(self, seconds: float) -> None:
        self.open.clear()
        await asyncio.sleep(seconds)  # the stall itself is what is being tested
        self.open.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(4096):
                await self.open.wait()
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def relay_to(port_url: str) -> AsyncIterator[Relay]:
    relay = Relay(int(port_url.rsplit(":", 1)[1]))
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


def _alarms(summary: Summary) -> list[str]:
    return [a.cause for a in summary.alarms]


async def test_a_stall_of_0_6_s_is_an_alarm_and_the_treatment_completes(tmp_path: Path) -> None:
    tasks: list[asyncio.Task[None]] = []

    with firmware_sim_process(tmp_path, RIG, PE, speed=SPEED, tcp="127.0.0.1:0") as url:
        async with relay_to(url) as relay:

            def stall_once(status: View) -> None:
                if status.phase == "exchange" and status.volumes.exchanged_ml > 30 and not tasks:
                    tasks.append(asyncio.ensure_future(relay.hold(0.6)))

            summary, _ = await run_treatment(
                RIG,
                PE,
                RunOptions(
                    gate=CLEAR,
                    backend="serial",
                    port=f"socket://127.0.0.1:{relay.server.sockets[0].getsockname()[1]}",
                    on_view=stall_once,
                    auto_resume_s=2.0,
                ),
            )
            await asyncio.gather(*tasks)
    assert summary.outcome is Outcome.COMPLETED, (summary.outcome_detail, _alarms(summary))
    assert "link_lost" in _alarms(summary) or "firmware_safe:heartbeat" in _alarms(summary)
    assert abs(summary.volumes.exchange_ml - 150) < 2  # the prescription, no more


async def test_a_firmware_killed_and_started_again_is_reconnected_and_resumed(
    tmp_path: Path,
) -> None:
    refs: list[Controller] = []
    restarted = asyncio.Event()
    port = 0

    async def restart(first: object) -> None:
        first.__exit__(None, None, None)  # type: ignore[attr-defined]  # killed (SIGTERM)
        await asyncio.sleep(1.0)  # the link is lost for a while: the alarm, the retries
        second = firmware_sim_process(
            tmp_path / "again", RIG, PE, speed=SPEED, tcp=f"127.0.0.1:{port}"
        )
        second.__enter__()
        holder.append(second)
        restarted.set()

    (tmp_path / "again").mkdir()
    holder: list[object] = []
    first = firmware_sim_process(tmp_path, RIG, PE, speed=SPEED, tcp="127.0.0.1:0")
    url = first.__enter__()
    port = int(url.rsplit(":", 1)[1])
    tasks: list[asyncio.Task[None]] = []

    def kill_once(status: View) -> None:
        if status.phase == "exchange" and status.volumes.exchanged_ml > 30 and not tasks:
            tasks.append(asyncio.ensure_future(restart(first)))

    try:
        summary, controller = await run_treatment(
            RIG,
            PE,
            RunOptions(
                gate=CLEAR,
                backend="serial",
                port=url,
                on_view=kill_once,
                on_controller=refs.append,
                auto_resume_s=2.0,
            ),
        )
        await asyncio.gather(*tasks)
    finally:
        for proc in holder:
            proc.__exit__(None, None, None)  # type: ignore[attr-defined]
        if not tasks:
            first.__exit__(None, None, None)
    assert restarted.is_set()
    assert summary.outcome is Outcome.COMPLETED, (summary.outcome_detail, _alarms(summary))
    causes = _alarms(summary)
    assert "link_lost" in causes and "firmware_safe:boot" in causes, causes
    # session time went on across the firmware's new clock
    times = [t.t_s for t in summary.transitions]
    assert times == sorted(times)
    kinds = [str(e.kind) for e in controller.hal_log]
    assert "link_lost" in kinds and "link_restored" in kinds


@pytest.mark.timeout(120)
async def test_a_link_that_never_comes_back_ends_interrupted_not_in_fault(
    tmp_path: Path,
) -> None:
    tasks: list[asyncio.Task[None]] = []
    with firmware_sim_process(tmp_path, RIG, PE, speed=SPEED, tcp="127.0.0.1:0") as url:
        async with relay_to(url) as relay:

            def cut(status: View) -> None:
                if status.phase == "exchange" and not tasks:
                    tasks.append(asyncio.ensure_future(relay.hold(3600)))

            summary, _ = await run_treatment(
                RIG,
                PE,
                RunOptions(
                    gate=CLEAR,
                    backend="serial",
                    port=f"socket://127.0.0.1:{relay.server.sockets[0].getsockname()[1]}",
                    on_view=cut,
                ),
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert summary.outcome is Outcome.INTERRUPTED, summary.outcome_detail
    assert re.match(r"link lost for 5(\.\d)? s \(the firmware is safe", summary.outcome_detail)
    assert "link_lost" in _alarms(summary)
