"""Scenario files (TOML) -> typed, validated objects.

Unknown keys are errors, and every error names the file, the key and the reason, so a user
fixing a scenario never has to read a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simspec import drafters
from simspec.errors import InputError
from simspec.tree_shape import TreeShape

NonNeg = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]


class Strict(BaseModel):
    """The base of every file schema (scenario, study, validation plan): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CostSpec(Strict):
    """Synthetic cost of one forward pass, in milliseconds."""

    step_ms: NonNeg
    per_seq_ms: NonNeg = 0.0
    per_token_ms: NonNeg = 0.0
    per_kv_token_ms: NonNeg = 0.0


class ModelDims(Strict):
    """What the KV-capacity arithmetic needs when no profile supplies it; with `hidden`,
    `heads`, `intermediate` and `vocab` too, enough for a roofline estimate (no `cost`,
    `profile` or `model` needed)."""

    layers: PosInt
    kv_heads: PosInt
    head_dim: PosInt
    dtype_bytes: PosInt = 2
    weights_gb: NonNeg = 0.0
    hidden: PosInt | None = None
    heads: PosInt | None = None
    intermediate: PosInt | None = None
    vocab: PosInt | None = None
    tied: bool = True

    @property
    def complete(self) -> bool:
        """Enough for the roofline (every shape of every kernel)."""
        return None not in (self.hidden, self.heads, self.intermediate, self.vocab)


Dtype = Literal["bf16", "fp16", "fp8", "fp32"]


def _roofline_source(model: str | None, dims: ModelDims | None) -> bool:
    return model is not None or (dims is not None and dims.complete)


class TargetSpec(Strict):
    name: str = "target"
    cost: CostSpec | None = None
    profile: str | None = None
    layers: PosInt | None = None
    dims: ModelDims | None = None
    # A roofline estimate on the target's device: `model` names its dims (a published name,
    # a profile, an HF config or a GGUF file; simspec.devices.arch), or `dims` gives them all.
    model: str | None = None
    dtype: Dtype = "bf16"              # the roofline's compute dtype
    tensor_parallel: PosInt = 1        # roofline: weights split over this many devices
    pipeline_stages: PosInt = 1        # roofline what-if: stages a forward passes through

    @property
    def roofline(self) -> bool:
        return self.cost is None and self.profile is None and _roofline_source(self.model, self.dims)

    @model_validator(mode="after")
    def _one_source(self) -> "TargetSpec":
        if self.cost is not None and self.profile is not None:
            raise ValueError("give exactly one of `cost` or `profile`")
        if self.model is not None and (self.cost is not None or self.profile is not None):
            raise ValueError("give exactly one of `cost`, `profile` or `model`")
        if self.cost is None and self.profile is None and not self.roofline:
            raise ValueError("give exactly one of `cost`, `profile` or `model` (or full `dims`: "
                             "hidden, heads, intermediate, vocab) for a roofline estimate")
        if not self.roofline and (self.tensor_parallel > 1 or self.pipeline_stages > 1):
            raise ValueError("`tensor_parallel` and `pipeline_stages` are roofline what-ifs: they need `model` (or full `dims`)")
        return self


