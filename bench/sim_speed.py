"""How much faster than real time the simulated rig runs (issue: simulated rig).

Runs 6 h of rig time of the firmware + physics with fixed pump rates (the Li-ALS loop), the
controller's part reduced to a heartbeat every 200 ms, and prints JSON. Two peers are
measured in the same run, on the same machine:

- `naive_fixed_step`: the obvious design, every 10 ms tick integrating the physics and
  checking the protective system (what docs/reference.md estimates at ~4900x);
- `simhal_samples`: the same firmware behind SimHal, every sample converted to a HAL
  `Sample` and awaited, as the controller sees it.

Usage: python -m bench.sim_speed [--hours H]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time

from controller import compiled_modules
from controller.config.rig import RigConfig
from controller.hal.base import FirmwareLimits
from controller.hal.sim import SimHal
from firmware_sim.firmware import Firmware, Limits
from firmware_sim.physics import Physics, PhysicsParams

RATES = {
    "blood": 120.0,
    "plasma": 30.0,
    "replacement": 30.0,
    "loop": 240.0,
    "filtrate": 20.0,
    "substitution": 20.0,
    "return": 30.0,
    "heparin": 0.5,
}
HEARTBEAT_MS = 200


def running_firmware() -> Firmware:
    params = PhysicsParams(replacement_bag_ml=20000.0, substitution_bag_ml=20000.0, seed=1)
    fw = Firmware(Physics(params), RigConfig())
    fw.set_limits(Limits())
    fw.heartbeat()
    fw.arm()
    fw.set_valve("venous_clamp", "open")
    fw.set_valve("plasma_route", "collect")
    for name, rate in RATES.items():
        assert fw.set_pump(name, rate) is None, name
    return fw


def bench_firmware(rig_s: float) -> dict[str, float]:
    fw = running_firmware()
    total = fw.physics.total_volume_ml()
    start = time.perf_counter()
    end_ms = int(rig_s * 1000)
    while fw.t_ms < end_ms:
        fw.run_until(fw.t_ms + HEARTBEAT_MS)
        fw.heartbeat()
    wall = time.perf_counter() - start
    assert not fw.safe, fw.reason
    return {
        "rig_s": rig_s,
        "wall_s": round(wall, 3),
        "x_real_time": round(rig_s / wall),
        "volume_drift_ml": abs(fw.physics.total_volume_ml() - total),
    }


def bench_naive(rig_s: float) -> dict[str, float]:
    """The peer: a fixed-step loop doing physics and protection on every tick."""
    fw = running_firmware()
    physics = fw.physics
    tick = fw.tick_ms
    start = time.perf_counter()
    t = 0
    end_ms = int(rig_s * 1000)
    while t < end_ms:
        t += tick
        physics.step(tick / 1000.0)
        fw._refresh()
        fw._protect()
        if t % HEARTBEAT_MS == 0:
            fw.last_heartbeat_ms = t
            fw.t_ms = t
    wall = time.perf_counter() - start
    return {"rig_s": rig_s, "wall_s": round(wall, 3), "x_real_time": round(rig_s / wall)}


async def bench_simhal(rig_s: float) -> dict[str, float]:
    hal = SimHal(RigConfig(), physics=Physics(PhysicsParams(replacement_bag_ml=20000.0)))
    async with hal:
        await hal.upload_limits(FirmwareLimits.from_rig(RigConfig()))
        await hal.heartbeat()
        await hal.arm()
        await hal.set_valve("venous_clamp", "open")
        await hal.set_valve("plasma_route", "collect")
        for name, rate in RATES.items():
            await hal.set_pump(name, rate)
        start = time.perf_counter()
        end_ms = int(rig_s * 1000)
        sample = await hal.next_sample()
        last_hb = sample.t_ms
        while sample.t_ms < end_ms:
            sample = await hal.next_sample()
            if sample.t_ms - last_hb >= HEARTBEAT_MS:
                await hal.heartbeat()
                last_hb = sample.t_ms
        wall = time.perf_counter() - start
        assert not sample.safe, sample.safe_reason
    return {"rig_s": rig_s, "wall_s": round(wall, 3), "x_real_time": round(rig_s / wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    args = parser.parse_args()
    rig_s = args.hours * 3600
    result = {
        "bench": "sim_speed",
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "compiled": compiled_modules(),
        "target_x_real_time": 5000,
        "firmware_physics": bench_firmware(rig_s),
        "peer_naive_fixed_step": bench_naive(min(rig_s, 1800.0)),
        "simhal_samples": asyncio.run(bench_simhal(min(rig_s, 3600.0))),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
