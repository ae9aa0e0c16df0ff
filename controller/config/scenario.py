"""Scenarios: timed faults for the simulated rig, one kind per hazard of docs/spec.md 5.2.

The catalogue of fault names and their parameters lives here, with the models, so a scenario
file is checked before a simulated treatment starts; `firmware_sim.faults` implements them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from pydantic import Field, ValidationError, model_validator

from controller.config._fields import (
    Lines,
    OneLine,
    RuleViolation,
    Strict,
    bounded,
    check_rules,
    text,
)
from controller.rig import PRESSURE_NAMES, PUMP_NAMES, SCALE_NAMES, SENSOR_NAMES

if TYPE_CHECKING:
    # the names come from the rig's layout at run time, where pydantic checks them; to a type
    # checker they are strings
    PumpName: TypeAlias = str
    ScaleName: TypeAlias = str
    SensorName: TypeAlias = str
    PressureName: TypeAlias = str
else:
    PumpName = Literal[PUMP_NAMES]
    ScaleName = Literal[SCALE_NAMES]
    SensorName = Literal[SENSOR_NAMES]
    PressureName = Literal[PRESSURE_NAMES]


class NoParams(Strict):
    pass


class Severity(Strict):
    """How strong the fault is, 0..1 of its worst case (1.0 = full occlusion ...)."""

    severity: float = bounded(1.0, 0.0, 1.0, "fraction", "strength of the fault")


class OnPump(Strict):
    pump: PumpName


class OnBag(Strict):
    bag: ScaleName


class ScaleDrift(Strict):
    bag: ScaleName
    grams_per_min: float = bounded(5.0, -100, 100, "g/min", "scale reading drift")


class Hypotension(Strict):
    drop_mmhg: float = bounded(25.0, 1, 60, "mmHg", "fall of the patient's MAP")


class OnSensor(Strict):
    sensor: SensorName


class SensorStuck(Strict):
    sensor: SensorName


class NeedleOut(Strict):
    drop_mmhg: float = bounded(25.0, 5, 60, "mmHg", "fall of the return pressure")


class PlasmaTemp(Strict):
    offset_c: float = bounded(4.0, 0.5, 10, "degC", "warmer error, cold or hot")


class Fouling(Strict):
    mmhg_per_min: float = bounded(5.0, 0.1, 100, "mmHg/min", "rise of the pressure it causes")


class PumpDelivery(Strict):
    """Worn tubing (or a slipping rotor): the pump delivers `factor` of its command."""

    pump: PumpName
    factor: float = bounded(0.8, 0.0, 2.0, "x command", "what the pump really delivers")
    encoder_sees: bool = Field(
        False,
        description="the encoder counts what is delivered (a slowing rotor); false: it counts"
        " the rotor turning as commanded while the tubing delivers otherwise",
    )


class BagValveLeak(Strict):
    per_s: float = bounded(
        0.1, 0.01, 1.0, "1/s", "the one-way valve's conductance back, outer -> inner chamber"
    )


class SensorDrift(Strict):
    sensor: PressureName
    mmhg_per_min: float = bounded(-3.0, -30, 30, "mmHg/min", "the sensor's reading drifts")


class MapRamp(Strict):
    mmhg_per_min: float = bounded(2.0, 0.1, 20, "mmHg/min", "how fast the patient's MAP falls")
    drop_mmhg: float = bounded(30.0, 1, 60, "mmHg", "how far it falls, then holds")


class CommandLoss(Strict):
    fraction: float = bounded(
        0.3, 0.0, 1.0, "fraction", "of the controller's commands (and heartbeats) lost"
    )
    corrupt: bool = Field(False, description="corrupted (their CRC fails) rather than dropped")


#: name -> parameter model; the hazard each one exercises is in docs/safety.md.
FAULTS: dict[str, type[Strict]] = {
    "air_bubble": NoParams,
    "return_disconnection": NoParams,
    "needle_dislodgement": NeedleOut,
    "return_occlusion": Severity,
    "access_occlusion": Severity,
    "separator_fouling": Fouling,
    "blood_leak": NoParams,
    "adsorber_clotting": Fouling,
    "filter_clotting": Fouling,
    "bag_empty": OnBag,
    "bag_full": OnBag,
    "scale_drift": ScaleDrift,
    "hypotension": Hypotension,
    "pump_stall": OnPump,
    "pump_overspeed": OnPump,
    "sensor_stuck": SensorStuck,
    "sensor_out_of_range": OnSensor,
    "sensor_missing": OnSensor,
    "plasma_too_cold": PlasmaTemp,
    "plasma_too_hot": PlasmaTemp,
    "controller_silence": NoParams,
    "link_down": NoParams,
    "mcu_reset": NoParams,
    "pump_delivery": PumpDelivery,
    "route_stuck": NoParams,
    "clamp_stuck_open": NoParams,
    "bag_valve_leak": BagValveLeak,
    "heparin_occlusion": NoParams,
    "filter_rupture": NoParams,
    "sensor_drift": SensorDrift,
    "map_ramp": MapRamp,
    "command_loss": CommandLoss,
}
#: Treatment phases a fault can be timed from (`phase:` and `after_s:` in a scenario).
Phase = Literal["connecting", "exchange", "exchange_collect", "purification", "rinse_back"]
PHASES: tuple[str, ...] = get_args(Phase)


def _fault_catalogue(schema: dict[str, Any]) -> None:
    """The JSON Schema names every fault with its own parameters (one `oneOf` per fault),
    so an editor completes and checks a scenario without reading the code."""
    schema["properties"]["fault"]["enum"] = sorted(FAULTS)
    schema["oneOf"] = [
        {
            "properties": {
                "fault": {"const": name},
                "params": {
                    **{k: v for k, v in model.model_json_schema().items() if k != "title"},
                    "description": (model.__doc__ or name).strip().splitlines()[0],
                },
            }
        }
        for name, model in sorted(FAULTS.items())
    ]


class FaultEvent(Strict):
    """One fault: at a rig time (`at_s`), or some time into a phase (`phase`, `after_s`)."""

    model_config = Strict.model_config | {"json_schema_extra": _fault_catalogue}

    at_s: float | None = bounded(None, 0, 86400, "s", "rig time the fault starts")
    phase: Phase | None = Field(
        None,
        description="time the fault from this phase's first start instead (simulated rig in"
        " the controller's process: alsctl run --sim, the tests)",
    )
    after_s: float = bounded(0.0, 0, 86400, "s", "how long into `phase` the fault starts")
    fault: str
    duration_s: float | None = bounded(
        None, 0, 86400, "s", "how long it lasts; absent = until the end"
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_fault(self) -> FaultEvent:
        if (self.at_s is None) == (self.phase is None):
            check_rules(
                self,
                [
                    RuleViolation(
                        "at_s",
                        self.at_s if self.at_s is not None else "(missing)",
                        "say when: a rig time, or a phase to time it from",
                        "either at_s, or phase (with after_s)",
                    )
                ],
            )
        model = FAULTS.get(self.fault)
        if model is None:
            check_rules(
                self,
                [
                    RuleViolation(
                        "fault", self.fault, "unknown fault", "one of: " + ", ".join(sorted(FAULTS))
                    )
                ],
            )
            return self
        try:
            model.model_validate(self.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "params"
            check_rules(
                self,
                [
                    RuleViolation(
                        f"params.{where}",
                        err.get("input"),
                        err["msg"],
                        "parameters: " + (", ".join(model.model_fields) or "none"),
                    )
                ],
            )
        return self

    def parsed_params(self) -> Strict:
        return FAULTS[self.fault].model_validate(self.params)


#: The parameters that name what a fault acts on.
TARGET_KEYS = ("pump", "bag", "sensor")


def fault_target(event: FaultEvent) -> str | None:
    """The pump, bag or sensor a fault acts on; None for a fault of the whole rig."""
    return next((str(event.params[k]) for k in TARGET_KEYS if k in event.params), None)


def _span(event: FaultEvent) -> tuple[float, float]:
    """[start, end) in seconds (rig time, or into its phase); a zero-length fault still takes
    its instant."""
    start = event.at_s if event.at_s is not None else event.after_s
    end = math.inf if event.duration_s is None else start + event.duration_s
    return start, max(end, start + 1e-6)


def _describe(event: FaultEvent) -> str:
    target = fault_target(event)
    start, end = _span(event)
    until = "the end" if math.isinf(end) else f"{end:g} s"
    return f"{event.fault}{' on ' + target if target else ''} from {start:g} s to {until}"


class Scenario(Strict):
    name: OneLine = text(..., 80, "what the scenario is called")
    description: Lines = text("", 2000, "what it exercises", min_length=0)
    events: tuple[FaultEvent, ...]

    @model_validator(mode="after")
    def _rules(self) -> Scenario:
        check_rules(
            self,
            self._overlaps()
            if self.events
            else [RuleViolation("events", [], "a scenario needs an event")],
        )
        return self

    def _overlaps(self) -> list[RuleViolation]:
        """Two faults of one kind on one target at once: the simulator runs one fault per
        kind and target, so the second would silently replace the first."""
        bad = []
        for j, later in enumerate(self.events):
            for i, earlier in enumerate(self.events[:j]):
                if (earlier.fault, fault_target(earlier)) != (later.fault, fault_target(later)):
                    continue
                if earlier.phase != later.phase:
                    continue  # timed from different origins: cannot be told apart here
                (a0, a1), (b0, b1) = _span(earlier), _span(later)
                if a0 < b1 and b0 < a1:
                    bad.append(
                        RuleViolation(
                            f"events.{j}",
                            _describe(later),
                            f"overlaps events.{i} ({_describe(earlier)}): one would replace"
                            " the other",
                            "the same fault on the same target once at a time",
                        )
                    )
        return bad