class DraftSpec(Strict):
    kind: str = drafters.NONE  # a kind of simspec.drafters (or "none")
    name: str | None = None
    cost: CostSpec | None = None
    profile: str | None = None
    exit_layer: PosInt | None = None
    vocab: PosInt | None = None
    model: str | None = None           # a roofline estimate on the drafter's device (as [target])
    dims: ModelDims | None = None
    dtype: Dtype = "bf16"

    @property
    def roofline(self) -> bool:
        return self.cost is None and self.profile is None and _roofline_source(self.model, self.dims)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        return drafters.check_name(v)

    @property
    def entry(self) -> drafters.Kind | None:
        return drafters.kind_of(self.kind)

    @model_validator(mode="after")
    def _check(self) -> "DraftSpec":
        k = self.entry
        if self.cost is not None and self.profile is not None:
            raise ValueError("give at most one of `cost` or `profile`")
        if self.model is not None and (self.cost is not None or self.profile is not None):
            raise ValueError("give at most one of `cost`, `profile` or `model`")
        if self.roofline and k is not None and not k.separate_model:
            raise ValueError(f"`model` / `dims` price a separate drafter model, not kind = '{self.kind}'")
        layered = k is not None and k.arg == "layer"
        if layered and self.exit_layer is None:
            raise ValueError(f"kind = '{self.kind}' needs `exit_layer`")
        if not layered and self.exit_layer is not None:
            layer_kinds = [n for n, x in drafters.KINDS.items() if x.arg == "layer"]
            raise ValueError(f"`exit_layer` only applies to kind = '{' or '.join(layer_kinds)}'")
        if k is not None and k.separate_model and self.cost is None and self.profile is None and not self.roofline:
            raise ValueError(f"kind = '{self.kind}' needs `cost` or `profile` (or `model` for a roofline estimate)")
        return self


