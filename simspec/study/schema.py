"""The study file's schema: search space, drafters, objectives, SLOs, plus the loaded `StudySpec`.

Kept apart from the loader (`spec.load_study`) so that the search space (`space.py`), which
the loader calls to check a file, can import these types without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from simspec import drafters as drafter_kinds
from simspec import limits
from simspec.config.fields import Strict
from simspec.config.pydantic_errors import KeyedError
from simspec.config.scenario import AcceptanceSpec, CostSpec, Scenario
from simspec.tree_shape import TreeShape

# A drafter kind of simspec.drafters ("none" is gamma = 0, not a drafter).
DrafterKind = Annotated[str, AfterValidator(lambda v: drafter_kinds.check_name(v, with_none=False))]


class IntRange(Strict):
    """An integer knob: low..high (inclusive), optionally on a log scale."""

    low: int
    high: int
    log: bool = False
    step: Annotated[int, Field(gt=0)] = 1

    @model_validator(mode="after")
    def _check(self) -> "IntRange":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) < low ({self.low})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log scale needs low >= 1 and step = 1")
        return self

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


IntKnob = Union[IntRange, Annotated[list[int], Field(min_length=1)]]


class FloatRange(Strict):
    """A float knob (a policy's float parameter): low..high, optionally on a log scale."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "FloatRange":
        if self.high < self.low:
            raise ValueError(f"high ({self.high:g}) < low ({self.low:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        return self


# a policy parameter's search values: a list, or a range (IntRange for int parameters)
ParamKnob = Union[IntRange, FloatRange, Annotated[list[float], Field(min_length=1)]]


class SearchSpec(Strict):
    gamma: IntKnob = IntRange(low=0, high=0)
    drafter: list[DrafterKind] | None = Field(default=None, min_length=1)
    exit_layer: IntKnob | Literal["trace"] | None = None   # "trace": the layers the trace recorded
    vocab: IntKnob | Literal["trace"] | None = None        # "trace": the trimmed sizes it recorded
    tree: list[str] | None = Field(default=None, min_length=1)
    max_batch: IntKnob | None = None
    placement: list[str] | None = Field(default=None, min_length=1)
    dtype: list[str] | None = Field(default=None, min_length=1)
    # how each round's shape is chosen (simspec.policies): "fixed" (gamma / tree as searched) or
    # a registered policy; its parameters are knobs `policy.<name>.<param>`, searched over the
    # parameter's whole range unless `policy_params.<name>.<param>` narrows it
    policy: list[str] | None = Field(default=None, min_length=1)
    policy_params: dict[str, dict[str, ParamKnob]] = Field(default_factory=dict)

    @field_validator("gamma", "max_batch", "exit_layer", "vocab")
    @classmethod
    def _sizes(cls, v, info):
        """A knob's largest value against its limit (before a range is ever listed)."""
        if isinstance(v, IntRange) or isinstance(v, list):
            top = v.high if isinstance(v, IntRange) else max(v)
            low = v.low if isinstance(v, IntRange) else min(v)
            floor = 0 if info.field_name == "gamma" else 1
            why = limits.over(top, _KNOB_LIMITS[info.field_name])
            if why is None and low < floor:  # a count below its floor is no size at all
                why = f"{low} is below the smallest {_KNOB_LIMITS[info.field_name].name} ({floor})"
            if why is not None:
                raise KeyedError(f"search.{info.field_name}", why)
        return v

    @field_validator("tree")
    @classmethod
    def _tree_sizes(cls, v):
        """A shape's depth and nodes against their limits, before any tree is built (a shape
        that does not parse is left to `_check`, which says why)."""
        for shape in v or ():
            parts = [x.strip() for x in shape.split(",")]
            if not all(x.isascii() and x.isdigit() for x in parts):
                continue
            branching = [int(x) for x in parts]
            for why in (limits.over(len(branching), limits.GAMMA),
                        limits.over(limits.tree_nodes(branching), limits.TREE_NODES)):
                if why is not None:
                    raise KeyedError("search.tree", f"shape {shape!r}: {why}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "SearchSpec":
        lo = self.gamma.low if isinstance(self.gamma, IntRange) else min(self.gamma)
        if lo < 0:
            raise KeyedError("search.gamma", f"gamma must be >= 0 (got {lo})")
        for knob in ("max_batch", "exit_layer", "vocab"):  # each value must make a valid scenario
            v = getattr(self, knob)
            if v is None or v == "trace":
                continue
            lo = v.low if isinstance(v, IntRange) else min(v)
            if lo < 1:
                raise KeyedError(f"search.{knob}", f"every value must be >= 1 (got {lo}): no trial could run")
        for shape in self.tree or ():
            try:
                parse_tree(shape)
            except ValueError as exc:
                raise ValueError(f"tree shape {exc}") from None
        return self


def parse_tree(shape: str) -> list[int]:
    """'4,2,1' -> [4, 2, 1] (children per node at each depth)."""
    return list(TreeShape.parse(shape).branching)


Point2 = Annotated[list[float], Field(min_length=2, max_length=2)]  # [x, y] of an interpolated curve


class DrafterSpec(Strict):
    """One kind of drafter the search may pick, with its cost and its acceptance."""

    name: str | None = None
    cost: CostSpec | None = None
    profile: str | None = None
    acceptance: AcceptanceSpec | None = None
    # early exit, synthetic acceptance: [[layer, iid acceptance], ...], interpolated in layer.
    acceptance_by_layer: list[Point2] | None = Field(default=None, min_length=1)
    # trimmed vocabulary: full head rows, the head's share of a synthetic step, and the
    # fraction of target tokens inside the top-K rows ([[K, coverage], ...], log-interpolated).
    vocab_size: Annotated[int, Field(gt=0)] | None = None
    head_ms: Annotated[float, Field(ge=0)] = 0.0
    coverage: list[Point2] | None = Field(default=None, min_length=1)  # interpolated: at least one point
    # n-gram: vLLM's prompt lookup window, exported as-is.
    prompt_lookup_min: Annotated[int, Field(gt=0)] | None = None
    prompt_lookup_max: Annotated[int, Field(gt=0)] | None = None
    # suffix decoding: vLLM's speculative_config keys, same names and ranges (simspec.trace.suffix)
    suffix_decoding_max_tree_depth: Annotated[int, Field(ge=1, le=256)] | None = None
    suffix_decoding_max_cached_requests: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    suffix_decoding_max_spec_factor: Annotated[float, Field(ge=0, le=64)] | None = None
    suffix_decoding_min_token_prob: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DrafterSpec":
        if self.cost is not None and self.profile is not None:
            raise ValueError("give at most one of `cost` or `profile`")
        if self.acceptance is None and self.acceptance_by_layer is None:
            raise ValueError("give `acceptance` (or `acceptance_by_layer` for early exit)")
        if self.acceptance is not None and self.acceptance.trace is not None and self.coverage is not None:
            raise ValueError("`coverage` is for synthetic acceptance: a trace has the trimmed columns (<drafter>/k<K>)")
        for pts, what in ((self.acceptance_by_layer, "acceptance_by_layer"), (self.coverage, "coverage")):
            if pts is not None:
                xs = [p[0] for p in pts]
                if xs != sorted(xs) or len(set(xs)) != len(xs):
                    raise ValueError(f"`{what}` points must be sorted by their first value, without repeats")
                if any(not 0 <= p[1] <= 1 for p in pts):
                    raise ValueError(f"`{what}` values must lie in [0, 1]")
        if self.coverage is not None and self.coverage[0][0] < 1:  # sorted: the first is the least
            raise ValueError(f"`coverage` K values are head rows: each must be >= 1 (got {self.coverage[0][0]:g})")
        return self


_KNOB_LIMITS = {"gamma": limits.GAMMA, "max_batch": limits.MAX_BATCH, "exit_layer": limits.LAYERS,
                "vocab": limits.VOCAB}


class Constraint(Strict):
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one(self) -> "Constraint":
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of `max` or `min`")
        return self


class CapacitySpec(Strict):
    rate: Annotated[float, Field(gt=0)]
    max_replicas: Annotated[int, Field(gt=0), _capped(limits.REPLICAS, "capacity.max_replicas")] = 64
    requests: Annotated[int, Field(gt=0), _capped(limits.REQUESTS, "capacity.requests")] | None = None


class ScheduleSpec(Strict):
    batch_sizes: list[Annotated[int, Field(gt=0)]] | None = Field(default=None, min_length=1)
    requests_per_slot: Annotated[int, Field(gt=0)] = 4
    min_requests: Annotated[int, Field(gt=0), _capped(limits.REQUESTS, "schedule.min_requests")] = 32

    @model_validator(mode="after")
    def _sizes(self) -> "ScheduleSpec":
        if self.batch_sizes:
            for why in (limits.over(len(set(self.batch_sizes)), limits.SCHEDULE_BUCKETS),
                        limits.over(max(self.batch_sizes), limits.MAX_BATCH)):
                if why is not None:
                    raise KeyedError("schedule.batch_sizes", why)
        top = max(self.batch_sizes) if self.batch_sizes else limits.MAX_BATCH.value
        why = limits.over(top * self.requests_per_slot, limits.REQUESTS)
        if why is not None:  # the largest bucket's saturated workload
            raise KeyedError("schedule.requests_per_slot", f"{self.requests_per_slot} x batch {top}: {why}")
        return self


def _capped(limit: limits.Limit, key: str):
    """A count of a study file refused past `limit`, naming its key."""
    def check(v):
        why = None if v is None else limits.over(v, limit)
        if why is not None:
            raise KeyedError(key, why)
        return v
    return AfterValidator(check)


class StudyFile(Strict):
    # the run folder's name (runs/<name>/): a plain name, never a path out of it
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", max_length=200)] | None = None
    scenario: str | dict[str, Any]
    patch: dict[str, Any] = Field(default_factory=dict)
    workload: dict[str, Any] | None = None  # replaces the scenario's [workload] whole
    trials: Annotated[int, Field(gt=0), _capped(limits.TRIALS, "trials")] = 100
    seed: int = 0
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: Annotated[int, Field(gt=0), _capped(limits.TRIALS, "startup_trials")] = 10
    baselines: list[dict[str, Any]] = Field(default_factory=list)
    search: SearchSpec = SearchSpec()
    drafters: dict[DrafterKind, DrafterSpec] = Field(default_factory=dict)
    variants: dict[Literal["placement", "dtype"], dict[str, dict[str, Any]]] = Field(default_factory=dict)
    objectives: dict[str, Literal["maximize", "minimize"]] = Field(default_factory=lambda: {"throughput": "maximize"}, min_length=1)
    constraints: dict[str, Constraint] = Field(default_factory=dict)
    capacity: CapacitySpec | None = None
    schedule: ScheduleSpec = ScheduleSpec()

    @model_validator(mode="after")
    def _untraced(self) -> "StudyFile":
        """A kind simspec cannot trace has no trace column to replay."""
        for kind, ds in self.drafters.items():
            k = drafter_kinds.get(kind)
            if not k.traced and ds.acceptance is not None and ds.acceptance.trace is not None:
                raise KeyedError(f"drafters.{kind}.acceptance.trace",
                                 f"{k.title} has no trace column (simspec cannot run it here): give `per_position` acceptance")
        return self


class StudySpec:
    """A loaded study: the validated file, and the base scenario every point changes
    (`trial.scenario`): `base` decodes plainly; `own_draft` is the base's own [draft] table,
    used as written when the search picks its kind and the study has no [drafters.<kind>]."""

    def __init__(self, file: StudyFile, path: Path, base: Scenario, own_draft: dict[str, Any]) -> None:
        self.file = file
        self.path = path
        self.base = base
        self.own_draft = own_draft
        self.name = file.name or path.stem

    @property
    def own_kind(self) -> str:
        return self.own_draft.get("kind", drafter_kinds.NONE)

    @property
    def where(self) -> str:
        return str(self.path)
