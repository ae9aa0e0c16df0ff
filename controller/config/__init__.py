"""Config models (rig, prescription, scenario) and their YAML loading."""

from controller.config.loading import (
    MODELS,
    detect_kind,
    issues_from,
    load,
    load_prescription,
    load_rig,
    load_scenario,
    to_yaml,
)
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import FAULTS, FaultEvent, Scenario

__all__ = [
    "FAULTS",
    "MODELS",
    "FaultEvent",
    "Prescription",
    "RigConfig",
    "Scenario",
    "detect_kind",
    "issues_from",
    "load",
    "load_prescription",
    "load_rig",
    "load_scenario",
    "to_yaml",
]
