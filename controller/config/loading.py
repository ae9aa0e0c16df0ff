"""Reading config files into the models; every failure is a ConfigError of plain lines
(controller.config.issues words them, controller.config.reader reads the file safely)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from controller.config.checklist import GateAnswers
from controller.config.hidden import hidden_rules
from controller.config.issues import issues_from as issues_from  # re-exported, for callers
from controller.config.issues import show_value
from controller.config.prescription import Prescription
from controller.config.reader import read_yaml
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.errors import ConfigError, ConfigIssue

Kind = Literal["rig", "prescription", "scenario", "checklist"]
MODELS: dict[str, type[BaseModel]] = {
    "rig": RigConfig,
    "prescription": Prescription,
    "scenario": Scenario,
    "checklist": GateAnswers,
}
M = TypeVar("M", bound=BaseModel)


def detect_kind(data: Any) -> Kind | None:
    """Tell a file's kind from its top-level keys."""
    if not isinstance(data, dict):
        return None
    if "patient" in data:
        return "prescription"
    if "events" in data:
        return "scenario"
    if "checklist" in data:
        return "checklist"
    if set(data) & {"backend", "rig_id", "pumps", "alarms", "serial", "sensors", "sim"}:
        return "rig"
    return None


def validate(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigIssue("(file)", show_value(data), "expected a mapping of fields")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = issues_from(model, exc)
        # pydantic skips a model's rules when one of its fields fails: find the broken
        # rules that do not depend on the failing fields, so one run reports them all
        issues += hidden_rules(model, data, exc.errors(), issues)
        raise ConfigError(source, issues) from None


def load(path: str | Path, kind: Kind | None = None) -> BaseModel:
    """Load one file as `kind`, or as the kind its content shows."""
    path = Path(path)
    data = read_yaml(path)
    kind = kind or detect_kind(data)
    if kind is None:
        raise ConfigError(
            str(path),
            [
                ConfigIssue(
                    "(file)",
                    "(content)",
                    "cannot tell whether this is a rig, prescription or scenario",
                    "pass --kind",
                )
            ],
        )
    return validate(MODELS[kind], data, str(path))


def load_rig(path: str | Path | None) -> RigConfig:
    if path is None:
        return RigConfig()
    return validate(RigConfig, read_yaml(Path(path)), str(path))


def load_prescription(path: str | Path) -> Prescription:
    return validate(Prescription, read_yaml(Path(path)), str(path))


def load_scenario(path: str | Path) -> Scenario:
    return validate(Scenario, read_yaml(Path(path)), str(path))


def load_checklist(path: str | Path) -> GateAnswers:
    return validate(GateAnswers, read_yaml(Path(path)), str(path))


def to_yaml(model: BaseModel) -> str:
    """The canonical YAML form of a model; loading it gives the same model back."""
    text: str = yaml.safe_dump(
        model.model_dump(mode="json", exclude_none=True, by_alias=True), sort_keys=False
    )
    return text
