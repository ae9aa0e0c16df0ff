"""Backends by name, as python-can picks its interfaces: `sim` or `serial` built in, any
other added by a package through the entry-point group `alsctl.hal` (docs/hal.md); never a
fallback to simulation.

Modules are imported only when their backend is asked for, so the simulator is not loaded on
a bench PC driving a real rig, and a broken backend fails loudly with its name. Every backend
is built one way: `cls.from_config(rig, **overrides)`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from controller.config.rig import RigConfig
from controller.errors import HalError
from controller.hal.base import Hal

GROUP = "alsctl.hal"
BUILT_IN: dict[str, str] = {
    "sim": "controller.hal.sim:SimHal",
    "serial": "controller.hal.serial:SerialHal",
}


def backends() -> dict[str, str]:
    """Every backend by name: the built-in ones, then those packages register."""
    found = dict(BUILT_IN)
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def backend_class(name: str) -> type[Hal]:
    """The HAL class registered as `name`; unknown names are an error, not a default."""
    known = backends()
    target = known.get(name)
    if target is None:
        raise HalError(f"unknown HAL backend {name!r}; backends are {', '.join(known)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise HalError(f"HAL backend {name!r} ({target}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Hal)):
        raise HalError(f"HAL backend {name!r} ({target}) is not a Hal")
    return cls


def open_hal(name: str, rig: RigConfig, **overrides: Any) -> Hal:
    """An unconnected HAL of backend `name` for this rig (overrides: port, speed ...)."""
    return backend_class(name).from_config(rig, **overrides)
