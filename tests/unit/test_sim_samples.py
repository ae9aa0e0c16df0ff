"""The simulated firmware builds the controller's `Sample` itself for SimHal (one object per
sample, not a Snapshot then a Sample): it must be the very sample its `Snapshot` (what the
serial link sends) stands for, field by field, faults and safe states included."""

from __future__ import annotations

from controller.config.rig import RigConfig
from controller.rig import PUMP_NAMES, FirmwareState, PumpReading, Reading, SafeReason, Sample
from firmware_sim.faults import Faults
from firmware_sim.firmware import Firmware, Limits, Snapshot
from firmware_sim.physics import Physics


def reference(s: Snapshot) -> Sample:
    """A Snapshot as the controller's Sample, the plain way (SimHal's conversion before)."""
    return Sample(
        t_ms=s.t_ms,
        seq=s.counter,
        pumps={
            n: PumpReading(c, m)
            for n, c, m in zip(PUMP_NAMES, s.commanded, s.measured, strict=True)
        },
        sensors={n: Reading(v, s.valid[n]) for n, v in s.sensors.items()},
        detectors={"air_return": s.air_return, "blood_leak": s.blood_leak},
        valves=dict(s.valves),
        state=FirmwareState.SAFE if s.safe else FirmwareState.RUNNING,
        safe_reason=SafeReason(s.reason),
        totals_ml=dict(zip(PUMP_NAMES, s.totals, strict=True)),
    )


def test_the_sample_built_for_simhal_is_the_snapshot_s_sample() -> None:
    fw = Firmware(Physics(), RigConfig())
    built: list[Sample] = []
    snapshots: list[Snapshot] = []
    fw.on_rig_sample = built.append
    fw.on_sample = snapshots.append
    faults = Faults(fw)

    def run(ms: int) -> None:
        end = fw.t_ms + ms
        while fw.t_ms < end:
            fw.run_until(fw.t_ms + 200)
            fw.heartbeat()

    run(500)  # booted safe
    assert fw.set_limits(Limits()) is None
    fw.heartbeat()
    assert fw.arm() is None
    fw.set_valve("venous_clamp", "open")
    fw.set_valve("plasma_route", "collect")
    for name, rate in (("blood", 120.0), ("plasma", 30.0), ("heparin", 2.0), ("loop", 50.0)):
        assert fw.set_pump(name, rate) is None
    run(2000)
    faults.inject("sensor_missing", sensor="map")
    faults.inject("sensor_out_of_range", sensor="waste_bag")
    faults.inject("sensor_stuck", sensor="plasma")
    run(1000)
    faults.clear("sensor_missing")
    faults.clear("sensor_out_of_range")
    faults.clear("sensor_stuck")
    run(1000)
    faults.inject("air_bubble")  # the safe state
    run(1000)
    assert fw.safe
    assert len(built) == len(snapshots) > 40
    for sample, snapshot in zip(built, snapshots, strict=True):
        want = reference(snapshot)
        assert repr(sample) == repr(want)  # repr: a missing reading is NaN, never equal
        assert type(sample.sensors["map"]) is Reading
        assert type(sample.pumps["blood"]) is PumpReading
        assert sample.safe_reason is want.safe_reason
    assert any(not r.valid for s in built for r in s.sensors.values())
