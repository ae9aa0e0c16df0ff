"""The prescription: what one treatment should do, checked before anything starts.

Field bounds are the limits of the rig and of practice (docs/reference.md); cross-field rules are
the clinical ones of docs/spec.md sections 2 and 3, each reported against the field to change.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from controller import clinical
from controller.config._fields import OneLine, RuleViolation, Strict, bounded, check_rules, text
from controller.config.flows import and_list, excesses, pump_demands
from controller.rig import PUMP_HARD_MAX

Mode = Literal["pe", "pe_adsorption", "pe_filtration", "li_als", "adsorption"]
Adsorber = Literal["resin", "anion_resin", "charcoal"]

#: Which parts of the circuit each mode uses (docs/spec.md section 2, table of modes).
MODES_WITH_EXCHANGE: frozenset[str] = frozenset({"pe", "pe_adsorption", "pe_filtration", "li_als"})
MODES_WITH_LOOP: frozenset[str] = frozenset(
    {"pe_adsorption", "pe_filtration", "li_als", "adsorption"}
)
MODES_WITH_FILTRATION: frozenset[str] = frozenset({"pe_filtration", "li_als"})
MODES_WITH_ADSORBERS: frozenset[str] = frozenset({"pe_adsorption", "li_als", "adsorption"})
DEFAULT_ADSORBERS: dict[str, tuple[str, ...]] = {
    "pe_adsorption": ("resin", "anion_resin", "charcoal"),
    "li_als": ("resin", "anion_resin", "charcoal"),
    "adsorption": ("resin", "anion_resin"),
}

MAX_SEPARATION_FRACTION = 0.30
MAX_LOOP_MULTIPLE = 10.0
DEFAULT_SEPARATION_RATIO = 0.25
DEFAULT_LOOP_MULTIPLE = 5.0
DEFAULT_FILTRATE_ML_MIN = 20.0
DEFAULT_PURIFICATION_MIN = 300.0
MAX_EXCHANGE_PV_UNLESS_ALLOWED = 2.0


class Patient(Strict):
    weight_kg: float = bounded(..., 20, 250, "kg", "body weight")
    hematocrit: float = bounded(..., 0.15, 0.65, "fraction", "hematocrit")
    height_cm: float | None = bounded(None, 100, 230, "cm", "height")
    sex: Literal["female", "male"] | None = None


class Heparin(Strict):
    concentration_iu_ml: float = bounded(1000.0, 100, 5000, "IU/mL", "syringe concentration")
    bolus_iu: float = bounded(2000.0, 0, 5000, "IU", "bolus at connection")
    rate_iu_h: float = bounded(500.0, 0, 3000, "IU/h", "continuous rate")

    @property
    def rate_ml_h(self) -> float:
        return self.rate_iu_h / self.concentration_iu_ml


class Replacement(Strict):
    fluid: Literal["fresh_frozen_plasma", "albumin_5pct", "albumin_4pct"] = "fresh_frozen_plasma"
    bag_volume_ml: float = bounded(5000.0, 0, 10000, "mL", "replacement fluid available")


class PurificationEnd(Strict):
    """The loop ends at whichever comes first.

    Two volumes, because "plasma processed" means two things in practice: a DPMAS session's
    3-4.5 L is plasma drawn from the patient, each millilitre through the columns once; in a
    recirculating loop the same plasma passes many times, so the loop's volume is several
    times larger. Each field says which one it counts.
    """

    duration_min: float | None = bounded(None, 10, 720, "min", "purification duration")
    processed_plasma_ml: float | None = bounded(
        None,
        500,
        100000,
        "mL",
        "plasma pumped through the loop (filter and adsorbers) during purification, every"
        " pass counted (loop pump encoder)",
    )
    patient_plasma_ml: float | None = bounded(
        None,
        500,
        20000,
        "mL",
        "plasma drawn from the patient by the plasma pump during purification, each"
        " millilitre once however often it recirculates (plasma pump encoder)",
    )


class Prescription(Strict):
    #: required: the journal, the summary and the report name the treatment by it
    name: OneLine = text(..., 80, "what the treatment is called in the journal and the report")
    patient: Patient
    mode: Mode = "li_als"
    blood_flow_ml_min: float = bounded(120.0, 30, 250, "mL/min", "blood pump flow")
    separation_ratio: float | None = bounded(
        None, 0.05, MAX_SEPARATION_FRACTION, "fraction", "plasma separation ratio"
    )
    plasma_flow_ml_min: float | None = bounded(None, 5, 60, "mL/min", "plasma pump flow")
    exchange_volume_ml: float | None = bounded(None, 0, 10000, "mL", "plasma exchange volume")
    exchange_volume_pv: float | None = bounded(
        None, 0, 3, "plasma volumes", "exchange volume as a multiple of plasma volume"
    )
    allow_exchange_above_2pv: bool = False
    collection_threshold_ml: float = bounded(
        500.0, 100, 2000, "mL", "remaining exchange volume at which collection starts"
    )
    loop_flow_multiple: float | None = bounded(
        None, 1, MAX_LOOP_MULTIPLE, "x plasma flow", "loop flow"
    )
    filtrate_ml_min: float | None = bounded(None, 0, 100, "mL/min", "filtrate pump flow")
    net_fluid_removal_ml_h: float = bounded(0.0, 0, 500, "mL/h", "net fluid removal")
    adsorbers: tuple[Adsorber, ...] | None = None
    purification: PurificationEnd | None = None
    heparin: Heparin = Heparin()
    replacement: Replacement = Replacement()

    # Derived values: the resolved numbers the controller and the plan work from.
    @property
    def plasma_volume_ml(self) -> float:
        return clinical.plasma_volume_ml(self.patient.weight_kg, self.patient.hematocrit)

    @property
    def has_exchange(self) -> bool:
        return self.mode in MODES_WITH_EXCHANGE

    @property
    def has_loop(self) -> bool:
        return self.mode in MODES_WITH_LOOP

    @property
    def has_filtration(self) -> bool:
        return self.mode in MODES_WITH_FILTRATION or (
            self.mode == "adsorption" and bool(self.filtrate_ml_min)
        )

    @property
    def plasma_flow(self) -> float:
        if self.plasma_flow_ml_min is not None:
            return self.plasma_flow_ml_min
        ratio = (
            self.separation_ratio if self.separation_ratio is not None else DEFAULT_SEPARATION_RATIO
        )
        return self.blood_flow_ml_min * ratio

    @property
    def exchange_ml(self) -> float:
        if self.exchange_volume_ml is not None:
            return self.exchange_volume_ml
        if self.exchange_volume_pv is not None:
            return self.exchange_volume_pv * self.plasma_volume_ml
        return 0.0

    @property
    def loop_flow(self) -> float:
        if not self.has_loop:
            return 0.0
        multiple = self.loop_flow_multiple or DEFAULT_LOOP_MULTIPLE
        return multiple * self.plasma_flow

    @property
    def filtrate_flow(self) -> float:
        if self.filtrate_ml_min is not None:
            return self.filtrate_ml_min
        return DEFAULT_FILTRATE_ML_MIN if self.mode in MODES_WITH_FILTRATION else 0.0

    @property
    def substitution_flow(self) -> float:
        """Post-dilution: filtrate replaced less the prescribed net removal."""
        return max(0.0, self.filtrate_flow - self.net_fluid_removal_ml_h / 60.0)

    @property
    def adsorber_train(self) -> tuple[str, ...]:
        if self.adsorbers is not None:
            return self.adsorbers
        return DEFAULT_ADSORBERS.get(self.mode, ())

    @property
    def purification_end(self) -> PurificationEnd:
        if self.purification is not None:
            return self.purification
        return PurificationEnd(duration_min=DEFAULT_PURIFICATION_MIN)

    @model_validator(mode="after")
    def _clinical_rules(self) -> Prescription:
        bad: list[RuleViolation] = []
        bad += self._separation_rules()
        bad += self._exchange_rules()
        bad += self._loop_rules()
        bad += self._pump_rules()
        check_rules(self, bad)
        return self

    def _pump_rules(self) -> list[RuleViolation]:
        """Every rate the controller will command, derived ones too (plasma from the ratio,
        replacement, return, substitution, the heparin bolus), within its pump's maximum."""
        return [
            RuleViolation(
                e.field,
                e.value,
                f"{e.at()} is more than the {and_list(e.pumps)} pump"
                f"{'s' if len(e.pumps) > 1 else ''} can give",
                f"at most {e.maximum:g} {e.unit}",
            )
            for e in excesses(pump_demands(self), PUMP_HARD_MAX)
        ]

    def _separation_rules(self) -> list[RuleViolation]:
        if self.separation_ratio is not None and self.plasma_flow_ml_min is not None:
            return [
                RuleViolation(
                    "plasma_flow_ml_min",
                    self.plasma_flow_ml_min,
                    "give either separation_ratio or plasma_flow_ml_min, not both",
                )
            ]
        limit = MAX_SEPARATION_FRACTION * self.blood_flow_ml_min
        if self.plasma_flow > limit + 1e-9:
            return [
                RuleViolation(
                    "plasma_flow_ml_min",
                    self.plasma_flow,
                    "more than 30 % of the blood flow risks hemolysis in the separator",
                    f"at most {limit:g} mL/min at blood flow {self.blood_flow_ml_min:g}",
                )
            ]
        return []

    def _exchange_rules(self) -> list[RuleViolation]:
        given_ml = self.exchange_volume_ml is not None
        given_pv = self.exchange_volume_pv is not None
        if given_ml and given_pv:
            return [
                RuleViolation(
                    "exchange_volume_pv",
                    self.exchange_volume_pv,
                    "give either exchange_volume_ml or exchange_volume_pv, not both",
                )
            ]
        field = "exchange_volume_pv" if given_pv else "exchange_volume_ml"
        v = self.exchange_ml
        if not self.has_exchange:
            if v > 0:
                return [
                    RuleViolation(
                        field, v, "mode 'adsorption' exchanges no plasma", "must be 0 or absent"
                    )
                ]
            return []
        if v <= 0:
            return [
                RuleViolation(
                    field,
                    v if (given_ml or given_pv) else "(missing)",
                    f"mode '{self.mode}' needs an exchange volume",
                    "more than 0 mL",
                )
            ]
        bad: list[RuleViolation] = []
        pv_multiple = v / self.plasma_volume_ml
        if pv_multiple > MAX_EXCHANGE_PV_UNLESS_ALLOWED and not self.allow_exchange_above_2pv:
            bad.append(
                RuleViolation(
                    field,
                    round(v if given_ml else pv_multiple, 3),
                    f"{pv_multiple:.2f} plasma volumes is more than 2 PV; "
                    "set allow_exchange_above_2pv: true if intended",
                    f"at most {MAX_EXCHANGE_PV_UNLESS_ALLOWED * self.plasma_volume_ml:.0f} mL",
                )
            )
        if self.has_loop and self.collection_threshold_ml >= v:
            bad.append(
                RuleViolation(
                    "collection_threshold_ml",
                    self.collection_threshold_ml,
                    "collection must start before the exchange volume is done",
                    f"less than the exchange volume {v:.0f} mL",
                )
            )
        if self.replacement.bag_volume_ml < v:
            bad.append(
                RuleViolation(
                    "replacement.bag_volume_ml",
                    self.replacement.bag_volume_ml,
                    "the replacement bag cannot cover the exchange volume",
                    f"at least {math.ceil(v)} mL",
                )
            )
        return bad

    def _loop_rules(self) -> list[RuleViolation]:
        bad: list[RuleViolation] = []
        if not self.has_loop:
            for name in ("loop_flow_multiple", "filtrate_ml_min", "adsorbers", "purification"):
                value = getattr(self, name)
                if value is not None:
                    bad.append(
                        RuleViolation(name, value, "mode 'pe' has no purification loop", "absent")
                    )
            if self.net_fluid_removal_ml_h > 0:
                bad.append(
                    RuleViolation(
                        "net_fluid_removal_ml_h",
                        self.net_fluid_removal_ml_h,
                        "mode 'pe' has no filtration to remove fluid",
                        "0",
                    )
                )
            return bad
        filtering = self.mode in MODES_WITH_FILTRATION
        if filtering and self.filtrate_flow <= 0:
            bad.append(
                RuleViolation(
                    "filtrate_ml_min", self.filtrate_ml_min, "this mode filters", "more than 0"
                )
            )
        if self.mode in ("pe_adsorption",) and self.filtrate_ml_min:
            bad.append(
                RuleViolation(
                    "filtrate_ml_min",
                    self.filtrate_ml_min,
                    "mode 'pe_adsorption' has no filtration",
                    "0 or absent",
                )
            )
        if self.filtrate_flow and self.filtrate_flow > self.loop_flow:
            bad.append(
                RuleViolation(
                    "filtrate_ml_min",
                    self.filtrate_flow,
                    "cannot filter more than flows through the loop",
                    f"at most {self.loop_flow:.0f} mL/min",
                )
            )
        if self.net_fluid_removal_ml_h / 60.0 > self.filtrate_flow + 1e-9:
            bad.append(
                RuleViolation(
                    "net_fluid_removal_ml_h",
                    self.net_fluid_removal_ml_h,
                    "net removal is taken from the filtrate and cannot exceed it",
                    f"at most {self.filtrate_flow * 60:g} mL/h",
                )
            )
        if self.adsorbers is not None:
            if len(set(self.adsorbers)) != len(self.adsorbers):
                bad.append(
                    RuleViolation("adsorbers", list(self.adsorbers), "an adsorber is listed twice")
                )
            if self.adsorbers and self.mode not in MODES_WITH_ADSORBERS:
                bad.append(
                    RuleViolation(
                        "adsorbers",
                        list(self.adsorbers),
                        f"mode '{self.mode}' uses no adsorbers",
                        "empty or absent",
                    )
                )
            if not self.adsorbers and self.mode in ("pe_adsorption", "adsorption"):
                bad.append(
                    RuleViolation(
                        "adsorbers", [], f"mode '{self.mode}' needs at least one adsorber"
                    )
                )
        end = self.purification
        if end is not None and (
            end.duration_min is None
            and end.processed_plasma_ml is None
            and end.patient_plasma_ml is None
        ):
            bad.append(
                RuleViolation(
                    "purification",
                    "{}",
                    "say when the loop ends",
                    "duration_min, processed_plasma_ml and/or patient_plasma_ml",
                )
            )
        return bad
