"""Volume accounting from the pump encoders, the run's statistics, and what they mean against
the prescription: what the phases switch on, the balance guard holds, and the summary shows.

Each sample reports the flow each pump ran at since the previous sample (commands act from
the next tick and the controller commands right after a sample), so volume += measured flow
x interval is exact for the piecewise-constant rates the controller commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import add, itemgetter, mul
from types import MappingProxyType

from controller.config.prescription import Prescription
from controller.control.events import Target, VolumesView
from controller.fsm.phases import Progress
from controller.rig import PUMP_NAMES, Sample
from controller.safety import balance
from controller.summary import AlarmOut, StopOut

EXCHANGE_PHASES = frozenset({"exchange", "exchange_collect"})
#: States during which volumes are accounted (from connection on).
ACCOUNTED = frozenset(
    {"connecting", "exchange", "exchange_collect", "purification", "rinse_back", "paused", "alarm"}
)
#: each pump's volume per minute of its measured rate (heparin is in mL/h), PUMP_NAMES order
_SCALES = tuple(1 / 60.0 if name == "heparin" else 1.0 for name in PUMP_NAMES)
#: a mapping's entries for each pump, in PUMP_NAMES order; a `PumpReading`'s measured rate
_by_pump = itemgetter(*PUMP_NAMES)
_measured = itemgetter(1)


@dataclass(slots=True)
class Volumes:
    pumped_ml: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PUMP_NAMES, 0.0))
    exchanged_ml: float = 0.0
    collected_ml: float = 0.0
    last_t_ms: int | None = None

    def update(self, sample: Sample, phase: str) -> None:
        if self.last_t_ms is None or sample.t_ms <= self.last_t_ms:
            self.last_t_ms = sample.t_ms
            return
        minutes = (sample.t_ms - self.last_t_ms) / 60000.0
        self.last_t_ms = sample.t_ms
        pumps = sample.pumps
        pumped = self.pumped_ml
        # pumped[name] += measured x scale x minutes for each pump, by map (in C)
        moved = map(mul, map(mul, map(_measured, _by_pump(pumps)), _SCALES), repeat(minutes))
        pumped.update(zip(PUMP_NAMES, map(add, _by_pump(pumped), moved), strict=False))
        plasma = pumps["plasma"].measured * minutes
        if phase in EXCHANGE_PHASES:
            self.exchanged_ml += plasma
        if sample.valves.get("plasma_route") == "collect":
            self.collected_ml += plasma

    def add_moved(self, moved_ml: dict[str, float], phase: str, collecting: bool) -> None:
        """Volumes counted by the encoders while the controller was away (a resume)."""
        for name, ml in moved_ml.items():
            self.pumped_ml[name] += ml
        if phase in EXCHANGE_PHASES:
            self.exchanged_ml += moved_ml["plasma"]
        if collecting:
            self.collected_ml += moved_ml["plasma"]

    @property
    def processed_ml(self) -> float:
        return self.pumped_ml["loop"]

    @property
    def patient_plasma_ml(self) -> float:
        """Plasma the plasma pump drew from the patient outside the exchange: in
        purification, the patient's own plasma that entered the loop, each mL once.

        The plasma pump runs only in exchange, exchange_collect and purification (and an
        alarm accounts to the phase it interrupted), so this is exact without a counter of
        its own, and a resumed run gets it from the journaled totals it already restores.
        """
        return self.pumped_ml["plasma"] - self.exchanged_ml

    @property
    def fluid_balance_ml(self) -> float:
        """Into the patient minus out of the patient.

        Filtrate and substitution act on the bag's plasma, not on the patient directly: they
        reach the patient through the return pump, so docs/spec.md's (replacement + substitution +
        return) - (plasma + filtrate), corrected by the bag levels, reduces to this.
        """
        v = self.pumped_ml
        return v["replacement"] + v["return"] + v["heparin"] - v["plasma"]

    def view(self) -> VolumesView:
        v = self.pumped_ml
        return VolumesView(
            self.exchanged_ml,
            self.collected_ml,
            v["loop"],
            v["plasma"] - self.exchanged_ml,
            v["replacement"] + v["return"] + v["heparin"] - v["plasma"],
            MappingProxyType(dict(v)),
        )


@dataclass(slots=True)
class RunStats:
    """What the summary reports besides the volumes, kept as the run goes."""

    phase_ms: dict[str, int] = field(default_factory=dict)
    safe_ms: int = 0
    purification_ms: int = 0
    rinse_start_ml: float = 0.0
    #: every alarm raised, for the summary
    alarms: list[AlarmOut] = field(default_factory=list)
    error: str | None = None
    #: what ended the run early, when something did
    stop: StopOut | None = None
    #: why the process was told to end, when it was
    interrupted: str | None = None


class Accounting:
    """Volumes and statistics, updated once per cycle, judged against the prescription."""

    def __init__(self) -> None:
        self.volumes = Volumes()
        self.run = RunStats()

    def update(self, sample: Sample, prev: Sample | None, phase: str, acting: str) -> None:
        """`phase` is the machine's state, `acting` the phase whose flows run (the
        interrupted one under an alarm: plasma still exchanged at an alarm's reduced flows
        counts for its phase)."""
        r = self.run
        dt = sample.t_ms - prev.t_ms if prev is not None else 0
        r.phase_ms[phase] = r.phase_ms.get(phase, 0) + dt
        if phase == "purification":
            r.purification_ms += dt
        if sample.safe and prev is not None:
            r.safe_ms += dt
        if phase in ACCOUNTED:
            self.volumes.update(sample, acting)
        else:
            self.volumes.last_t_ms = sample.t_ms

    def rinse_started(self) -> None:
        self.run.rinse_start_ml = self.volumes.pumped_ml["blood"]

    def progress(self, sample: Sample, phase_s: float) -> Progress:
        v = self.volumes
        s = sample.sensors
        return Progress(
            phase_s=phase_s,
            exchanged_ml=v.exchanged_ml,
            processed_ml=v.pumped_ml["loop"],
            patient_plasma_ml=v.patient_plasma_ml,
            heparin_ml=v.pumped_ml["heparin"],
            blood_rinsed_ml=v.pumped_ml["blood"] - self.run.rinse_start_ml,
            outer_chamber_ml=s["outer_chamber"].value,
            inner_chamber_ml=s["inner_chamber"].value,
            purification_s=self.run.purification_ms / 1000.0,
        )

    def target(self, rx: Prescription, phase: str) -> Target:
        """The phase's own goal: the exchange volume until the loop, then the purification's
        duration, processed volume or patient plasma."""
        v = self.volumes
        if phase == "purification" or (phase in ("rinse_back", "done") and rx.has_loop):
            end = rx.purification_end
            if end.duration_min is None and end.patient_plasma_ml is not None:
                return Target("patient plasma", v.patient_plasma_ml, end.patient_plasma_ml, "mL")
            if end.processed_plasma_ml is not None and end.duration_min is None:
                return Target("processed", v.processed_ml, end.processed_plasma_ml, "mL")
            minutes = self.run.purification_ms / 60000.0
            return Target("purification", minutes, end.duration_min or 0.0, "min")
        if rx.has_exchange:
            return Target("exchanged", v.exchanged_ml, rx.exchange_ml, "mL")
        return Target("processed", v.processed_ml, 0.0, "mL")

    def allowed_balance_ml(self, rx: Prescription) -> float:
        v = self.volumes
        return balance.allowed_balance_ml(
            rx, v.pumped_ml["heparin"], self.run.purification_ms / 1000.0, v.patient_plasma_ml
        )

    def within_prescription(
        self,
        rx: Prescription,
        phase: str,
        pumps: dict[str, float],
        allowed_ml: float | None = None,
    ) -> dict[str, float]:
        """The prescription's limits over whatever the phase and safety asked for: no more
        exchanged, processed or drawn than prescribed, in any state (balance.py), and the
        patient's balance held to what the prescription allows by now. `phase` is the
        treatment phase (the interrupted one under a pause or an alarm). `allowed_ml`: the
        `allowed_balance_ml` of these very volumes when the caller has it already."""
        v = self.volumes
        done = {
            "exchanged_ml": v.exchanged_ml,
            "processed_ml": v.pumped_ml["loop"],
            "patient_plasma_ml": v.patient_plasma_ml,
        }
        for name in balance.over_prescription(rx, phase, done, self.run.purification_ms / 1000.0):
            pumps[name] = 0.0
        if allowed_ml is None:
            allowed_ml = self.allowed_balance_ml(rx)
        balance.guard(pumps, v.fluid_balance_ml, allowed_ml, balance.margin_ml(rx))
        return pumps
