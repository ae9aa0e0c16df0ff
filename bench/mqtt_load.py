"""What MQTT costs the control loop, and how fresh the telemetry is: measured, not guessed.

The same simulated Li-ALS treatment runs paced (default 10x real time: a sample due every
10 ms of wall time) twice: without MQTT (the peer) and with the bridge publishing to a
local Mosquitto (shipped config and ACL) at 10 Hz of rig time, i.e. every sample. Rounds
alternate, off first, so drift of the machine shows as scatter between rounds.

- lateness: for every control cycle, the loop time its status reached the hooks minus the
  time its sample was due. Target: p99 with MQTT <= 1.1 x p99 without.
- telemetry latency: `mosquitto_sub -F '%U %p'` (another process, stamping arrival in
  ns) against the `stamp` the bridge took when the sample reached it. Target: p99 <= 20 ms.

Usage: python -m bench.mqtt_load [--speed 10] [--seconds 20] [--rounds 2]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.control import Controller, View
from controller.hal.sim import SimHal
from controller.journal import Journal
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.broker import Broker
from controller.mqtt.local import EXAMPLE_PASSWORDS, LocalBroker


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
    }


async def one_run(
    speed: float, seconds: float, folder: Path, broker: LocalBroker | None
) -> tuple[list[float], MqttBridge | None]:
    rig = load_rig("config/rigs/sim.yaml")
    rx = load_prescription("config/prescriptions/li_als.yaml")
    lateness: list[float] = []
    hal: list[SimHal] = []
    loop = asyncio.get_running_loop()

    def on_controller(c: Controller) -> None:
        assert isinstance(c.hal, SimHal)
        hal.append(c.hal)

    def on_status(s: View) -> None:
        lateness.append((loop.time() - hal[0].due(s.t_ms)) * 1000.0)

    bridge = None
    if broker is not None:
        mqtt = rig.mqtt.model_copy(update={"telemetry_hz": 10.0, "queue_size": 1000})
        address = Broker.from_url(broker.url, mqtt, env=broker.env(rig.rig_id))
        bridge = MqttBridge(address, mqtt, rig.rig_id)
    with Journal(folder / f"journal-{time.monotonic_ns()}.db") as journal:
        opts = RunOptions(
            gate=CLEAR,
            speed=speed,
            journal=journal,
            edges=[bridge] if bridge is not None else [],
            on_view=on_status,
            on_controller=on_controller,
        )
        run = asyncio.create_task(run_treatment(rig, rx, opts))
        await asyncio.sleep(seconds)  # wall time is what is measured here
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    return lateness[10:], bridge  # the first cycles include start-up


def subscriber(broker: LocalBroker, out: Path) -> subprocess.Popen[bytes]:
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "dashboard"]
    args += ["-P", EXAMPLE_PASSWORDS["dashboard"], "-q", "0", "-t", "als/sim-01/telemetry"]
    args += ["-F", "%U %p", "--nodelay"]
    with out.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink)
    deadline = time.monotonic() + 5
    while "u'dashboard'" not in broker.log:  # connected (its subscribe follows at once)
        if time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto_sub did not connect:\n{broker.log}")
        time.sleep(0.01)
    return proc


def latencies(path: Path) -> list[float]:
    ms = []
    for line in path.read_text().splitlines():
        received, _, payload = line.partition(" ")
        ms.append((float(received) - json.loads(payload)["stamp"]) * 1000.0)
    return ms


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    off: list[float] = []
    on: list[float] = []
    telemetry: list[float] = []
    published = dropped = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with LocalBroker(folder / "mosquitto") as broker:
            for n in range(args.rounds):
                off += (await one_run(args.speed, args.seconds, folder, None))[0]
                received = folder / f"telemetry-{n}.txt"
                sub = subscriber(broker, received)
                try:
                    lateness, bridge = await one_run(args.speed, args.seconds, folder, broker)
                finally:
                    sub.terminate()
                    sub.wait()
                on += lateness
                assert bridge is not None
                published += bridge.stats.telemetry
                dropped += bridge.stats.dropped
                telemetry += latencies(received)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}",
        "speed": args.speed,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "telemetry_hz_rig": 10.0,
        "lateness_mqtt_off": figures(off),
        "lateness_mqtt_on": figures(on),
        "lateness_p99_ratio": round(pct(on, 0.99) / pct(off, 0.99), 3),
        "lateness_target_ratio": 1.1,
        "telemetry_published": published,
        "telemetry_dropped": dropped,
        "telemetry_latency": figures(telemetry),
        "telemetry_target_p99_ms": 20.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
