"""Fault injection into the simulated rig: one fault per hazard row of docs/spec.md 5.2.

A fault is a change to the physics (air in the line, a clot, a stalled rotor, a hypotensive
patient) or to the firmware's view of it (a stuck, missing or out-of-range sensor, a deaf
heartbeat input, a power-on reset). Scenario files schedule them in rig time; tests call
`inject` / `clear` directly. Names and parameters are the `FAULTS` catalogue of the config
models, so a scenario is validated before anything runs.

Each fault's `start` and `stop` run at a tick boundary, then the firmware re-reads its
sensors so the very next tick sees the effect (air -> safe within one tick).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

from controller.config.scenario import FAULTS, FaultEvent, Scenario, fault_target
from firmware_sim.firmware import Firmware
from firmware_sim.physics import OVERSPEED_FACTOR, PRESSURE_INDEX, PUMP_INDEX, Physics

Action = Callable[[Firmware, Physics, Any], Callable[[], None] | None]


def _flag(attr: str) -> Action:
    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        setattr(ph, attr, True)
        return lambda: setattr(ph, attr, False)

    return start


def _severity(attr: str) -> Action:
    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        setattr(ph, attr, params.severity)
        return lambda: setattr(ph, attr, 0.0)

    return start


def _fouling(attr: str) -> Action:
    """Clotting and fouling grow while the fault lasts and do not undo themselves."""

    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        rate = params.mmhg_per_min / 60.0
        setattr(ph, attr, getattr(ph, attr) + rate)
        return lambda: setattr(ph, attr, getattr(ph, attr) - rate)

    return start


def _bag_empty(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """The bag runs dry (taken away or leaking); its content comes back when it clears."""
    taken = ph.volumes[params.bag]
    ph.volumes[params.bag] = 0.0
    ph.outside_ml -= taken

    def stop() -> None:
        ph.volumes[params.bag] += taken
        ph.outside_ml += taken

    return stop


def _bag_full(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """The bag fills to its capacity (a wrong bag hung, a kinked outlet)."""
    capacity = (
        ph.params.waste_capacity_ml
        if params.bag == "waste_bag"
        else ph.params.chamber_capacity_ml
        if params.bag in ("outer_chamber", "inner_chamber")
        else max(ph.params.replacement_bag_ml, ph.params.substitution_bag_ml)
    )
    added = max(0.0, capacity - ph.volumes[params.bag])
    ph.volumes[params.bag] += added
    ph.outside_ml += added

    def stop() -> None:
        removed = min(added, ph.volumes[params.bag])
        ph.volumes[params.bag] -= removed
        ph.outside_ml -= removed

    return stop


def _scale_drift(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    rate = params.grams_per_min / 60.0
    ph.scale_drift_g_s[params.bag] += rate

    def stop() -> None:
        ph.scale_drift_g_s[params.bag] -= rate
        ph.scale_offset_g[params.bag] = 0.0

    return stop


def _needle_out(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    ph.needle_out_mmhg = params.drop_mmhg
    return lambda: setattr(ph, "needle_out_mmhg", 0.0)


def _hypotension(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    ph.hypotension_mmhg += params.drop_mmhg

    def stop() -> None:
        ph.hypotension_mmhg -= params.drop_mmhg

    return stop


def _pump_factor(factor: float) -> Action:
    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        i = PUMP_INDEX[params.pump]
        ph.pump_factor[i] = factor
        return lambda: ph.pump_factor.__setitem__(i, 1.0)

    return start


def _pump_delivery(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """Worn tubing: the pump delivers `factor` of its command; its encoder counts that, or
    (the usual case) the rotor turning as commanded."""
    i = PUMP_INDEX[params.pump]
    ph.pump_factor[i] = params.factor
    ph.encoder_blind[i] = not params.encoder_sees

    def stop() -> None:
        ph.pump_factor[i] = 1.0
        ph.encoder_blind[i] = False

    return stop


def _route_stuck(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """The plasma route valve stays where it is, whatever it is sent."""
    ph.route_stuck = True
    return lambda: setattr(ph, "route_stuck", False)


def _clamp_stuck_open(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """The venous clamp does not close (the firmware's safe state included)."""
    ph.clamp_stuck_open = True

    def stop() -> None:
        ph.clamp_stuck_open = False
        ph.set_valve("venous_clamp", fw.valves["venous_clamp"])  # it follows again

    return stop


def _bag_valve_leak(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    ph.bag_valve_leak_k = params.per_s
    return lambda: setattr(ph, "bag_valve_leak_k", 0.0)


def _filter_rupture(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    ph.filter_ruptured = True
    return lambda: setattr(ph, "filter_ruptured", False)


def _sensor_drift(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """A pressure sensor's reading drifts; clearing the fault is a person re-zeroing (or
    replacing) the sensor: its reading is true again."""
    i = PRESSURE_INDEX[params.sensor]
    ph.pressure_drift[i] += params.mmhg_per_min / 60.0

    def stop() -> None:
        ph.pressure_drift[i] -= params.mmhg_per_min / 60.0
        ph.pressure_offset[i] = 0.0

    return stop


def _map_ramp(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    """The patient's MAP falls steadily, then holds at its deepest (a slow bleed, sepsis)."""
    base = ph.hypotension_mmhg
    ph.hypotension_rate = params.mmhg_per_min / 60.0
    ph.hypotension_max_mmhg = base + params.drop_mmhg

    def stop() -> None:
        ph.hypotension_rate = 0.0
        ph.hypotension_mmhg = base

    return stop


def _command_loss(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    fw.command_loss = params.fraction
    fw.corrupt_commands = params.corrupt

    def stop() -> None:
        fw.command_loss = 0.0
        fw.corrupt_commands = False

    return stop


def _sensor_stuck(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    fw.stuck[params.sensor] = fw.raw_sensor(params.sensor)

    def stop() -> None:
        fw.stuck.pop(params.sensor, None)

    return stop


def _sensor_set(attr: str) -> Action:
    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        getattr(fw, attr).add(params.sensor)
        return lambda: getattr(fw, attr).discard(params.sensor)

    return start


def _plasma_temp(sign: float) -> Action:
    def start(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
        ph.temp_offset_c += sign * params.offset_c
        return lambda: setattr(ph, "temp_offset_c", ph.temp_offset_c - sign * params.offset_c)

    return start


def _silence(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    fw.deaf = True
    return lambda: setattr(fw, "deaf", False)


def _link_down(fw: Firmware, ph: Physics, params: Any) -> Callable[[], None]:
    fw.mute = True
    return lambda: setattr(fw, "mute", False)


def _mcu_reset(fw: Firmware, ph: Physics, params: Any) -> None:
    fw.reset()
    return None


ACTIONS: dict[str, Action] = {
    "air_bubble": _flag("air_return"),
    "return_disconnection": _flag("return_disconnected"),
    "needle_dislodgement": _needle_out,
    "return_occlusion": _severity("return_occlusion"),
    "access_occlusion": _severity("access_occlusion"),
    "separator_fouling": _fouling("separator_fouling_rate"),
    "blood_leak": _flag("blood_leak"),
    "adsorber_clotting": _fouling("adsorber_clot_rate"),
    "filter_clotting": _fouling("filter_clot_rate"),
    "bag_empty": _bag_empty,
    "bag_full": _bag_full,
    "scale_drift": _scale_drift,
    "hypotension": _hypotension,
    "pump_stall": _pump_factor(0.0),
    "pump_overspeed": _pump_factor(OVERSPEED_FACTOR),
    "sensor_stuck": _sensor_stuck,
    "sensor_out_of_range": _sensor_set("out_of_range"),
    "sensor_missing": _sensor_set("missing"),
    "plasma_too_cold": _plasma_temp(-1.0),
    "plasma_too_hot": _plasma_temp(+1.0),
    "controller_silence": _silence,
    "link_down": _link_down,
    "mcu_reset": _mcu_reset,
    "pump_delivery": _pump_delivery,
    "route_stuck": _route_stuck,
    "clamp_stuck_open": _clamp_stuck_open,
    "bag_valve_leak": _bag_valve_leak,
    # the syringe's line occluded: its driver stalls against it (its encoder sees it)
    "heparin_occlusion": lambda fw, ph, params: _pump_factor(0.0)(
        fw, ph, FAULTS["pump_stall"].model_validate({"pump": "heparin"})
    ),
    "filter_rupture": _filter_rupture,
    "sensor_drift": _sensor_drift,
    "map_ramp": _map_ramp,
    "command_loss": _command_loss,
}
assert set(ACTIONS) == set(FAULTS), "every catalogued fault needs an action"


#: One running fault: its kind and what it acts on (a pump, a bag, a sensor, or nothing).
Key = tuple[str, str | None]


class Faults:
    """Scheduled and direct fault injection for one firmware + physics pair.

    Faults are told apart by kind and target: two pumps can stall at once. Starting a fault
    whose kind and target are already running replaces it (validation refuses scenarios
    that would do so). A scheduled stop ends only its own start, so a fault that replaced
    another is not ended by the other's stop.
    """

    def __init__(self, firmware: Firmware, scenario: Scenario | None = None) -> None:
        self.firmware = firmware
        self.physics = firmware.physics
        #: (fault, target) -> (the start that runs it, how to undo it, its parameters)
        self._running: dict[Key, tuple[int, Callable[[], None], dict[str, Any]]] = {}
        #: (rig ms, stop before start at the same ms, order, start?, token, event)
        self._queue: list[tuple[int, int, int, bool, int, FaultEvent]] = []
        self._order = itertools.count()
        #: faults timed from a phase, waiting for it to start; each started phase's first
        #: start on the firmware's clock
        self._by_phase: dict[str, list[FaultEvent]] = {}
        self._phase_ms: dict[str, int] = {}
        firmware.on_wake = self._wake
        if scenario is not None:
            for event in scenario.events:
                self.schedule(event)

    @property
    def active(self) -> set[str]:
        """The kinds of fault running now."""
        return {fault for fault, _ in self._running}

    def running(self) -> list[Key]:
        """Every running fault with its target."""
        return list(self._running)

    # -- direct use (tests) -------------------------------------------------------------
    def inject(self, fault: str, **params: Any) -> None:
        """Start `fault` now; it acts from the next tick."""
        event = FaultEvent.model_validate({"at_s": 0, "fault": fault, "params": params})
        assert event.at_s is not None
        self._start(next(self._order), event)

    def clear(self, fault: str, target: str | None = None) -> None:
        """End `fault` now, on `target` or on every target (a no-op when not running)."""
        for key in [k for k in self._running if k[0] == fault and target in (None, k[1])]:
            self._stop(key)

    # -- scenarios ----------------------------------------------------------------------
    def schedule(self, event: FaultEvent) -> None:
        if event.phase is not None:  # timed from a phase's first start
            started = self._phase_ms.get(event.phase)
            if started is None:  # not yet: when it starts
                self._by_phase.setdefault(event.phase, []).append(event)
            else:  # a test scheduling mid-run: from when it did
                self._schedule_at(event, started + event.after_s * 1000)
            return
        assert event.at_s is not None
        self._schedule_at(event, event.at_s * 1000)

    def phase_started(self, phase: str) -> None:
        """The controller entered `phase` (the in-process simulated rig is told so): the
        faults timed from its first start are scheduled now."""
        if phase in self._phase_ms:
            return
        self._phase_ms[phase] = self.firmware.t_ms
        for event in self._by_phase.pop(phase, []):
            self._schedule_at(event, self.firmware.t_ms + event.after_s * 1000)

    def phase_start_ms(self, phase: str) -> int | None:
        """When `phase` first started on the firmware's clock; None: not yet."""
        return self._phase_ms.get(phase)

    def _schedule_at(self, event: FaultEvent, at_ms: float) -> None:
        tick = self.firmware.tick_ms
        start = math.ceil(at_ms / tick) * tick
        start = max(start, self.firmware.t_ms + tick)
        token = next(self._order)
        self._push(start, 1, True, token, event)
        if event.duration_s is not None:
            stop = start + max(tick, math.ceil(event.duration_s * 1000 / tick) * tick)
            self._push(stop, 0, False, token, event)

    def _push(self, t_ms: int, rank: int, start: bool, token: int, event: FaultEvent) -> None:
        heapq.heappush(self._queue, (t_ms, rank, next(self._order), start, token, event))
        self.firmware.wake_ms = float(self._queue[0][0])

    def _wake(self, t_ms: int) -> None:
        while self._queue and self._queue[0][0] <= t_ms:
            _, _, _, start, token, event = heapq.heappop(self._queue)
            if start:
                self._start(token, event)
            else:
                key = (event.fault, fault_target(event))
                running = self._running.get(key)
                if running is not None and running[0] == token:
                    self._stop(key)
        self.firmware.wake_ms = float(self._queue[0][0]) if self._queue else math.inf

    def _start(self, token: int, event: FaultEvent) -> None:
        key = (event.fault, fault_target(event))
        if key in self._running:
            self._stop(key)
        parsed = event.parsed_params()
        undo = ACTIONS[event.fault](self.firmware, self.physics, parsed)
        params = parsed.model_dump()  # with the defaults: what is running, in full
        if undo is not None:
            self._running[key] = (token, undo, params)
        self.firmware.sensors_changed()
        self.firmware.emit("fault_injected", event.fault, params)

    def _stop(self, key: Key) -> None:
        _, undo, params = self._running.pop(key)
        undo()
        self.firmware.sensors_changed()
        self.firmware.emit("fault_cleared", key[0], params)
