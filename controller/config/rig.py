"""The rig: link, timing, pumps, sensors and the safety limits of docs/spec.md 5.2.

Every limit has its docs/spec.md default and safe bounds; a rig file can tighten a limit but never
move it outside the bounds (e.g. the return low limit cannot go below 5 mmHg).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from controller.config._fields import RuleViolation, Strict, bounded, check_rules
from controller.config.mqtt import MqttSettings
from controller.rig import PUMP_HARD_MAX, PUMP_NAMES

#: The rate the self-test runs each pump at to check its encoder (controller/control/steps);
#: a rig's max_rate must allow it (mL/min; heparin mL/h).
SELF_TEST_RATE: dict[str, float] = dict.fromkeys(PUMP_NAMES, 10.0) | {"blood": 30.0}


class PumpConfig(Strict):
    max_rate: float = Field(
        ..., gt=0, description="highest rate the controller may command (mL/min; heparin mL/h)"
    )
    calibration: float = bounded(1.0, 0.8, 1.2, "factor", "encoder mL per commanded mL")


def _pump(name: str) -> PumpConfig:
    return PumpConfig(max_rate=PUMP_HARD_MAX[name])


class Pumps(Strict):
    blood: PumpConfig = _pump("blood")
    plasma: PumpConfig = _pump("plasma")
    replacement: PumpConfig = _pump("replacement")
    loop: PumpConfig = _pump("loop")
    filtrate: PumpConfig = _pump("filtrate")
    substitution: PumpConfig = _pump("substitution")
    return_: PumpConfig = Field(_pump("return"), alias="return")
    heparin: PumpConfig = _pump("heparin")

    model_config = Strict.model_config | {"populate_by_name": True, "serialize_by_alias": True}

    def get(self, name: str) -> PumpConfig:
        pump: PumpConfig = getattr(self, "return_" if name == "return" else name)
        return pump

    @model_validator(mode="after")
    def _within_hard_limits(self) -> Pumps:
        check_rules(
            self,
            [
                RuleViolation(
                    f"{name}.max_rate",
                    self.get(name).max_rate,
                    "above what the pump can safely deliver",
                    f"at most {PUMP_HARD_MAX[name]:g}",
                )
                for name in PUMP_NAMES
                if self.get(name).max_rate > PUMP_HARD_MAX[name]
            ],
        )
        return self


class SensorRange(Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> SensorRange:
        check_rules(
            self,
            []
            if self.low < self.high
            else [RuleViolation("high", self.high, "must be above low", f"> {self.low:g}")],
        )
        return self


class Sensors(Strict):
    """Plausible reading ranges: a reading outside is a sensor fault, not a value."""

    pressure: SensorRange = SensorRange(low=-300, high=600)
    scale: SensorRange = SensorRange(low=-50, high=12000)
    plasma_temp: SensorRange = SensorRange(low=20, high=45)
    map: SensorRange = SensorRange(low=20, high=200)
    stuck_after_s: float = bounded(
        5.0, 1, 30, "s", "a reading unchanged this long while flow changes is stuck"
    )


class AlarmLimits(Strict):
    """docs/spec.md 5.2 defaults; bounds are the safe range each may be configured within."""

    return_low_mmhg: float = bounded(
        10.0,
        5,
        25,
        "mmHg",
        "return pressure low limit; the blood pump runs down to 30 mL/min (self-test, pause),"
        " where the return pressure is about 30 mmHg: a higher limit would trip there",
    )
    return_high_mmhg: float = bounded(300.0, 100, 450, "mmHg", "return pressure high limit")
    return_window_mmhg: float = bounded(
        10.0,
        5,
        40,
        "mmHg",
        "a return pressure this far below its expected level at the present flow (held 2 s)"
        " is a lost line",
    )
    #: formerly `return_recenter_s` (the window no longer re-centres: return_line.py)
    resume_check_s: float = Field(
        10.0,
        ge=5,
        le=20,
        validation_alias=AliasChoices("resume_check_s", "return_recenter_s"),
        description="after a resume from an alarm only seen while blood flows (a lost or"
        " occluded line, access, air), blood runs at the minimum flow this long while the"
        " line is checked, before full flow returns [s]; allowed 5..20",
        json_schema_extra={"unit": "s"},
    )
    access_low_mmhg: float = bounded(
        -250.0,
        -350,
        -160,
        "mmHg",
        "access pressure low limit; priming runs the blood pump at up to 150 mL/min, where"
        " the access pressure is about -150 mmHg: a higher limit would trip there",
    )
    separator_tmp_high_mmhg: float = bounded(60.0, 20, 60, "mmHg", "separator TMP limit")
    separator_tmp_stop_s: float = bounded(
        30.0, 5, 120, "s", "TMP high this long after reducing the plasma pump stops it"
    )
    adsorber_dp_high_mmhg: float = bounded(150.0, 50, 250, "mmHg", "adsorber pressure drop limit")
    filter_tmp_high_mmhg: float = bounded(200.0, 50, 300, "mmHg", "hemofilter TMP limit")
    filter_tmp_low_mmhg: float = bounded(
        10.0, 2, 30, "mmHg", "a filter TMP this low while filtrate is drawn: a torn membrane"
    )
    fluid_imbalance_ml: float = bounded(100.0, 20, 200, "mL", "patient fluid balance error")
    map_low_mmhg: float = bounded(65.0, 60, 80, "mmHg", "mean arterial pressure low limit")
    map_delay_s: float = bounded(15.0, 5, 30, "s", "MAP below its limit this long alarms")
    pump_mismatch_fraction: float = bounded(
        0.10, 0.02, 0.20, "fraction", "measured vs commanded flow difference"
    )
    pump_mismatch_s: float = bounded(3.0, 1, 10, "s", "pump mismatch this long alarms")
    plasma_temp_low_c: float = bounded(35.0, 33, 37, "degC", "plasma too cold")
    plasma_temp_high_c: float = bounded(39.0, 37, 40, "degC", "plasma too warm")
    plasma_temp_cutoff_c: float = bounded(
        41.0, 39, 42, "degC", "stop the warmer and the return pump"
    )
    bag_empty_g: float = bounded(30.0, 5, 200, "g", "a bag this light is empty")
    bag_full_margin_g: float = bounded(
        200.0, 50, 1000, "g", "a bag this close to its capacity is full"
    )
    minimum_blood_flow_ml_min: float = bounded(
        50.0, 30, 100, "mL/min", "blood flow kept while paused or hypotensive"
    )
    net_balance_ml: float = bounded(
        100.0,
        20,
        300,
        "mL",
        "patient balance (into minus out, by encoders or scales) off what the prescription"
        " allows by now",
    )
    auto_resume_max: int = bounded(
        3, 1, 10, "alarms", "--auto-resume stops resuming an alarm raised this often"
    )
    auto_resume_window_s: float = bounded(
        600.0, 60, 3600, "s", "the window in which auto_resume_max raises are counted"
    )

    @model_validator(mode="after")
    def _ordered(self) -> AlarmLimits:
        bad = []
        if not self.plasma_temp_low_c < self.plasma_temp_high_c < self.plasma_temp_cutoff_c:
            bad.append(
                RuleViolation(
                    "plasma_temp_high_c",
                    self.plasma_temp_high_c,
                    "temperature limits must rise: low < high < cutoff",
                    f"between {self.plasma_temp_low_c:g} and {self.plasma_temp_cutoff_c:g}",
                )
            )
        check_rules(self, bad)
        return self


class SerialLink(Strict):
    url: str | None = Field(
        None, description="pyserial URL: /dev/ttyUSB0, a pty path, or socket://host:port"
    )
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200


class SimRig(Strict):
    """What the simulated rig starts with; a real rig ignores this section."""

    seed: int = 0
    map_baseline_mmhg: float = bounded(80.0, 40, 140, "mmHg", "simulated patient's MAP")
    il6_pg_ml: float = bounded(500.0, 0, 100000, "pg/mL", "simulated IL-6 at start")
    bilirubin_umol_l: float = bounded(400.0, 0, 1500, "umol/L", "simulated bilirubin at start")
    substitution_bag_ml: float = bounded(5000.0, 0, 20000, "mL", "substitution fluid hung")
    waste_bag_capacity_ml: float = bounded(10000.0, 1000, 30000, "mL", "waste bag capacity")


class RigConfig(Strict):
    rig_id: str = Field("rig-01", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    backend: str = Field(
        "sim",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="the HAL backend: sim, serial, or one a package registers (entry-point"
        " group alsctl.hal, docs/hal.md); an unknown name is refused when the run opens it",
    )
    serial: SerialLink = SerialLink()
    firmware_tick_ms: int = bounded(10, 1, 50, "ms", "firmware tick")
    sample_period_ms: int = bounded(100, 10, 500, "ms", "firmware sample period")
    control_period_ms: int = bounded(100, 20, 500, "ms", "controller cycle")
    heartbeat_timeout_ms: int = bounded(
        500, 100, 1000, "ms", "firmware goes safe when the controller is silent this long"
    )
    link_lost_ms: int = bounded(300, 100, 1000, "ms", "no frame this long means the link is lost")
    link_give_up_s: float = bounded(
        30.0,
        3,
        600,
        "s",
        "a link lost this long ends the run, interrupted and resumable (the firmware is safe"
        " by its watchdog)",
    )
    pumps: Pumps = Pumps()
    sensors: Sensors = Sensors()
    alarms: AlarmLimits = AlarmLimits()
    sim: SimRig = SimRig()
    mqtt: MqttSettings = MqttSettings()

    @model_validator(mode="after")
    def _works(self) -> RigConfig:
        """Valid alone is not enough: together the values must pass self-test and priming."""
        from controller.config import operable  # it reads this module's names: not at the top

        check_rules(self, [*operable.timing(self), *operable.pumps(self), *operable.sensors(self)])
        return self
