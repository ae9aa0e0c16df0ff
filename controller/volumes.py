"""Volume accounting from the pump encoders: what the phases switch on and the summary shows.

Each sample reports the flow each pump ran at since the previous sample (commands act from
the next tick and the controller commands right after a sample), so volume += measured flow
x interval is exact for the piecewise-constant rates the controller commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.rig import PUMP_NAMES, Sample

EXCHANGE_PHASES = frozenset({"exchange", "exchange_collect"})


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
        for name in PUMP_NAMES:
            flow = sample.pumps[name].measured
            if name == "heparin":
                flow /= 60.0  # mL/h
            self.pumped_ml[name] += flow * minutes
        plasma = sample.pumps["plasma"].measured * minutes
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
    def filtrate_ml(self) -> float:
        return self.pumped_ml["filtrate"]

    @property
    def substitution_ml(self) -> float:
        return self.pumped_ml["substitution"]

    @property
    def fluid_balance_ml(self) -> float:
        """Into the patient minus out of the patient.

        Filtrate and substitution act on the bag's plasma, not on the patient directly: they
        reach the patient through the return pump, so SPEC's (replacement + substitution +
        return) - (plasma + filtrate), corrected by the bag levels, reduces to this.
        """
        v = self.pumped_ml
        return v["replacement"] + v["return"] + v["heparin"] - v["plasma"]

    def passes(self, held_ml: float) -> float:
        """Times the plasma held in the bag went through the loop."""
        return self.processed_ml / held_ml if held_ml > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            **{f"{n}_ml": round(v, 2) for n, v in self.pumped_ml.items()},
            "exchanged_ml": round(self.exchanged_ml, 2),
            "collected_ml": round(self.collected_ml, 2),
            "processed_ml": round(self.processed_ml, 2),
            "fluid_balance_ml": round(self.fluid_balance_ml, 2),
        }
