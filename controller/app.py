"""The control loop: one sample in, commands out (ARCHITECTURE: data flow).

Each cycle reads a sample, accounts volumes, heartbeats the firmware, applies operator
requests, lets the state machine move on measured progress, and commands the setpoints of the
current phase (only what changed). Time is the samples' rig time, never the wall clock, so a
six-hour treatment runs in seconds on the simulated rig.

Any exception inside the loop ends with the firmware commanded safe and the machine in
`fault`, the traceback kept for the summary: never a silent crash with pumps running.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from controller import sizing
from controller.config.prescription import Prescription
from controller.config.rig import (
    DETECTOR_NAMES,
    PRESSURE_NAMES,
    PUMP_NAMES,
    SENSOR_NAMES,
    RigConfig,
)
from controller.errors import AlsError, CommandRefused
from controller.fsm import phases
from controller.fsm.machine import IllegalRequest, TransitionRecord, Treatment
from controller.hal.base import FirmwareLimits, Hal, Sample
from controller.summary import AlarmOut, Summary, TransitionOut, VolumesOut
from controller.volumes import Volumes

PROTOCOL_VERSION = 1
#: Rates used to check that each pump moves and its encoder answers (heparin in mL/h).
SELF_TEST_RATE = {name: 10.0 for name in PUMP_NAMES} | {"blood": 30.0}
SELF_TEST_PUMP_S = 1.0
ENCODER_TOLERANCE = 0.10
#: A pressure reading further than this from zero at rest does not zero.
ZERO_TOLERANCE_MMHG = 50.0
#: States during which volumes are accounted (from connection on).
ACCOUNTED = frozenset(
    {"connecting", "exchange", "exchange_collect", "purification", "rinse_back", "paused", "alarm"}
)


class StepFailed(AlsError):
    """A self-test or priming step failed; the message names the part."""


@dataclass(slots=True)
class Status:
    """What a progress display shows, once per cycle."""

    t_ms: int
    phase: str
    volumes: Volumes
    alarms: list[str]
    sample: Sample


@dataclass(slots=True)
class _Run:
    alarms: list[AlarmOut] = field(default_factory=list)
    safe_ms: int = 0
    phase_ms: dict[str, int] = field(default_factory=dict)
    purification_ms: int = 0
    rinse_start_ml: float = 0.0
    error: str | None = None


class Controller:
    """Runs one treatment on one HAL. `request()` is how an operator (or MQTT) acts."""

    def __init__(
        self,
        hal: Hal,
        rig: RigConfig,
        prescription: Prescription,
        *,
        on_status: Callable[[Status], None] | None = None,
        on_transition: Callable[[TransitionRecord], None] | None = None,
        max_rig_s: float | None = None,
        auto_start: bool = True,
    ) -> None:
        self.hal = hal
        self.rig = rig
        self.rx = prescription
        self.on_status = on_status
        self.machine = Treatment(prescription.mode, on_transition=self._transition)
        self._on_transition = on_transition
        self.volumes = Volumes()
        self.auto_start = auto_start
        plan = sizing.plan(prescription)
        self.max_rig_ms = int(1000 * (max_rig_s if max_rig_s is not None else 2 * plan.total_s))
        self.sample: Sample | None = None
        self.limits = FirmwareLimits.from_rig(rig)
        self._requests: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._sent: dict[str, float | str] = {}
        self._run = _Run()
        self._last_state_ms = 0
        self.pressure_zero: dict[str, float] = {}
        #: operator requests refused, with the reason (also for MQTT answers)
        self.rejected: list[str] = []
        self.traceback: str | None = None

    # -- operator -----------------------------------------------------------------------
    def request(self, trigger: str, cause: str = "operator") -> None:
        """Queue an operator action; it is applied at the next cycle (refused if illegal)."""
        self._requests.put_nowait((trigger, cause))

    # -- one cycle ----------------------------------------------------------------------
    async def _cycle(self) -> Sample:
        """Read one sample and do the bookkeeping every cycle needs, in every state."""
        sample = await self.hal.next_sample()
        prev = self.sample
        self.sample = sample
        self.machine.now_ms = sample.t_ms
        dt = sample.t_ms - prev.t_ms if prev is not None else 0
        phase = self.machine.phase
        self._run.phase_ms[phase] = self._run.phase_ms.get(phase, 0) + dt
        if phase == "purification":
            self._run.purification_ms += dt
        if sample.safe and prev is not None:
            self._run.safe_ms += dt
        if phase in ACCOUNTED:
            self.volumes.update(sample, phase)
        else:
            self.volumes.last_t_ms = sample.t_ms
        self.hal.drain_events()
        await self.hal.heartbeat()
        if self.on_status is not None:
            alarms = [a.cause for a in self._run.alarms] if phase == "alarm" else []
            self.on_status(Status(sample.t_ms, phase, self.volumes, alarms, sample))
        return sample

    async def _wait(self, seconds: float, check: Callable[[Sample], None] | None = None) -> Sample:
        """Let `seconds` of rig time pass, cycling; `check` may raise on every sample."""
        sample = await self._cycle()
        end = sample.t_ms + int(seconds * 1000)
        while sample.t_ms < end:
            sample = await self._cycle()
            if check is not None:
                check(sample)
        return sample

    async def _command(self, sp: phases.Setpoints) -> None:
        """Send what differs from what was last acknowledged, in a safe order.

        Commands reach the firmware one by one and it checks its limits between them, so
        the order matters: the clamp opens before any pump speeds up, pumps slow down
        before any speeds up, and the clamp closes only after the pumps have stopped
        (a blood pump against a closed clamp trips the return-pressure limit).
        """
        sent = self._sent
        closing = sp.valves.get("venous_clamp") == "closed" and sent.get("venous_clamp") != "closed"
        for name, position in sp.valves.items():
            if sent.get(name) != position and not (closing and name == "venous_clamp"):
                await self.hal.set_valve(name, position)
                sent[name] = position
        changes = [(n, r) for n, r in sp.pumps.items() if sent.get(n) != r]
        for name, rate in sorted(changes, key=lambda c: c[1] > float(sent.get(c[0], 0.0))):
            await self.hal.set_pump(name, rate)
            sent[name] = rate
        if closing:
            await self.hal.set_valve("venous_clamp", "closed")
            sent["venous_clamp"] = "closed"

    async def _stop_all(self, clamp: str = "closed") -> None:
        await self._command(phases.Setpoints.stopped(clamp=clamp))

    # -- self-test and priming ----------------------------------------------------------
    async def self_test(self) -> None:
        """SPEC 4 self_test; each failure raises StepFailed naming the part."""
        info = self.hal.info
        if info.protocol_version != PROTOCOL_VERSION:
            raise StepFailed(
                f"link: firmware speaks protocol {info.protocol_version}, "
                f"controller {PROTOCOL_VERSION}"
            )
        try:
            await self.hal.upload_limits(self.limits)
        except (CommandRefused, AlsError) as exc:
            raise StepFailed(f"firmware limits: {exc}") from exc
        sample = await self._cycle()
        for name in SENSOR_NAMES:
            reading = sample.sensors[name]
            if not reading.valid:
                raise StepFailed(f"sensor {name}: reading {reading.value:g} is not plausible")
        for name in DETECTOR_NAMES:
            if sample.detectors[name]:
                raise StepFailed(f"detector {name}: reports an alarm at rest")
        for name in PRESSURE_NAMES:
            value = sample.sensors[name].value
            if abs(value) > ZERO_TOLERANCE_MMHG:
                raise StepFailed(f"pressure sensor {name}: {value:.0f} mmHg at rest, cannot zero")
            self.pressure_zero[name] = value
        try:
            await self.hal.arm()
        except CommandRefused as exc:
            raise StepFailed(f"firmware refuses to arm: {exc.code}") from exc
        self._sent.clear()
        for position in ("open", "closed"):
            await self.hal.set_valve("venous_clamp", position)
            self._sent["venous_clamp"] = position
            seen = (await self._cycle()).valves["venous_clamp"]
            if seen != position:
                raise StepFailed(f"venous clamp: commanded {position}, reports {seen}")
        for name in PUMP_NAMES:
            await self._pump_check(name)

    async def _pump_check(self, name: str) -> None:
        rate = SELF_TEST_RATE[name]
        if name == "blood":
            await self.hal.set_valve("venous_clamp", "open")
        await self.hal.set_pump(name, rate)
        sample = await self._wait(SELF_TEST_PUMP_S)
        measured = sample.pumps[name].measured
        await self.hal.set_pump(name, 0.0)
        if name == "blood":
            await self.hal.set_valve("venous_clamp", "closed")
        if sample.safe:
            raise StepFailed(f"pump {name}: firmware went safe ({sample.safe_reason})")
        if abs(measured - rate) > ENCODER_TOLERANCE * rate:
            raise StepFailed(f"pump {name}: commanded {rate:g}, encoder reads {measured:.1f}")

    async def prime(self) -> None:
        """Saline through the blood side (and the loop when the mode has one), no air."""

        def no_air(sample: Sample) -> None:
            if sample.detectors["air_return"]:
                raise StepFailed("priming: air detected in the return line")
            if sample.safe:
                raise StepFailed(f"priming: firmware went safe ({sample.safe_reason})")

        target = sizing.PRIME_BLOOD_SIDE_ML
        pumps = dict.fromkeys(PUMP_NAMES, 0.0)
        pumps["blood"] = sizing.PRIME_FLOW_ML_MIN
        if self.rx.has_loop:
            pumps["loop"] = sizing.PRIME_FLOW_ML_MIN * sizing.PRIME_LOOP_ML / target
        await self._command(
            phases.Setpoints(pumps, {"plasma_route": "waste", "venous_clamp": "open"})
        )
        primed = 0.0
        sample = await self._cycle()
        while primed < target:
            last = sample.t_ms
            sample = await self._cycle()
            no_air(sample)
            primed += sample.pumps["blood"].measured * (sample.t_ms - last) / 60000.0
        await self._stop_all()

    # -- treatment ----------------------------------------------------------------------
    def _progress(self, sample: Sample) -> phases.Progress:
        v = self.volumes
        return phases.Progress(
            phase_s=self.machine.phase_s(),
            exchanged_ml=v.exchanged_ml,
            processed_ml=v.processed_ml,
            heparin_ml=v.pumped_ml["heparin"],
            blood_rinsed_ml=v.pumped_ml["blood"] - self._run.rinse_start_ml,
            outer_chamber_ml=sample.sensors["outer_chamber"].value,
            inner_chamber_ml=sample.sensors["inner_chamber"].value,
            purification_s=self._run.purification_ms / 1000.0,
        )

    def _setpoints(self, phase: str, pr: phases.Progress) -> phases.Setpoints | None:
        rx = self.rx
        if phase == "connecting":
            return phases.connecting(rx, pr)
        if phase == "exchange":
            return phases.exchange(rx, pr)
        if phase == "exchange_collect":
            return phases.exchange_collect(rx, pr)
        if phase == "purification":
            return phases.purification(rx, pr)
        if phase == "rinse_back":
            return phases.rinse_back(rx, pr)
        if phase == "paused":
            return phases.paused(rx, pr, self.rig.alarms.minimum_blood_flow_ml_min)
        return None  # alarm, fault, done: nothing is commanded but the safe state

    async def _advance(self, phase: str, pr: phases.Progress) -> None:
        """Move on measured progress (SPEC 4), never on elapsed time alone."""
        rx, m = self.rx, self.machine
        if phase == "connecting" and phases.connected(rx, pr):
            await m.connected(cause="blood flow at prescription")
        elif phase == "exchange":
            if phases.exchange_done(rx, pr) and not rx.has_loop:
                await m.exchange_complete(cause=f"exchanged {pr.exchanged_ml:.0f} mL")
            elif phases.collection_due(rx, pr):
                await m.collect(cause=f"{rx.exchange_ml - pr.exchanged_ml:.0f} mL to exchange")
        elif phase == "exchange_collect" and phases.exchange_done(rx, pr):
            await m.exchange_complete(cause=f"exchanged {pr.exchanged_ml:.0f} mL")
        elif phase == "purification" and phases.purification_done(rx, pr):
            await m.purification_complete(
                cause=f"processed {pr.processed_ml:.0f} mL in {pr.purification_s / 60:.0f} min"
            )
        elif phase == "rinse_back" and phases.rinse_back_done(pr):
            await m.rinsed(cause=f"{pr.blood_rinsed_ml:.0f} mL rinsed back")

    async def _apply_requests(self) -> None:
        while not self._requests.empty():
            trigger, cause = self._requests.get_nowait()
            try:
                if trigger in ("resume", "stop") and self.sample is not None and self.sample.safe:
                    await self._arm_for(trigger)
                await self.machine.request(trigger, cause)
            except (IllegalRequest, CommandRefused) as exc:
                self.rejected.append(f"{trigger}: {exc}")

    async def _arm_for(self, trigger: str) -> None:
        try:
            await self.hal.arm()
        except CommandRefused as exc:
            raise IllegalRequest(f"cannot {trigger}: firmware refuses to arm ({exc.code})") from exc
        self._sent.clear()

    async def _treat(self) -> None:
        m = self.machine
        while m.phase != "done":
            sample = await self._cycle()
            await self._apply_requests()
            phase = m.phase
            if sample.safe and phase not in ("alarm", "fault", "done"):
                self._run.alarms.append(
                    AlarmOut(t_s=sample.t_s, cause=f"firmware safe: {sample.safe_reason}")
                )
                await m.alarm(cause=f"firmware safe state: {sample.safe_reason}")
                self._sent.clear()
                continue
            pr = self._progress(sample)
            sp = self._setpoints(phase, pr)
            if sp is not None:
                await self._command(sp)
            await self._advance(phase, pr)
            if sample.t_ms > self.max_rig_ms:
                if m.phase == "alarm":
                    break  # an unattended alarm ends the run where it stands
                raise StepFailed(f"treatment exceeded {self.max_rig_ms / 3.6e6:.1f} h of rig time")

    async def run(self) -> Summary:
        """Self-test, priming, then the treatment; always returns a summary."""
        m = self.machine
        try:
            await m.begin(cause="run started")
            await self.self_test()
            await m.self_test_passed(cause="every part answered")
            await self.prime()
            await m.primed(cause="prime volume reached, no air")
            if self.auto_start:
                await m.start(cause="unattended start")
            await self._treat()
            await self._stop_all()
        except Exception as exc:  # the loop must end safe whatever happened
            self._run.error = "".join(traceback.format_exception_only(exc)).strip()
            self.traceback = traceback.format_exc()
            try:
                await self.hal.enter_safe()
            finally:
                if m.phase != "fault":
                    await m.fail(cause=self._run.error)
        return self.summary()

    # -- results ------------------------------------------------------------------------
    def _transition(self, record: TransitionRecord) -> None:
        if record.dest == "rinse_back" and record.source not in ("paused", "alarm"):
            self._run.rinse_start_ml = self.volumes.pumped_ml["blood"]
        if self._on_transition is not None:
            self._on_transition(record)

    def summary(self) -> Summary:
        v = self.volumes
        held = max(v.collected_ml, 1.0)
        phases_s = {k: round(ms / 1000.0, 1) for k, ms in self._run.phase_ms.items()}
        return Summary(
            rig_id=self.rig.rig_id,
            backend=self.hal.backend,
            prescription=self.rx.name,
            mode=self.rx.mode,
            final_state=self.machine.phase,
            completed=self.machine.phase == "done"
            and any(t.source == "rinse_back" for t in self.machine.history),
            rig_time_s=(self.sample.t_ms / 1000.0) if self.sample else 0.0,
            phases_s=phases_s,
            volumes=VolumesOut(
                exchange_ml=round(v.exchanged_ml, 2),
                collected_ml=round(v.collected_ml, 2),
                processed_plasma_ml=round(v.processed_ml, 2),
                passes=round(v.processed_ml / held, 2) if v.processed_ml else 0.0,
                filtrate_ml=round(v.pumped_ml["filtrate"], 2),
                substitution_ml=round(v.pumped_ml["substitution"], 2),
                replacement_ml=round(v.pumped_ml["replacement"], 2),
                return_ml=round(v.pumped_ml["return"], 2),
                plasma_ml=round(v.pumped_ml["plasma"], 2),
                blood_ml=round(v.pumped_ml["blood"], 2),
                heparin_ml=round(v.pumped_ml["heparin"], 3),
                fluid_balance_ml=round(v.fluid_balance_ml, 2),
            ),
            alarms=self._run.alarms,
            time_in_safe_s=round(self._run.safe_ms / 1000.0, 1),
            transitions=[
                TransitionOut(
                    t_s=t.t_ms / 1000.0,
                    source=t.source,
                    dest=t.dest,
                    trigger=t.trigger,
                    cause=t.cause,
                )
                for t in self.machine.history
            ],
            error=self._run.error,
        )
