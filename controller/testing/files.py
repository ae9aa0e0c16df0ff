"""Config for a test: a shipped example's name, a file, a model or a dict, plus changes.

A test names what it runs on the way `alsctl run` does (`"pe"`, `"sim"`, `"air_bubble"`,
or a path), so a test outside this repository uses the examples installed with the package
(`controller.examples`). Changes are merged into the file's fields before validation, so a
short treatment is one line (`prescription("pe", exchange_volume_pv=0.2)`) and is checked
by the same rules as a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from controller import examples
from controller.config.checklist import GateAnswers
from controller.config.loading import validate
from controller.config.prescription import Prescription
from controller.config.reader import read_yaml
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario

M = TypeVar("M", bound=BaseModel)
#: What a test may give for a config: a shipped example's name, a path, the model, or its
#: fields as a dict (the YAML file's content).
Given = str | Path | BaseModel | dict[str, Any]


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` over `base`; a nested mapping is merged key by key, None removes a key."""
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load(kind: str, model: type[M], given: Given | None, changes: dict[str, Any]) -> M:
    if isinstance(given, model) and not changes:
        return given
    if isinstance(given, BaseModel):
        data = given.model_dump(mode="json", exclude_none=True, by_alias=True)
        source = f"{kind} {type(given).__name__}"
    elif isinstance(given, dict):
        data, source = given, f"{kind} (dict)"
    else:
        path = examples.resolve(kind, None if given is None else str(given))
        data, source = read_yaml(path), str(path)
    if not isinstance(data, dict):
        return validate(model, data, source)  # names what is wrong with it
    return validate(model, _merge(data, changes), source)


def rig(given: Given | None = None, **changes: Any) -> RigConfig:
    """A rig: the shipped `sim` by default, `"bench"`, a file, or a model; plus changes."""
    return _load("rig", RigConfig, given, changes)


def prescription(given: Given | None = None, **changes: Any) -> Prescription:
    """A prescription: the shipped `li_als` by default, `"pe"`, a file ...; plus changes.

    `prescription("pe", exchange_volume_pv=0.2)` is the shipped plasma exchange, 0.2 plasma
    volumes instead of 1.0: about 20 minutes of rig time instead of 1 h 47."""
    return _load("prescription", Prescription, given, changes)


def scenario(given: Given) -> Scenario:
    """A fault scenario: a shipped one's name (`"air_bubble"`), a file, a model or a dict."""
    return _load("scenario", Scenario, given, {})


def checklist(given: Given | None = None) -> GateAnswers:
    """The pre-start checklist's answers: `"clear"` (every answer no) by default,
    `"override"` (informed consent), a file or a model."""
    return _load("checklist", GateAnswers, given, {})
