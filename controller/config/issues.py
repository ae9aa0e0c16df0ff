"""Pydantic errors in the operator's words: `field: value -> why (allowed range)`.

The allowed range is read from the field's own bounds, so the message can never disagree
with the check; a broken cross-field rule is reported against the field to change.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from controller.config._fields import RuleViolation, RuleViolations, TextProblem
from controller.errors import ConfigIssue

#: A value is shown up to this many characters: enough to recognise it, never a flood.
SHOW_CHARS = 60


def show_value(value: Any) -> str:
    """A value as the operator wrote it, short: repr escapes control characters."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and len(value) > SHOW_CHARS:
        return repr(value[:SHOW_CHARS]) + f"... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model class behind `X`, `X | None`, `tuple[X, ...]`, `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _field_at(
    model: type[BaseModel], loc: tuple[Any, ...]
) -> tuple[type[BaseModel], FieldInfo | None]:
    """Walk an error location to the model holding the last field, and that field."""
    current: type[BaseModel] | None = model
    owner: type[BaseModel] = model
    info: FieldInfo | None = None
    for part in loc:
        if not isinstance(part, str) or current is None:
            continue
        fields = current.model_fields
        name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
        if name is None:
            return current, None
        owner, info = current, fields[name]
        current = _inner_model(info.annotation)
    return owner, info


def _allowed(info: FieldInfo | None) -> str:
    if info is None:
        return ""
    lo = hi = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            lo = meta.ge if isinstance(meta, annotated_types.Ge) else meta.gt
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            hi = meta.le if isinstance(meta, annotated_types.Le) else meta.lt
    unit = (
        (info.json_schema_extra or {}).get("unit", "")
        if isinstance(info.json_schema_extra, dict)
        else ""
    )
    if lo is None and hi is None:
        return _allowed_length(info)
    above = ">" if any(isinstance(m, annotated_types.Gt) for m in info.metadata) else ">="
    span = (
        f"{lo:g}..{hi:g}"
        if lo is not None and hi is not None
        else (f"{above} {lo:g}" if lo is not None else f"<= {hi:g}")
    )
    return f"allowed {span} {unit}".rstrip()


def _allowed_length(info: FieldInfo) -> str:
    lo = next((m.min_length for m in info.metadata if isinstance(m, annotated_types.MinLen)), None)
    hi = next((m.max_length for m in info.metadata if isinstance(m, annotated_types.MaxLen)), None)
    if hi is None:
        return ""
    return f"{lo or 0}..{hi} characters"


def _rule_issue(prefix: str, v: RuleViolation) -> ConfigIssue:
    field = f"{prefix}.{v.field}" if prefix else v.field
    return ConfigIssue(field, show_value(v.value), v.why, v.allowed)


def issues_from(model: type[BaseModel], exc: ValidationError) -> list[ConfigIssue]:
    """Every pydantic error of `exc` as a ConfigIssue naming the field."""
    return issues_of(model, exc.errors())


def is_rule(err: ErrorDetails) -> bool:
    """A cross-field rule broken (as opposed to a field's own value refused)."""
    error = (err.get("ctx") or {}).get("error")
    return isinstance(error, RuleViolations | RuleViolation)


def issues_of(model: type[BaseModel], errors: list[ErrorDetails]) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    for err in errors:
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(file)"
        kind = err["type"]
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, RuleViolations | RuleViolation):
            prefix = ".".join(str(p) for p in loc)
            violations = error.violations if isinstance(error, RuleViolations) else [error]
            out.extend(_rule_issue(prefix, v) for v in violations)
            continue
        owner, info = _field_at(model, loc)
        value = show_value(err.get("input"))
        if kind == "missing":
            out.append(ConfigIssue(field, "(missing)", "required", _allowed(info)))
        elif kind == "extra_forbidden":
            known = ", ".join(f.alias or n for n, f in owner.model_fields.items())
            out.append(ConfigIssue(field, value, "unknown field", f"expected one of: {known}"))
        elif kind in ("greater_than_equal", "greater_than"):
            out.append(ConfigIssue(field, value, "below the minimum", _allowed(info)))
        elif kind in ("less_than_equal", "less_than"):
            out.append(ConfigIssue(field, value, "above the maximum", _allowed(info)))
        elif kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
            why = "not a whole number" if kind.startswith("int") else "not a number"
            out.append(ConfigIssue(field, value, why, _allowed(info)))
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            out.append(ConfigIssue(field, value, "expected a mapping of fields"))
        elif kind in ("bool_parsing", "bool_type"):
            out.append(ConfigIssue(field, value, "not true or false"))
        elif kind == "string_too_short":
            why = "blank" if not str(err.get("input", "")).strip() else "too short"
            out.append(ConfigIssue(field, value, why, _allowed(info)))
        elif kind == "string_too_long":
            out.append(ConfigIssue(field, value, "too long", _allowed(info)))
        elif kind == "string_type":
            out.append(ConfigIssue(field, value, "not text", _allowed(info)))
        elif kind == "value_error" and isinstance(error, TextProblem):
            out.append(ConfigIssue(field, value, str(error), "printable text"))
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            out.append(ConfigIssue(field, value, "not one of the choices", f"expected {expected}"))
        else:
            out.append(ConfigIssue(field, value, err["msg"], _allowed(info)))
    return out
