"""The schema toolkit every file schema (scenario, study, validation plan) is built from: the
`Strict` base (unknown keys are errors, objects are frozen, numbers are numbers) and the
constrained field types the schemas share, so one bound (a token length, a dtype) is written once."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NonNeg = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
PosInt = Annotated[int, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
# a token length: positive and far below what the samplers' int64 draws can hold
TokenLen = Annotated[int, Field(gt=0, le=10_000_000)]
Dtype = Literal["bf16", "fp16", "fp8", "fp32"]


def _kinds(ann: Any) -> set[str]:
    """What an annotation can hold, as far as bools go: 'number' (int or float), 'bool',
    'any', 'dict' (a mapping whose values are the annotation's own) -- models not entered
    (each model checks its own fields)."""
    if ann is bool:
        return {"bool"}
    if ann in (int, float):
        return {"number"}
    if ann is Any:
        return {"any"}
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _kinds(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, set):
        return set().union(*(_kinds(a) for a in typing.get_args(ann) if a is not Ellipsis))
    if origin is dict:
        args = typing.get_args(ann)
        inner = _kinds(args[1]) if len(args) == 2 else {"any"}
        return inner | {"dict"} if "number" in inner else inner
    return set()


def _has_bool(value: Any, into_dicts: bool) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v, into_dicts) for v in value)
    if into_dicts and isinstance(value, dict):
        return any(_has_bool(v, into_dicts) for v in value.values())
    return False


class NotANumber:
    """A boolean given where a number belongs, swapped in before validation so that pydantic's
    own type error lands on the exact key (and list index); `pydantic_errors` words it."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"  # as the TOML file spells it


def _mark(value: Any, into_dicts: bool) -> Any:
    if isinstance(value, bool):
        return NotANumber(value)
    if isinstance(value, (list, tuple)):
        return [_mark(v, into_dicts) for v in value]
    if into_dicts and isinstance(value, dict):
        return {k: _mark(v, into_dicts) for k, v in value.items()}
    return value


_NUMERIC: dict[tuple[type, str], tuple[bool, bool]] = {}


class Strict(BaseModel):
    """The base of every file schema (scenario, study, validation plan): unknown keys are
    errors; a number is finite (NaN and +-inf are refused alike: either turns every metric
    downstream into NaN) and never a boolean (pydantic would read `true` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = None
        for name, v in data.items():
            if not isinstance(v, (bool, list, tuple, dict)) or name not in cls.model_fields:
                continue
            key = (cls, name)
            if key not in _NUMERIC:
                kinds = _kinds(cls.model_fields[name].annotation)
                _NUMERIC[key] = ("number" in kinds and not kinds & {"bool", "any"}, "dict" in kinds)
            numeric, into_dicts = _NUMERIC[key]
            if numeric and _has_bool(v, into_dicts):
                out = dict(data) if out is None else out
                out[name] = _mark(v, into_dicts)
        return data if out is None else out
