"""The shipped broker config as the README starts it: from the repository, as a normal user.

Mosquitto 2.0.11 does not create its persistence folder. A missing one goes unnoticed at
start: the broker runs, and only saving fails ("Error: No such file or directory"), so a
persistent session's queue silently does not survive a restart. The config therefore names
a folder the repository ships (`out/mosquitto/`), and this test runs the file unchanged but
for its port, as user nobody (the tests run as root), across a restart.

`alsctl init DIR` copies the config out of the repository, to be started from anywhere: its
copy names its files by absolute path, and a test starts it, unchanged but for its port, from
another directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from controller.mqtt.local import CONFIG, EXAMPLE_PASSWORDS, READY_S, free_port

NOBODY = 65534


def persistence_location(conf: str) -> str:
    return next(
        line.split(None, 1)[1]
        for line in conf.splitlines()
        if line.startswith("persistence_location ")
    )


def as_nobody(root: Path) -> None:
    """Hand a broker's folder to nobody: the tests run as root, and a broker started as root
    drops to the user `mosquitto`, which cannot write there (as the README warns)."""
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)


class ShippedBroker:
    """config/mosquitto as shipped, in a copy of the repository's layout, run by nobody;
    `conf` and `cwd` say which file it is started with, and from where."""

    def __init__(self, root: Path, conf: str = "config/mosquitto/mosquitto.conf") -> None:
        self.root = root
        self.conf = conf
        self.cwd = root
        self.port = free_port()
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        conf_text = (CONFIG / "mosquitto.conf").read_text()
        shutil.copytree(CONFIG, root / "config" / "mosquitto")
        (root / "config" / "mosquitto" / "mosquitto.conf").write_text(
            conf_text.replace("listener 1883 ", f"listener {self.port} ")
        )
        # the persistence folder as the repository ships it (a system folder stays one)
        location = Path(persistence_location(conf_text))
        self.persistence = root / location  # the system's own when absolute
        if location.is_dir() and not location.is_absolute():
            shutil.copytree(location, self.persistence)
        as_nobody(root)

    def start(self) -> int:
        """Start as the README says (`mosquitto -c FILE` from `cwd`); the broker's uid."""
        exe = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        assert exe is not None, "mosquitto is not installed"
        command = [exe, "-c", self.conf]
        if os.geteuid() == 0:
            drop = f"--reuid={NOBODY} --regid={NOBODY} --clear-groups".split()
            command = ["setpriv", *drop, *command]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=self.cwd, stdout=out, stderr=out)
        deadline = time.monotonic() + READY_S
        while True:  # ready when it accepts a connection
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.02)
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def shipped() -> Iterator[ShippedBroker]:
    # not under pytest's tmp_path: its parents are private to root, and nobody must enter
    root = Path(tempfile.mkdtemp(prefix="alsctl-broker-"))
    os.chmod(root, 0o755)
    broker = ShippedBroker(root)
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root)


def dashboard(port: int) -> aiomqtt.Client:
    """A dashboard that must not miss an event: a persistent session, QoS 1."""
    return aiomqtt.Client(
        "127.0.0.1", port, username="dashboard", password=EXAMPLE_PASSWORDS["dashboard"],
        identifier="ops-board", clean_session=False,
    )  # fmt: skip


async def test_the_shipped_broker_runs_as_a_normal_user_and_keeps_queues_over_a_restart(
    shipped: ShippedBroker,
) -> None:
    location = Path(persistence_location((CONFIG / "mosquitto.conf").read_text()))
    assert location.is_dir(), f"{location}: Mosquitto needs the folder it persists in"
    uid = shipped.start()
    assert uid == (NOBODY if os.geteuid() == 0 else os.geteuid()) != 0
    async with dashboard(shipped.port) as board:
        await board.subscribe("als/sim-01/events", qos=1)
    # while the dashboard is away, the rig publishes an event: queued for its session
    rig = aiomqtt.Client(
        "127.0.0.1", shipped.port, username="sim-01", password=EXAMPLE_PASSWORDS["sim-01"]
    )
    async with rig:
        await rig.publish("als/sim-01/events", b'{"id": 1}', qos=1)
    shipped.stop()
    saved = shipped.persistence / "mosquitto.db"
    assert saved.is_file(), shipped.log.read_text()
    assert saved.stat().st_uid == uid

    assert shipped.start() == uid
    async with dashboard(shipped.port) as board:  # the same session, after the restart
        async with asyncio.timeout(10):
            message = await anext(aiter(board.messages))
    assert (message.topic.value, message.payload) == ("als/sim-01/events", b'{"id": 1}')
    shipped.stop()
    assert "Error" not in shipped.log.read_text(), shipped.log.read_text()


async def test_an_init_copy_of_the_broker_config_runs_from_any_directory(
    shipped: ShippedBroker,
) -> None:
    """`alsctl init mine`, then `mosquitto -c mine/mosquitto/mosquitto.conf` from elsewhere:
    the copy's password file, ACL and persistence folder are found wherever it starts."""
    made = subprocess.run(
        [sys.executable, "-m", "controller", "init", "mine"],
        capture_output=True, text=True, timeout=60, cwd=shipped.root,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    folder = shipped.root / "mine" / "mosquitto"
    conf = folder / "mosquitto.conf"
    text = conf.read_text()
    for line in (f"password_file {folder}/passwd", f"acl_file {folder}/acl",
                 f"persistence_location {folder}/data/"):  # fmt: skip
        assert f"\n{line}\n" in text
    assert (folder / "data").is_dir()  # Mosquitto 2.0 does not create it
    conf.write_text(text.replace("listener 1883 ", f"listener {shipped.port} "))
    as_nobody(shipped.root)
    elsewhere = shipped.root / "elsewhere"
    elsewhere.mkdir()
    shipped.conf, shipped.cwd = str(conf), elsewhere
    shipped.start()
    async with dashboard(shipped.port) as board:  # the copy's password file and ACL
        await board.subscribe("als/sim-01/events", qos=1)
    shipped.stop()
    assert (folder / "data" / "mosquitto.db").is_file(), shipped.log.read_text()
    assert not list(elsewhere.iterdir())  # nothing relative to where it started
    assert "Error" not in shipped.log.read_text(), shipped.log.read_text()
