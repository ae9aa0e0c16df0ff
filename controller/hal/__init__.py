"""The HAL: the only door between the controller and a rig (docs/architecture.md rule 1).

`base.py` is the interface and its declared capabilities; `registry.py` finds a backend by
name (built-in `sim` and `serial`, or an entry point of group `alsctl.hal`); docs/hal.md
shows how to add one and run the contract suite against it.
"""

from controller.hal.base import Capabilities, Hal
from controller.hal.registry import BUILT_IN, backend_class, backends, open_hal

__all__ = ["BUILT_IN", "Capabilities", "Hal", "backend_class", "backends", "open_hal"]
