"""Building blocks shared by the config models.

A safety limit is never a bare number: it carries its default from docs/spec.md 5.2 and the safe
bounds it can be configured within, so pydantic refuses a weakened limit at load time and
the error can say what range was allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class Strict(BaseModel):
    """Base of every config model: a typo in a key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def bounded(default: Any, lo: float, hi: float, unit: str, description: str) -> Any:
    """A field whose value must stay in [lo, hi]; `default=...` makes it required."""
    return Field(
        default,
        ge=lo,
        le=hi,
        description=f"{description} [{unit}]; allowed {lo:g}..{hi:g}",
        json_schema_extra={"unit": unit},
    )


class TextProblem(ValueError):
    """Free text that cannot be shown as it is (a control character could fake a line)."""


def _one_line(text: str) -> str:
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise TextProblem(f"contains the control character {bad!r}")
    return text


def _lines(text: str) -> str:
    bad = next((c for c in text if not (c.isprintable() or c in "\n\t")), None)
    if bad is not None:
        raise TextProblem(f"contains the control character {bad!r}")
    return text


#: Free text on one line (names, clinician, reasons): stripped of surrounding spaces, and
#: refused when it holds a control character, which printed raw could fake a line of output
#: (an ANSI escape in a name can draw a `final state: done` that never happened).
OneLine = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_one_line)]
#: Free text that may run over several lines (descriptions): newlines and tabs allowed.
Lines = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_lines)]


def text(default: Any, max_length: int, description: str, min_length: int = 1) -> Any:
    """A free-text field; `default=...` makes it required, and then it may not be blank."""
    return Field(default, min_length=min_length, max_length=max_length, description=description)


class RuleViolation(ValueError):
    """A cross-field rule broken, reported against the field the operator should change."""

    def __init__(self, field: str, value: Any, why: str, allowed: str = "") -> None:
        self.field = field
        self.value = value
        self.why = why
        self.allowed = allowed
        super().__init__(f"{field}: {why}")


class RuleViolations(ValueError):
    """Every cross-field rule a model breaks, gathered so the operator sees them all at once."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


#: While `controller.config.hidden` looks for the rules a field error hid: None, or the
#: nested models whose own rules are reported already (by id), so their parents' rules run.
_RULES_OFF: ContextVar[bool | frozenset[int]] = ContextVar("rules_off", default=False)


@contextmanager
def rules_off(only: Iterable[BaseModel] | None = None) -> Iterator[None]:
    """Inside this block cross-field rules are not enforced: all of them, or only those of
    the model instances `only` (an instance given as a field value is re-checked)."""
    token = _RULES_OFF.set(True if only is None else frozenset(id(m) for m in only))
    try:
        yield
    finally:
        _RULES_OFF.reset(token)


def check_rules(model: BaseModel, violations: list[RuleViolation]) -> None:
    """Raise the violations of `model`'s rules, all at once."""
    off = _RULES_OFF.get()
    if not violations or off is True or (off and id(model) in off):
        return
    raise RuleViolations(violations)
