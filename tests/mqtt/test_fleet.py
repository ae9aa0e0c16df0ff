"""`alsctl fleet`: its users written for a broker started from them, then N rigs publishing,
each as its own user, each journaled, as a supervisor's demo or a load test starts them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
import yaml

from controller import journal as jr
from controller.fleet import mosquitto_hash, plans
from controller.mqtt.local import LocalBroker
from tests.integration.test_cli_run import PE_SHORT
from tests.mqtt.conftest import Inbox, client, follow


def alsctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=120
    )


async def test_a_fleet_publishes_each_rig_as_its_own_user(tmp_path: Path) -> None:
    folder = tmp_path / "fleet"
    made = alsctl("fleet", "init", "--rigs", "3", "--folder", str(folder))
    assert made.returncode == 0, made.stderr
    assert f"mosquitto -c {folder.resolve() / 'mosquitto.conf'}" in made.stdout
    passwords = json.loads((folder / "passwords.json").read_text())
    assert sorted(passwords) == ["sim-001", "sim-002", "sim-003"]
    assert (folder / "passwords.json").stat().st_mode & 0o077 == 0
    # a second init keeps the passwords the broker already has
    assert alsctl("fleet", "init", "--rigs", "3", "--folder", str(folder)).returncode == 0
    assert json.loads((folder / "passwords.json").read_text()) == passwords

    rx = tmp_path / "pe.yaml"
    rx.write_text(yaml.safe_dump(PE_SHORT))
    with LocalBroker(tmp_path / "broker", config=folder) as broker:
        inbox = Inbox()
        async with client(broker, "dashboard") as dash:
            await dash.subscribe("als/+/status", qos=1)
            following = asyncio.create_task(follow(dash, inbox))
            try:
                run = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "controller", "fleet", "--rigs", "3",
                    "--mqtt", broker.url, "--folder", str(folder), "--speed", "max",
                    "--once", "--prescription", str(rx),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                out, _ = await asyncio.wait_for(run.communicate(), 120)
                said = out.decode()
                assert run.returncode == 0, said
                for rig in ("sim-001", "sim-002", "sim-003"):
                    await inbox.wait_for(f"als/{rig}/status", lambda p: p == b"online")
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
        # a wrong password is refused: the broker uses the generated users
        with pytest.raises(aiomqtt.MqttCodeError):
            async with client(broker, "sim-001", password="not-it"):
                pass
    for rig in ("sim-001", "sim-002", "sim-003"):
        assert f"{rig}: completed: exchanged 600 of 600 mL" in said, said
        (row,) = jr.sessions(folder / "journals" / f"{rig}.db")
        assert row.rig_id == rig and row.status() == "completed"


def test_rigs_differ_and_hashes_are_mosquittos() -> None:
    fleet = plans(5)
    assert [p.rig.rig_id for p in fleet] == [f"sim-00{i}" for i in range(1, 6)]
    assert len({p.rx.name for p in fleet}) == 5  # the shipped prescriptions in turn
    assert len({p.rig.sim.seed for p in fleet}) == 5  # a patient each
    assert [p.delay_s for p in fleet] == sorted(p.delay_s for p in fleet)  # staggered
    assert all(p.rig.mqtt.username == p.rig.rig_id for p in fleet)
    # the format `mosquitto_passwd` writes ($7$, rounds, salt, digest); the broker taking
    # these users is the test above
    salt = bytes(range(12))
    assert mosquitto_hash("pw", salt).startswith("$7$101$AAECAwQFBgcICQoL$")
