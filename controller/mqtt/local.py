"""A Mosquitto of our own, for the tests, the benches and a demo: the shipped config, ACL and
password file, on a free port, with its files in a folder of its own.

Only what cannot be shared changes: the listener port, the persistence folder, and, when
started as root, `user root` (Mosquitto would otherwise drop to the `mosquitto` user, which
cannot read a private temporary folder). So the tests exercise the ACL a site deploys.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from controller.examples import MOSQUITTO

CONFIG = MOSQUITTO
#: The users of config/mosquitto/passwd and their example passwords (bench use only).
EXAMPLE_PASSWORDS = {
    "sim-01": "sim-01-example",
    "bench-01": "bench-01-example",
    "dashboard": "dashboard-example",
    "bridge": "bridge-example",
}
READY_S = 10.0


class BrokerMissing(RuntimeError):
    """Mosquitto is not installed: the MQTT tests fail, they are never skipped."""


def free_port() -> int:
    # `listener 0` is a unix socket path to Mosquitto, not "any port": ask the OS first
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        config: Path = CONFIG,
        *,
        bridge_to: LocalBroker | None = None,
    ) -> None:
        """`bridge_to`: this is a site broker, bridged to that central one by the shipped
        bridge.conf (docs/scaling.md)."""
        # Debian installs it in /usr/sbin, which a non-root PATH may lack
        exe = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if exe is None:
            raise BrokerMissing("mosquitto is not installed (make test installs it)")
        self.exe = exe
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.folder / "mosquitto.conf"
        self.logfile = self.folder / "mosquitto.log"
        self.bridge_to = bridge_to
        self.conf.write_text(self._config(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self, config: Path) -> str:
        """The shipped file with the port, paths and user of this instance."""
        for name in ("passwd", "acl"):
            shutil.copy(config / name, self.folder / name)
        replaced = {
            "listener": f"listener {self.port} 127.0.0.1",
            "password_file": f"password_file {self.folder / 'passwd'}",
            "acl_file": f"acl_file {self.folder / 'acl'}",
            "persistence_location": f"persistence_location {self.folder}/",
        }
        lines = []
        for line in (config / "mosquitto.conf").read_text().splitlines():
            key = line.split(" ", 1)[0]
            lines.append(replaced.get(key, line))
        if os.geteuid() == 0:
            lines.append("user root")
        if self.bridge_to is not None:
            lines += self._bridge(config)
        return "\n".join(lines) + "\n"

    def _bridge(self, config: Path) -> list[str]:
        """The shipped bridge.conf, pointed at `bridge_to`, with a client id of its own."""
        assert self.bridge_to is not None
        replaced = {
            "address": f"address 127.0.0.1:{self.bridge_to.port}",
            "remote_clientid": f"remote_clientid site-{self.port}-bridge",
        }
        lines = []
        for line in (config / "bridge.conf").read_text().splitlines():
            lines.append(replaced.get(line.split(" ", 1)[0], line))
        return lines

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def env(self, user: str) -> dict[str, str]:
        """The environment an `alsctl` process connects with, as this user."""
        return {"ALSCTL_MQTT_USERNAME": user, "ALSCTL_MQTT_PASSWORD": EXAMPLE_PASSWORDS[user]}

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def start(self) -> None:
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_S
        while True:  # ready when it accepts a connection (it answers within ~50 ms)
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}:\n{self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto not listening after {READY_S} s:\n{self.log}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file (queued messages) and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