class AcceptanceSpec(Strict):
    """Exactly one source of acceptance."""

    iid: Prob | None = None
    per_position: list[Prob] | None = Field(default=None, min_length=1)
    rank_probs: list[Prob] | None = Field(default=None, min_length=1)
    trace: str | None = None
    drafter: str | None = None
    # replay these traced sequences in this order (request i -> sequences[i % n]) instead of a
    # seeded shuffle: what `simspec validate` uses to simulate exactly the prompts it runs live
    sequences: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> "AcceptanceSpec":
        given = [k for k in ("iid", "per_position", "rank_probs", "trace")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `iid`, `per_position`, `rank_probs` or `trace`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.sequences is not None and self.trace is None:
            raise ValueError("`sequences` picks traced sequences: it needs `trace`")
        if self.rank_probs is not None and sum(self.rank_probs) > 1 + 1e-9:
            raise ValueError("`rank_probs` must sum to at most 1")
        if self.trace is not None and self.drafter is None:
            raise ValueError("`trace` needs `drafter` (the trace column to replay)")
        return self


class SpeculationSpec(Strict):
    draft_len: Annotated[int, Field(ge=0)] = 0
    tree: list[PosInt] | None = Field(default=None, min_length=1)
    # "after_prefill": the prefill makes the first token, rounds follow (vLLM, SGLang).
    # "with_prefill": the prefill IS the first round: the drafter drafts from the prompt and the
    # target verifies prompt + draft in one pass (transformers' assisted generation, simspec run).
    first_round: Literal["after_prefill", "with_prefill"] = "after_prefill"
    # Draft no deeper than a sequence's remaining budget minus one (the bonus token): the last
    # round of a batch whose sequences are all near their end drafts less (simspec run, transformers).
    clip_to_budget: bool = False


Positive = Annotated[float, Field(gt=0)]
Kernel = Literal["gemv", "gemm", "attention", "head"]


class EfficiencySpec(Strict):
    bw: Annotated[float, Field(gt=0)] = 0.8
    flops: Annotated[float, Field(gt=0)] = 0.6


class DeviceSpec(Strict):
    """A place forward passes run. A bare name (today's default) only carries busy time and
    price; `catalog` (simspec/devices/catalog.toml) or inline figures make it a device the
    roofline can price, and set the link transfers between devices cross."""

    memory_gb: NonNeg | None = None
    price_per_hour: NonNeg = 0.0       # default: the catalog entry's price, else 0
    catalog: str | None = None
    flops: dict[Dtype, Positive] | None = None      # peak dense FLOP/s per dtype
    memory_gb_s: Positive | None = None
    link_gb_s: Positive | None = None
    link_latency_us: NonNeg | None = None
    overhead_us: NonNeg | None = None
    layer_overhead_us: NonNeg | None = None
    sharpness: Annotated[float, Field(ge=1)] | None = None
    efficiency: dict[Kernel, EfficiencySpec] | None = None
    fit: str | None = None             # a profile measured on this device: fit efficiencies to it

    @field_validator("catalog")
    @classmethod
    def _known_device(cls, v: str | None) -> str | None:
        if v is not None:
            from simspec.devices import catalog

            if v not in catalog.names():
                raise ValueError(f"unknown catalog device {v!r} (catalog: {', '.join(catalog.names())})")
        return v

    @model_validator(mode="after")
    def _figures(self) -> "DeviceSpec":
        inline = [k for k in ("flops", "memory_gb_s", "link_gb_s", "link_latency_us", "overhead_us",
                              "layer_overhead_us", "sharpness", "efficiency", "fit") if getattr(self, k) is not None]
        if inline and self.catalog is None and (self.flops is None or self.memory_gb_s is None):
            raise ValueError(f"an inline device (`{inline[0]}` without `catalog`) needs `flops` and `memory_gb_s`")
        return self

    @property
    def priced(self) -> bool:
        """Has figures the roofline can price (a catalog entry or inline ones)."""
        return self.catalog is not None or self.flops is not None

    @property
    def price(self) -> float:
        """Per hour: as given, else the catalog entry's, else 0."""
        if "price_per_hour" in self.model_fields_set or self.catalog is None:
            return self.price_per_hour
        from simspec.devices import catalog

        return catalog.get(self.catalog).price_per_hour

    def info(self, name: str):
        """The catalog entry overridden by the inline figures (a simspec.devices DeviceInfo);
        None for a bare name."""
        if not self.priced:
            return None
        from simspec.devices import catalog

        d = dict(catalog.raw_entries()[self.catalog]) if self.catalog else {"title": name}
        for k in ("flops", "memory_gb_s", "link_gb_s", "link_latency_us", "overhead_us",
                  "layer_overhead_us", "sharpness"):
            v = getattr(self, k)
            if v is not None:
                d[k] = dict(v) if isinstance(v, dict) else v
        if self.efficiency is not None:
            d["efficiency"] = {**(d.get("efficiency") or {}),
                               **{k: e.model_dump() for k, e in self.efficiency.items()}}
        if self.memory_gb is not None:
            d["memory_gb"] = self.memory_gb
        if "price_per_hour" in self.model_fields_set:
            d["price_per_hour"] = self.price_per_hour
        return catalog.info_from_mapping(self.catalog or name, d)


class PlacementSpec(Strict):
    devices: dict[str, DeviceSpec] = Field(default_factory=lambda: {"dev0": DeviceSpec()})
    target: str = "dev0"
    draft: str | None = None  # default: the target's device
    overlap: bool = False
    replicas: PosInt = 1


# a token length: positive and far below what the samplers' int64 draws can hold
TokenLen = Annotated[int, Field(gt=0, le=10_000_000)]


class _Bounded(Strict):
    @model_validator(mode="after")
    def _order(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class UniformLen(_Bounded):
    dist: Literal["uniform"]
    min: TokenLen
    max: TokenLen


class LogNormalLen(_Bounded):
    dist: Literal["lognormal"]
    median: Annotated[float, Field(gt=0, le=10_000_000)]
    sigma: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    min: TokenLen = 1
    max: TokenLen = 1_000_000


LengthSpec = Union[TokenLen, Annotated[Union[UniformLen, LogNormalLen], Field(discriminator="dist")]]


def check_arrival(arrival: str | None, rate: float | None, concurrency: int | None) -> None:
    """The arrival keys that go together (a scenario's workload, a serving validation config)."""
    if arrival == "poisson" and rate is None:
        raise ValueError("arrival = 'poisson' needs `rate` (requests per second)")
    if arrival != "poisson" and rate is not None:
        raise ValueError("`rate` only applies to arrival = 'poisson'")
    if arrival != "closed" and concurrency is not None:
        raise ValueError("`concurrency` only applies to arrival = 'closed'")


class WorkloadSpec(Strict):
    requests: PosInt = 1
    arrival: Literal["closed", "poisson", "burst", "explicit"] = "closed"
    concurrency: PosInt | None = None
    rate: Annotated[float, Field(gt=0)] | None = None
    # arrival = "explicit": request i arrives at arrival_times[i] seconds (one per request,
    # non-decreasing): what `simspec validate` gives the simulator to replay a live run's arrivals
    arrival_times: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None
    prompt_len: LengthSpec | None = None
    output_len: LengthSpec | None = None
    dataset: Literal["sharegpt", "humaneval", "trace"] | None = None  # trace: lengths of the replayed sequences
    max_output_len: TokenLen | None = None

    @model_validator(mode="after")
    def _check(self) -> "WorkloadSpec":
        check_arrival(self.arrival, self.rate, self.concurrency)
        if self.arrival == "explicit":
            if self.arrival_times is None:
                raise ValueError("arrival = 'explicit' needs `arrival_times` (seconds, one per request)")
            if len(self.arrival_times) != self.requests:
                raise ValueError(f"`arrival_times` has {len(self.arrival_times)} times for {self.requests} requests")
            if any(b < a for a, b in zip(self.arrival_times, self.arrival_times[1:])):
                raise ValueError("`arrival_times` must be non-decreasing")
        elif self.arrival_times is not None:
            raise ValueError("`arrival_times` only applies to arrival = 'explicit'")
        if self.dataset is None and (self.prompt_len is None or self.output_len is None):
            raise ValueError("give `prompt_len` and `output_len`, or a `dataset`")
        return self


class ServingSpec(Strict):
    max_batch: PosInt = 1
    kv_capacity_tokens: PosInt | None = None
    kv_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    seed: Annotated[int, Field(ge=0)] = 0  # numpy's generators take non-negative seeds


class Scenario(Strict):
    target: TargetSpec
    draft: DraftSpec = DraftSpec()
    acceptance: AcceptanceSpec | None = None
    speculation: SpeculationSpec = SpeculationSpec()
    placement: PlacementSpec = PlacementSpec()
    workload: WorkloadSpec
    serving: ServingSpec = ServingSpec()

    @model_validator(mode="after")
    def _cross(self) -> "Scenario":
        spec = self.speculation
        speculating = spec.draft_len > 0 or spec.tree is not None
        if speculating and self.draft.entry is None:
            raise _KeyError("speculation.draft_len", "speculation needs a [draft] kind other than 'none'")
        if speculating and self.acceptance is None:
            raise _KeyError("acceptance", "speculation needs an [acceptance] section")
        if spec.tree is not None:
            if spec.draft_len not in (0, len(spec.tree)):
                raise _KeyError("speculation.tree", f"tree depth {len(spec.tree)} != draft_len {spec.draft_len}")
            acc = self.acceptance
            if acc is not None and acc.rank_probs is None and acc.trace is None:
                raise _KeyError("acceptance", "a tree needs `rank_probs` (or a trace): chain acceptance says nothing of ranks > 0")
            if self.placement.overlap:
                raise _KeyError("placement.overlap", "overlap is modelled for chains, not trees")
        if self.placement.overlap and (spec.first_round != "after_prefill" or spec.clip_to_budget):
            raise _KeyError("placement.overlap", "overlap is modelled with first_round = \"after_prefill\" and no clip_to_budget")
        pl = self.placement
        for key, dev in (("placement.target", pl.target), ("placement.draft", pl.draft)):
            if dev is not None and dev not in pl.devices:
                raise _KeyError(key, f"unknown device {dev!r} (devices: {', '.join(pl.devices)})")
        draft_dev = pl.draft or pl.target
        if pl.overlap and draft_dev == pl.target:
            raise _KeyError("placement.overlap", "overlap needs draft and target on different devices")
        if self.target.roofline and not pl.devices[pl.target].priced:
            raise _KeyError(f"placement.devices.{pl.target}", "a roofline target (`model` / `dims`) needs a device with `catalog` or inline `flops` and `memory_gb_s`")
        if self.draft.roofline and self.draft.entry is not None and not pl.devices[draft_dev].priced:
            raise _KeyError(f"placement.devices.{draft_dev}", "a roofline drafter (`model` / `dims`) needs a device with `catalog` or inline `flops` and `memory_gb_s`")
        k = self.draft.entry
        if k is not None and k.target_layers:
            if draft_dev != pl.target:
                raise _KeyError("placement.draft", "an early-exit drafter is the target's own layers: it runs on the target's device")
            if self.target.cost is not None and self.draft.cost is None and self.target.layers is None:
                raise _KeyError("target.layers", "an early-exit drafter with a synthetic target cost needs `target.layers` (or its own `draft.cost`)")
            if self.target.layers and self.draft.exit_layer > self.target.layers:
                raise _KeyError("draft.exit_layer", f"{self.draft.exit_layer} > target.layers {self.target.layers}")
        return self

    @property
    def gamma(self) -> int:
        """Draft tokens per sequence per round (tree depth for trees)."""
        if self.speculation.tree is not None:
            return len(self.speculation.tree)
        return self.speculation.draft_len if self.draft.entry is not None else 0

    @property
    def shape(self) -> TreeShape:
        """The round's tree (a chain of `gamma` tokens when no tree is given)."""
        tree = self.speculation.tree
        return TreeShape(tuple(tree)) if tree is not None else TreeShape.chain(self.gamma)


class _KeyError(ValueError):
    """A cross-section error that knows its own key (pydantic would blame the root)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def _loc(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a dotted TOML key (union branch names dropped)."""
    out: list[str] = []
    skip_tag = False
    for part in loc:
        text = str(part)
        if skip_tag:
            skip_tag = False
            continue
        if text.startswith("tagged-union"):
            skip_tag = True  # the next part is the tag value, not a key
            continue
        if isinstance(part, int):
            out[-1:] = [f"{out[-1]}[{part}]"] if out else [f"[{part}]"]
        elif text.startswith(("function-", "constrained-")) or text in ("int", "float", "str", "bool", "[key]"):
            continue
        else:
            out.append(text)
    return ".".join(out)


def _most_specific(errors: list[dict]) -> dict:
    """A typo inside a union member yields several errors; the deepest one names the key
    the user got wrong (an unknown key beats the 'missing' it caused)."""
    rank = {"extra_forbidden": 0, "missing": 1}
    return min(errors, key=lambda e: (-_loc(tuple(e.get("loc", ()))).count("."), rank.get(e.get("type"), 2)))


def _pydantic_error(file: str, err: ValidationError) -> InputError:
    first = _most_specific(err.errors())
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _KeyError):
        return InputError(file, inner.key, inner.reason)
    key = _loc(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif first.get("type") == "missing":
        msg = "required key is missing"
    else:
        msg = msg.removeprefix("Value error, ")
        if "input" in first and first.get("type") not in ("model_type",):
            msg = f"{msg} (got {first['input']!r})"
    return InputError(file, key or "(top level)", msg)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into one InputError line."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), None, "file not found")
    if p.is_dir():
        raise InputError(str(p), None, "is a directory, expected a TOML file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(p), None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputError(str(p), None, "not a text file") from None
    except RecursionError:
        raise InputError(str(p), None, "not valid TOML: nested too deeply") from None


def parse_scenario(data: dict[str, Any], file: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario mapping; relative data paths are resolved against `base_dir`."""
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(file, exc) from None
    except _KeyError as exc:  # raised outside pydantic's wrapping
        raise InputError(file, exc.key, exc.reason) from None
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    return parse_scenario(read_toml(p), str(p))


def resolve_data_path(ref: str, scenario_file: str | Path | None) -> Path:
    """A profile/trace path as written in a scenario: relative to the scenario file's folder
    when it exists there (a file's references belong to the file), else to the CWD."""
    p = Path(ref)
    if p.is_absolute() or scenario_file is None:
        return p
    alt = Path(scenario_file).parent / p
    try:
        return alt if alt.exists() else p
    except OSError:  # a name the file system cannot hold (too long): it exists nowhere
        return p
