"""The cross-field rules a field error hides, found so one run reports everything.

Pydantic runs a model's `model_validator(mode="after")` only when all its fields (and its
nested models) validated: a bad `weight_kg` hides a broken plasma-flow rule, and the
operator fixes the file in two rounds. Here the rules are evaluated again with each failing
field replaced by stand-in values: both ends of its allowed range and its default (every
choice, for a choice field). A rule violation is reported only when it comes out word for
word the same with every stand-in, so it does not depend on the value the operator has yet
to fix. A nested model whose own rule failed is stood in by itself with its rules off, so
its parent's rules run as well. Unknown keys are left out.

Sound rather than complete: a violation that changes with the stand-ins is not reported
(it is reported once the field is fixed), and when a failing field cannot be stood in for
(a list of models, free-form data) nothing more is reported.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any, Literal, cast

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined

from controller.config._fields import rules_off
from controller.config.issues import is_rule, issues_of
from controller.errors import ConfigIssue

#: Past this many errors the file is far from valid: the hidden rules can wait.
MAX_ERRORS = 50
#: At most this many stand-in runs (a choice field with many choices is cut short).
MAX_RUNS = 12

Loc = tuple[int | str, ...]


class _CannotStandIn(Exception):
    """A failing field no stand-in value can be made for."""


def hidden_rules(
    model: type[BaseModel], data: Any, errors: list[ErrorDetails], known: list[ConfigIssue]
) -> list[ConfigIssue]:
    """Rule violations `errors` hid, not already in `known`, independent of the bad fields."""
    if not isinstance(data, dict) or len(errors) > MAX_ERRORS:
        return []
    field_errors = [e for e in errors if not is_rule(e) and e["type"] != "extra_forbidden"]
    ruled = [tuple(e["loc"]) for e in errors if is_rule(e) and e["loc"]]
    if not field_errors and not ruled:
        return []  # only top-level rules failed: nothing was skipped
    try:
        seen = _trials(model, data, errors, field_errors, ruled)
    except (ValidationError, _CannotStandIn):
        return []
    common = set.intersection(*({str(i) for i in run} for run in seen))
    already = {str(i) for i in known}
    bad = [".".join(map(str, e["loc"])) for e in field_errors]
    return [
        i
        for i in seen[0]
        if str(i) in common
        and str(i) not in already
        and not any(i.field == b or i.field.startswith(b + ".") for b in bad)
    ]


def _trials(
    model: type[BaseModel],
    data: dict[str, Any],
    errors: list[ErrorDetails],
    field_errors: list[ErrorDetails],
    ruled: list[Loc],
) -> list[list[ConfigIssue]]:
    """The rules broken in each run, the failing fields stood in by their k-th value."""
    clean = copy.deepcopy(data)
    for e in errors:
        if e["type"] == "extra_forbidden":
            _delete(clean, tuple(e["loc"]))
    stand_ins = {tuple(e["loc"]): _stand_ins(model, tuple(e["loc"])) for e in field_errors}
    runs = min(MAX_RUNS, max((len(v) for v in stand_ins.values()), default=1))
    seen = []
    for k in range(max(runs, 2 if stand_ins else 1)):
        trial = copy.deepcopy(clean)
        for loc, values in stand_ins.items():
            _put(trial, loc, values[k % len(values)])
        trusted = []
        for loc in sorted(ruled, key=len, reverse=True):
            trusted.append(_without_rules(model, loc, _get(trial, loc)))
            _put(trial, loc, trusted[-1])
        seen.append(_broken_rules(model, trial, trusted))
    return seen


def _broken_rules(
    model: type[BaseModel], data: dict[str, Any], trusted: list[BaseModel]
) -> list[ConfigIssue]:
    try:
        with rules_off(only=trusted):
            model.model_validate(data)
    except ValidationError as exc:
        return issues_of(model, [e for e in exc.errors() if is_rule(e)])
    return []


def _without_rules(model: type[BaseModel], loc: Loc, value: Any) -> BaseModel:
    """The nested model at `loc`, built with its rules off (they are reported already)."""
    inner = _model(_slot(model, loc)[0])
    if inner is None:
        raise _CannotStandIn(loc)
    with rules_off():
        return inner.model_validate(value)


# -- where a location leads -----------------------------------------------------------------
def _optional(annotation: Any) -> Any:
    """`X` for `X | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    annotation = _optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _slot(model: type[BaseModel], loc: Loc) -> tuple[Any, FieldInfo | None]:
    """The annotation (and field, for a field) at `loc`."""
    annotation: Any = model
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(_optional(annotation))
            if typing.get_origin(_optional(annotation)) not in (tuple, list) or not args:
                raise _CannotStandIn(loc)
            annotation, info = args[0], None
            continue
        owner = _model(annotation)
        if owner is None:
            raise _CannotStandIn(loc)
        name = next((n for n, f in owner.model_fields.items() if part in (n, f.alias)), None)
        if name is None:
            raise _CannotStandIn(loc)
        info = owner.model_fields[name]
        annotation = info.annotation
    return annotation, info


# -- stand-in values ------------------------------------------------------------------------
def _stand_ins(model: type[BaseModel], loc: Loc) -> list[Any]:
    annotation, info = _slot(model, loc)
    return _values(annotation, info)


def _default(info: FieldInfo | None) -> Any:
    if info is None or info.default is PydanticUndefined or info.default is None:
        return None
    return info.default


def _values(annotation: Any, info: FieldInfo | None) -> list[Any]:
    """Values a field may take, spanning its range: every stand-in is valid on its own."""
    annotation = _optional(annotation)
    origin = typing.get_origin(annotation)
    default = _default(info)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if annotation is bool:
        return [False, True]
    if annotation in (int, float):
        return _numbers(annotation, info, default)
    if annotation is str:
        if isinstance(default, str):
            return [default]
        shortest = max(1, _length(info, annotated_types.MinLen, "min_length", 1))
        return ["x" * shortest]
    inner = _model(annotation)
    if inner is not None:
        return _model_values(inner)
    if origin in (tuple, list):
        element = typing.get_args(annotation)[0]
        if _model(element) is not None:
            raise _CannotStandIn(annotation)
        return [[], [_values(element, None)[0]]]
    if origin is dict:
        return [{}]
    raise _CannotStandIn(annotation)


def _length(info: FieldInfo | None, kind: type, attr: str, otherwise: int) -> int:
    if info is None:
        return otherwise
    return next((getattr(m, attr) for m in info.metadata if isinstance(m, kind)), otherwise)


def _numbers(kind: type, info: FieldInfo | None, default: Any) -> list[Any]:
    step = 1 if kind is int else 1e-6
    lo: float | None = None
    hi: float | None = None
    # annotated_types types a bound as merely comparable; on an int or float field it is a number
    for m in info.metadata if info is not None else ():
        if isinstance(m, annotated_types.Ge):
            lo = cast(float, m.ge)
        elif isinstance(m, annotated_types.Gt):
            lo = cast(float, m.gt) + step
        elif isinstance(m, annotated_types.Le):
            hi = cast(float, m.le)
        elif isinstance(m, annotated_types.Lt):
            hi = cast(float, m.lt) - step
    if lo is None:
        lo = (default if isinstance(default, int | float) else 0) if hi is None else hi - 1
    if hi is None:
        hi = lo + 1
    values = [lo, hi]
    if isinstance(default, int | float) and default not in values:
        values.append(default)
    return [kind(v) for v in values]


def _model_values(inner: type[BaseModel]) -> list[dict[str, Any]]:
    """Dicts for a missing or malformed nested model: its required fields, spanned."""
    required = {
        (f.alias or n): _values(f.annotation, f)
        for n, f in inner.model_fields.items()
        if f.is_required()
    }
    runs = max((len(v) for v in required.values()), default=1)
    return [{k: v[i % len(v)] for k, v in required.items()} for i in range(max(runs, 2))]


# -- reading and writing plain data ---------------------------------------------------------
def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            raise _CannotStandIn(loc) from None
    return data


def _put(data: Any, loc: Loc, value: Any) -> None:
    parent = _get(data, loc[:-1])
    key = loc[-1]
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and isinstance(key, int):
        try:
            parent[key] = value
        except IndexError:
            raise _CannotStandIn(loc) from None
    else:  # neither a mapping nor a list, or a list with a name for an index
        raise _CannotStandIn(loc)


def _delete(data: Any, loc: Loc) -> None:
    parent = _get(data, loc[:-1])
    if isinstance(parent, dict):
        parent.pop(loc[-1], None)
