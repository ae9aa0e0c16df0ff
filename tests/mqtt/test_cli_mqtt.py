"""`alsctl run --mqtt` and `alsctl monitor` as processes, as an operator starts them.

Killing the controller (SIGKILL: no goodbye) must turn its status `offline` through the
last will, and a monitor watching must say so.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import yaml

from controller.mqtt.local import LocalBroker
from tests.integration.test_cli_run import PE_SHORT
from tests.mqtt.conftest import Inbox, client, follow


async def alsctl(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )  # fmt: skip


async def read_until(proc: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, f"exited before {text!r}: {''.join(seen)}"
            seen.append(line)
            if text in line:
                return


async def test_a_frozen_controller_goes_stale_and_a_killed_one_offline(
    broker: LocalBroker, tmp_path: Path
) -> None:
    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    monitor = await alsctl(
        "monitor", "--mqtt", broker.url, "--rig", "sim-01", "--plain",
        env=broker.env("dashboard"),
    )  # fmt: skip
    run = await alsctl(
        "run", "--sim", "--plain", "--speed", "60", "--prescription", str(rx),
        "--checklist", "config/checklists/clear.yaml", "--journal", str(tmp_path / "j.db"),
        "--mqtt", broker.url,
        env=broker.env("sim-01"),
    )  # fmt: skip
    shown: list[str] = []
    printed: list[str] = []
    try:
        await read_until(monitor, "# connected", shown)
        await read_until(run, "mqtt: mqtt://127.0.0.1", printed)
        await read_until(monitor, "sim-01 online", shown)
        await read_until(monitor, "connecting -> exchange", shown)
        # a frozen controller keeps its connection (the broker sees nothing wrong yet):
        # the monitor marks it stale from the telemetry's age, on its own timer
        run.send_signal(signal.SIGSTOP)
        await read_until(monitor, "sim-01 stale: no telemetry for", shown)
        run.send_signal(signal.SIGKILL)
        await run.wait()
        await read_until(monitor, "sim-01 offline", shown)
    finally:
        for proc in (run, monitor):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # and a dashboard arriving later finds the rig offline, its last state retained
    inbox = Inbox()
    async with client(broker, "dashboard") as late:
        await late.subscribe("als/sim-01/#", qos=1)
        task = asyncio.create_task(follow(late, inbox))
        try:
            assert await inbox.wait_for("als/sim-01/status") == b"offline"
            await inbox.wait_for("als/sim-01/state")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert inbox.json("als/sim-01/state")[0]["phase"] in ("connecting", "exchange")


async def test_the_monitor_gives_up_on_a_refused_login(broker: LocalBroker) -> None:
    env = {**broker.env("dashboard"), "ALSCTL_MQTT_PASSWORD": "not-the-password"}
    monitor = await alsctl("monitor", "--mqtt", broker.url, "--plain", env=env)
    async with asyncio.timeout(30):
        out, _ = await monitor.communicate()
    assert monitor.returncode == 2
    said = out.decode()
    assert "alsctl: the broker mqtt://127.0.0.1:" in said
    assert "refused the login of 'dashboard'" in said and "retrying" not in said


async def test_credentials_never_come_from_the_command_line(tmp_path: Path) -> None:
    run = await alsctl(
        "run", "--sim", "--mqtt", "mqtt://sim-01:secret@127.0.0.1:1883",
        "--journal", str(tmp_path / "j.db"), env={},
    )  # fmt: skip
    out, _ = await run.communicate()
    assert run.returncode == 2
    assert b"no credentials in the URL" in out and b"ALSCTL_MQTT_PASSWORD" in out
    hold = await alsctl("run", "--sim", "--hold", "--journal", str(tmp_path / "j.db"), env={})
    out, _ = await hold.communicate()
    assert hold.returncode == 2 and b"remote start is off by default" in out
