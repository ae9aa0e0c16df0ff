"""A fleet on one broker, watched in a browser: what N rigs cost the broker and the dashboard,
and how fresh a tile is when the supervisor sees it. Measured, not guessed.

For each N (default 10, 50, 100): `alsctl fleet init` users, a Mosquitto started from them,
`alsctl fleet --rigs N --speed 1 --telemetry-hz 10` (real time, so 10 telemetry messages a
second per rig, plus the state at the same rate), `alsctl dashboard` as its own process, and
headless Chromium (Selenium) on the fleet view. After a warm-up, for `--seconds`:

- latency: for every tile redrawn with new telemetry, the browser's clock when the DOM was
  updated minus the telemetry's `stamp` (the controller's clock when the sample reached its
  publisher; one machine, one clock): p50 and p99, in ms, collected by the page itself
  (`window.alsLatency`, controller/dashboard/static/app.js);
- broker_cpu_pct, server_cpu_pct: CPU time of the Mosquitto and of the dashboard process
  over the window, in % of one core (/proc/PID/stat);
- dropped: what the API promises to deliver (QoS 1 events and alarms, docs/mqtt.md) and did
  not: gaps in each rig's journal numbers seen by a subscriber of its own; the telemetry a
  rig itself dropped (QoS 0, allowed) is `telemetry_dropped`.

Target (issue "Supervisory dashboard"): 50 rigs with p99 <= 250 ms and nothing dropped.

Usage: python -m bench.fleet_load [--rigs 10 50 100] [--seconds 20] [--warmup 10]
Prints one JSON object with a `rows` list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from controller import fleet
from controller.dashboard.users import Users
from controller.mqtt.local import EXAMPLE_PASSWORDS, LocalBroker

HZ = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password"
#: A treatment long enough to run through the whole measurement at real time
LONG_PE = {
    "name": "PE long (bench)",
    "patient": {"weight_kg": 70, "hematocrit": 0.3},
    "mode": "pe",
    "blood_flow_ml_min": 120,
    "exchange_volume_ml": 3000,
}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def alsctl(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


class Gaps:
    """Journal numbers of each rig's events and alarms, as a QoS 1 subscriber got them."""

    def __init__(self) -> None:
        self.ids: dict[str, set[int]] = {}
        self.telemetry_dropped: dict[str, int] = {}

    async def follow(self, port: int) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", port, username="dashboard", password=EXAMPLE_PASSWORDS["dashboard"]
        ) as c:
            for t in ("als/+/events", "als/+/alarms", "als/+/telemetry"):
                await c.subscribe(t, qos=1)
            async for m in c.messages:
                rig = m.topic.value.split("/")[1]
                body = json.loads(m.payload if isinstance(m.payload, bytes) else b"{}")
                if m.topic.value.endswith("/telemetry"):
                    self.telemetry_dropped[rig] = int(body.get("dropped", 0))
                else:
                    self.ids.setdefault(rig, set()).add(int(body["id"]))

    def missing(self) -> int:
        return sum(max(ids) - min(ids) + 1 - len(ids) for ids in self.ids.values() if ids)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def watch(
    driver: Any, url: str, rigs: int, warmup_s: float, seconds: float, start: threading.Event
) -> list[float]:
    """Sign in, wait for every tile and the warm-up, then the window's latencies (ms);
    `start` is set as the window opens (the caller's CPU clocks start then)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "login")
    driver.find_element(By.ID, "user").send_keys("bench")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    # read in the page in one step: the sign-in navigates, so an element found may be gone
    WebDriverWait(driver, 180, poll_frequency=0.2).until(
        lambda d: (
            d.execute_script("return document.body && document.body.dataset.rigs") == str(rigs)
        )
    )
    time.sleep(warmup_s)
    driver.execute_script("window.alsLatency = [];")
    start.set()
    time.sleep(seconds)
    latencies: list[float] = driver.execute_script("return window.alsLatency;")
    return [1000.0 * s for s in latencies]


async def one(n: int, seconds: float, warmup_s: float, folder: Path) -> dict[str, Any]:
    work = folder / f"n{n}"
    fleet.init(work, n)
    rx = work / "pe.yaml"
    rx.write_text(yaml.safe_dump(LONG_PE))
    users = work / "users.json"
    Users(users).add("bench", PASSWORD)
    with LocalBroker(work / "broker", config=work) as broker:
        assert broker.proc is not None
        gaps = Gaps()
        follower = asyncio.create_task(gaps.follow(broker.port))
        port = _free_port()
        dash = alsctl(
            "dashboard", "--mqtt", broker.url, "--listen", f"127.0.0.1:{port}",
            "--users", str(users), env=broker.env("dashboard"),
        )  # fmt: skip
        rigs = alsctl(
            "fleet", "--rigs", str(n), "--mqtt", broker.url, "--folder", str(work),
            "--speed", "1", "--telemetry-hz", "10", "--prescription", str(rx), "--once",
        )  # fmt: skip
        driver = await asyncio.to_thread(browser)
        try:
            url = f"http://127.0.0.1:{port}/"
            await asyncio.to_thread(_until_up, url)
            start = threading.Event()
            watching = asyncio.create_task(
                asyncio.to_thread(watch, driver, url, n, warmup_s, seconds, start)
            )
            await asyncio.to_thread(start.wait, 300)
            b0, s0, t0 = cpu_s(broker.proc.pid), cpu_s(dash.pid), time.monotonic()
            latencies = await watching
            wall = time.monotonic() - t0
            broker_cpu = 100.0 * (cpu_s(broker.proc.pid) - b0) / wall
            server_cpu = 100.0 * (cpu_s(dash.pid) - s0) / wall
        finally:
            await asyncio.to_thread(driver.quit)
            for proc in (rigs, dash):
                proc.send_signal(signal.SIGINT)
            for proc in (rigs, dash):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    return {
        "rigs": n,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(pct(latencies, 0.99), 1) if latencies else None,
        "updates": len(latencies),
        "dropped": gaps.missing(),
        "telemetry_dropped": sum(gaps.telemetry_dropped.values()),
        "broker_cpu_pct": round(broker_cpu, 1),
        "server_cpu_pct": round(server_cpu, 1),
    }


def _free_port() -> int:
    from controller.mqtt.local import free_port

    return free_port()


def _until_up(url: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "login", timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [asyncio.run(one(n, args.seconds, args.warmup, Path(folder))) for n in args.rigs]
    print(
        json.dumps(
            {
                "bench": "fleet_load",
                "machine": {
                    "python": platform.python_version(),
                    "cpu": platform.machine(),
                    "cores": os.cpu_count(),
                },
                "telemetry_hz": 10,
                "seconds": args.seconds,
                "target": "50 rigs: latency_p99_ms <= 250, dropped == 0",
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
