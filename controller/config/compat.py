"""A prescription against the rig it will run on.

Each file can be valid alone and the pair still fail: a rig whose blood pump tops out at
100 mL/min and a prescription at 150 passed validation and faulted once the firmware
refused the rate. `check_pair` is the one check, used by `alsctl validate RIG PRESCRIPTION`
and by `alsctl run` before anything moves; each issue names both files and the fields.
"""

from __future__ import annotations

from controller.config.flows import and_list, excesses, pump_demands
from controller.config.issues import show_value
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.errors import ConfigError, ConfigIssue
from controller.rig import PUMP_NAMES


def check_pair(
    rig: RigConfig, rx: Prescription, rig_source: str = "rig", rx_source: str = "prescription"
) -> list[ConfigIssue]:
    """What in `rx` the rig cannot do, as issues of the prescription file."""
    maxima = {name: rig.pumps.get(name).max_rate for name in PUMP_NAMES}
    issues = [
        ConfigIssue(
            e.field,
            show_value(e.value),
            f"{e.at() + ' is ' if e.derived else ''}above rig {rig_source} "
            + and_list(f"pumps.{p}.max_rate {maxima[p]:g}" for p in e.pumps),
        )
        for e in excesses(pump_demands(rx), maxima)
    ]
    scale = rig.sensors.scale
    if rx.replacement.bag_volume_ml > scale.high:
        issues.append(
            ConfigIssue(
                "replacement.bag_volume_ml",
                show_value(rx.replacement.bag_volume_ml),
                f"a full bag is beyond rig {rig_source} sensors.scale.high {scale.high:g} g:"
                " it would read as a faulty scale",
            )
        )
    return issues


def require_pair(
    rig: RigConfig, rx: Prescription, rig_source: str = "rig", rx_source: str = "prescription"
) -> None:
    """Raise a ConfigError (exit 2, nothing started) when the rig cannot run `rx`."""
    issues = check_pair(rig, rx, rig_source, rx_source)
    if issues:
        raise ConfigError(rx_source, issues)


def _field_bounds(name: str) -> tuple[float, float]:
    """A prescription field's own bounds (its `bounded` ge/le), read from the model."""
    meta = Prescription.model_fields[name].metadata
    low = next(float(m.ge) for m in meta if hasattr(m, "ge"))
    high = next(float(m.le) for m in meta if hasattr(m, "le"))
    return low, high


def blood_flow_bounds(rig: RigConfig, cap: float | None = None) -> tuple[float, float]:
    """The blood flows an operator may set mid-treatment (mL/min): from the rig's minimum
    flow (what a pause circulates) to the lowest of the rig's pump maximum, the
    prescription's own bounds and `cap` (an informed-consent override's restriction). The
    controller refuses outside them; the console asks within them."""
    field_low, field_high = _field_bounds("blood_flow_ml_min")
    low = max(rig.alarms.minimum_blood_flow_ml_min, field_low)
    high = min(rig.pumps.blood.max_rate, field_high)
    if cap is not None:
        high = min(high, cap)
    return low, high
