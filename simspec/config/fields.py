"""The schema toolkit every file schema (scenario, study, validation plan) is built from: the
`Strict` base (unknown keys are errors, objects are frozen) and the constrained field types
the schemas share, so one bound (a token length, a dtype) is written once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNeg = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
PosInt = Annotated[int, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
# a token length: positive and far below what the samplers' int64 draws can hold
TokenLen = Annotated[int, Field(gt=0, le=10_000_000)]
Dtype = Literal["bf16", "fp16", "fp8", "fp32"]


class Strict(BaseModel):
    """The base of every file schema (scenario, study, validation plan): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
