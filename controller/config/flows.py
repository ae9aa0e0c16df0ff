"""The rate each pump is driven at for a prescription, and the field that sets it.

The controller commands these rates (controller/fsm/phases.py): a rate above what a pump
can give is refused by the firmware and faults the run, minutes in and with the patient
connected. So validation compares them with each pump's hard maximum (`PUMP_HARD_MAX`)
and, given a rig, with the rig's own maxima (`controller.config.compat`), naming the field
an operator changes to bring the rate down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.rig import PUMP_HARD_MAX

if TYPE_CHECKING:
    from controller.config.prescription import Prescription

#: The heparin bolus runs at the syringe pump's top rate (phases.heparin_rate).
HEPARIN_BOLUS_ML_H = PUMP_HARD_MAX["heparin"]


@dataclass(frozen=True, slots=True)
class PumpDemand:
    """One pump at its highest prescribed rate (mL/min; heparin mL/h)."""

    pump: str
    rate: float
    #: the prescription field that sets the rate, and its value as written (or defaulted)
    field: str
    value: Any
    #: how the rate follows from the field, when it is not the field itself
    derived: str = ""

    @property
    def unit(self) -> str:
        return "mL/h" if self.pump == "heparin" else "mL/min"


def _plasma_source(rx: Prescription) -> tuple[str, Any, str]:
    if rx.plasma_flow_ml_min is not None:
        return "plasma_flow_ml_min", rx.plasma_flow_ml_min, ""
    ratio = rx.plasma_flow / rx.blood_flow_ml_min
    return "separation_ratio", ratio, f"plasma flow = blood {rx.blood_flow_ml_min:g} x {ratio:g}"


def pump_demands(rx: Prescription) -> list[PumpDemand]:
    """Every pump the prescription drives, at the highest rate it is commanded.

    Rinse-back, pause and the connection ramp never exceed the prescribed blood flow;
    priming and the self-test are the rig's own (`controller.config.rig`).
    """
    out = [PumpDemand("blood", rx.blood_flow_ml_min, "blood_flow_ml_min", rx.blood_flow_ml_min)]
    field, value, how = _plasma_source(rx)
    plasma = rx.plasma_flow
    out.append(PumpDemand("plasma", plasma, field, value, how))
    if rx.has_exchange:
        out.append(PumpDemand("replacement", plasma, field, value, how or "replacement = plasma"))
    if rx.has_loop:
        multiple = rx.loop_flow / plasma if plasma else 0.0
        out.append(
            PumpDemand(
                "loop",
                rx.loop_flow,
                "loop_flow_multiple",
                rx.loop_flow_multiple if rx.loop_flow_multiple is not None else multiple,
                f"loop flow = {multiple:g} x plasma {plasma:g}",
            )
        )
        removal = rx.net_fluid_removal_ml_h / 60.0
        ret = max(0.0, plasma - removal)
        how_ret = f"return = plasma {plasma:g} - net removal {removal:.3g}" if removal else how
        out.append(PumpDemand("return", ret, field, value, how_ret))
    if rx.filtrate_flow > 0:
        out.append(PumpDemand("filtrate", rx.filtrate_flow, "filtrate_ml_min", rx.filtrate_flow))
        out.append(
            PumpDemand(
                "substitution",
                rx.substitution_flow,
                "filtrate_ml_min",
                rx.filtrate_flow,
                f"substitution = filtrate {rx.filtrate_flow:g}"
                f" - net removal {rx.net_fluid_removal_ml_h / 60.0:.3g}",
            )
        )
    h = rx.heparin
    out.append(
        PumpDemand(
            "heparin",
            h.rate_ml_h,
            "heparin.rate_iu_h",
            h.rate_iu_h,
            f"heparin {h.rate_iu_h:g} IU/h / {h.concentration_iu_ml:g} IU/mL",
        )
    )
    if h.bolus_iu > 0:
        out.append(
            PumpDemand(
                "heparin",
                HEPARIN_BOLUS_ML_H,
                "heparin.bolus_iu",
                h.bolus_iu,
                "the bolus, at the syringe pump's top rate,",
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Excess:
    """Demands on one field that some pumps cannot meet, grouped for one message."""

    field: str
    value: Any
    rate: float
    unit: str
    derived: str
    pumps: tuple[str, ...]
    maximum: float

    def at(self) -> str:
        """`plasma flow = blood 250 x 0.25 = 62.5 mL/min`, or just `150 mL/min`."""
        rate = f"{self.rate:.4g} {self.unit}"
        return f"{self.derived} = {rate}" if self.derived else rate


def excesses(demands: Iterable[PumpDemand], maxima: Mapping[str, float]) -> list[Excess]:
    """The demands above `maxima`, one per field and rate, naming every pump it is too much
    for (plasma and replacement run at the same rate: one line, not two)."""
    groups: dict[tuple[str, float], list[PumpDemand]] = {}
    for d in demands:
        if d.rate > maxima[d.pump] + 1e-9:
            groups.setdefault((d.field, round(d.rate, 9)), []).append(d)
    return [
        Excess(
            field=ds[0].field,
            value=ds[0].value,
            rate=ds[0].rate,
            unit=ds[0].unit,
            derived=ds[0].derived,
            pumps=tuple(dict.fromkeys(d.pump for d in ds)),
            maximum=min(maxima[d.pump] for d in ds),
        )
        for ds in groups.values()
    ]


def and_list(names: Iterable[str]) -> str:
    items = list(names)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
