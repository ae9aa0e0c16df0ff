"""Backends by name, as python-can picks its interfaces: `sim` or `serial`, never a fallback.

Modules are imported only when their backend is asked for, so the simulator is not loaded on
a bench PC driving a real rig, and a broken backend fails loudly with its name.
"""

from __future__ import annotations

import importlib
from typing import Any

from controller.errors import HalError
from controller.hal.base import Hal

BACKENDS: dict[str, str] = {
    "sim": "controller.hal.sim:SimHal",
    "serial": "controller.hal.serial:SerialHal",
}


def backend_class(name: str) -> type[Hal]:
    """The HAL class registered as `name`; unknown names are an error, not a default."""
    target = BACKENDS.get(name)
    if target is None:
        raise HalError(f"unknown HAL backend {name!r}; backends are {', '.join(BACKENDS)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HalError(f"HAL backend {name!r} cannot be loaded: {exc}") from exc
    cls: type[Hal] = getattr(module, attr)
    return cls


def open_hal(name: str, *args: Any, **kwargs: Any) -> Hal:
    """An unconnected HAL of backend `name`, built with the backend's own arguments."""
    return backend_class(name)(*args, **kwargs)


__all__ = ["BACKENDS", "Hal", "backend_class", "open_hal"]
