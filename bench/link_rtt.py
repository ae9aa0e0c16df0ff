"""Round trip of one command over a serial line: ours against pymodbus, in the same run.

Ours: SerialHal.set_pump -> `alsctl firmware-sim --device` -> ACK. Peer: a pymodbus RTU client
reading 16 holding registers from a pymodbus RTU server. Both cross the same pty bridge
(bench/ptybridge.py, two ptys back to back), each server in a process of its own, each client
here. Prints JSON with median and p99 in microseconds. Needs the `bench` extra (pymodbus).

Also measured on the same bridge: the floor, a raw 12-byte echo with blocking reads and no
framing. peer / floor is the most any protocol could beat the peer by on this path.

Usage: python -m bench.link_rtt [--n N]
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
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

from controller.config.loading import to_yaml
from controller.config.rig import RigConfig
from controller.hal.base import FirmwareLimits
from controller.hal.serial import SerialHal


@contextlib.contextmanager
def process(*args: str, first_line: bool = False) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        if first_line:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def figures(rtts: list[float]) -> dict[str, float]:
    rtts = sorted(rtts)
    return {
        "n": len(rtts),
        "median_us": round(statistics.median(rtts) * 1e6, 1),
        "p99_us": round(rtts[int(0.99 * (len(rtts) - 1))] * 1e6, 1),
    }


async def ours(port: str, n: int) -> dict[str, float]:
    rig = RigConfig(backend="serial")
    async with SerialHal(rig, port=port) as hal:
        await hal.upload_limits(FirmwareLimits.from_rig(rig))
        rtts = []
        for _i in range(n):
            start = time.perf_counter()
            await hal.set_pump("plasma", 0.0)  # allowed in the safe state; acked each time
            rtts.append(time.perf_counter() - start)
    return figures(rtts)


async def peer(port: str, n: int) -> dict[str, float]:
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusSerialClient

    client = AsyncModbusSerialClient(port, framer=FramerType.RTU, baudrate=115200, timeout=1)
    await client.connect()
    try:
        rtts = []
        for _ in range(n):
            start = time.perf_counter()
            result = await client.read_holding_registers(0, count=16, device_id=1)
            rtts.append(time.perf_counter() - start)
            assert not result.isError()
    finally:
        client.close()
    return figures(rtts)


def _raw(device: str) -> int:
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def echo(device: str) -> None:
    """The floor's far end: bytes straight back, no framing, no event loop."""
    fd = _raw(device)
    while data := os.read(fd, 4096):
        os.write(fd, data)


def floor(port: str, n: int) -> dict[str, float]:
    """The fastest any protocol could go on this path: 12 bytes out, 12 back, blocking
    reads, nothing decoded. No peer can be more than peer/floor times slower than this."""
    fd = _raw(port)
    try:
        rtts = []
        for _ in range(n):
            start = time.perf_counter()
            os.write(fd, bytes(12))
            got = 0
            while got < 12:
                got += len(os.read(fd, 64))
            rtts.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return figures(rtts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--echo", metavar="DEVICE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        echo(args.echo)
        return
    result: dict[str, object] = {
        "bench": "link_rtt",
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "target": "ours median <= 300 us and >= 10x faster than the peer",
    }
    with tempfile.TemporaryDirectory() as tmp:
        rig_file = Path(tmp) / "rig.yaml"
        rig_file.write_text(to_yaml(RigConfig()))
        with process("-m", "bench.ptybridge", first_line=True) as ends:
            server_end, client_end = ends.split()
            with process(
                "-m", "controller", "firmware-sim", "--rig", str(rig_file), "--device", server_end,
                "--quiet",
            ):  # fmt: skip
                time.sleep(1.0)
                ours_figures = asyncio.run(ours(client_end, args.n))
                result["ours_set_pump_ack"] = ours_figures
        with process("-m", "bench.ptybridge", first_line=True) as ends:
            server_end, client_end = ends.split()
            with process("-m", "bench.modbus_server", server_end):
                time.sleep(1.5)
                peer_figures = asyncio.run(peer(client_end, args.n))
                result["peer_pymodbus_rtu_read_16"] = peer_figures
        with process("-m", "bench.ptybridge", first_line=True) as ends:
            server_end, client_end = ends.split()
            with process("-m", "bench.link_rtt", "--echo", server_end):
                time.sleep(0.5)
                floor_figures = floor(client_end, args.n)
                result["floor_raw_echo_12_bytes"] = floor_figures
    ours_median = ours_figures["median_us"]
    peer_median = peer_figures["median_us"]
    floor_median = floor_figures["median_us"]
    result["speedup_median"] = round(peer_median / ours_median, 1)
    # the most any protocol on this path could beat the peer by
    result["speedup_ceiling"] = round(peer_median / floor_median, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
