"""The scenario schema: what one simulation is (target, drafter, acceptance, speculation,
placement, workload, serving), from a TOML file or a mapping to a typed, validated `Scenario`.

Unknown keys are errors, and every error names the file, the key and the reason, so a user
fixing a scenario never has to read a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from simspec import drafters
from simspec.config.device import DeviceSpec
from simspec.config.fields import Dtype, NonNeg, PosInt, Prob, Strict
from simspec.config.files import read_toml
from simspec.config.patch import deep_merge
from simspec.config.pydantic_errors import KeyedError, input_error
from simspec.config.sizes import check_sizes
from simspec.config.workload import WorkloadSpec
from simspec.errors import InputError
from simspec.tree_shape import TreeShape


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
    layers: PosInt | None = None       # a head's decoder layers at the target's dims (default: its kind's)
    # kind = 'suffix': vLLM's speculative_config keys, same names and ranges (simspec.trace.suffix)
    suffix_decoding_max_tree_depth: Annotated[int, Field(ge=1, le=256)] | None = None
    suffix_decoding_max_cached_requests: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    suffix_decoding_max_spec_factor: Annotated[float, Field(ge=0, le=64)] | None = None
    suffix_decoding_min_token_prob: Prob | None = None

    @property
    def roofline(self) -> bool:
        return self.cost is None and self.profile is None and _roofline_source(self.model, self.dims)

    def suffix_params(self):
        """The suffix drafter's SuffixParams: the keys given, vLLM's defaults for the rest."""
        from simspec.trace.suffix import PARAMS, SuffixParams

        given = {f: getattr(self, key) for key, f, *_ in PARAMS if getattr(self, key) is not None}
        return SuffixParams(**given)

    @property
    def from_target(self) -> bool:
        """A head priced as its layers of the target's own cost model (no cost, profile or dims)."""
        k = self.entry
        return k is not None and k.head and self.cost is None and self.profile is None and not self.roofline

    @property
    def head_layers(self) -> int:
        k = self.entry
        return self.layers or (k.head_layers if k is not None else 0)

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
        if self.roofline and k is not None and not k.prefills:
            raise ValueError(f"`model` / `dims` price a drafter model or head, not kind = '{self.kind}'")
        if k is not None and k.head and self.dims is not None and not self.dims.complete and self.model is None:
            raise ValueError(f"`dims` price kind = '{self.kind}' with the roofline: give hidden, heads, intermediate and vocab too")
        if self.vocab is not None and k is not None and k.head and not k.trims_head:
            raise ValueError(f"`vocab` trims a drafter's own LM head: kind = '{self.kind}' runs the target's")
        if self.layers is not None and (k is None or not k.head):
            heads = [n for n, x in drafters.KINDS.items() if x.head]
            raise ValueError(f"`layers` sizes a head over the target's hidden states (kind = '{' or '.join(heads)}')")
        if self.layers is not None and (self.roofline or self.cost is not None or self.profile is not None):
            raise ValueError("`layers` counts the target's layers a head runs: not with `cost`, `profile`, `model` or `dims` (give `dims.layers`)")
        suffix = [f for f in self.model_fields_set if f.startswith("suffix_decoding_")]
        if suffix and self.kind != "suffix":
            raise KeyedError(f"draft.{sorted(suffix)[0]}", f"applies to kind = 'suffix', not {self.kind!r}")
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
    # an acceptance file of `simspec acceptance import` (an engine's counters, a paper's list),
    # relative to the scenario or study file: read into `per_position` when validated
    imported: str | None = None

    @field_validator("imported")
    @classmethod
    def _readable(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            _imported_rates(v, info)  # every complaint about the file, keyed `acceptance.imported`
        return v

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> "AcceptanceSpec":
        given = [k for k in ("iid", "per_position", "rank_probs", "trace", "imported")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `iid`, `per_position`, `rank_probs`, `trace` or `imported`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.imported is not None:
            # the same per-position model as an inline list; not a field the file set, so a
            # dump of the set fields (Scenario.with_, a study's trials) reads the file again
            self.__dict__["per_position"] = _imported_rates(self.imported, info)
        if self.sequences is not None and self.trace is None:
            raise ValueError("`sequences` picks traced sequences: it needs `trace`")
        if self.rank_probs is not None and sum(self.rank_probs) > 1 + 1e-9:
            raise ValueError("`rank_probs` must sum to at most 1")
        if self.trace is not None and self.drafter is None:
            raise ValueError("`trace` needs `drafter` (the trace column to replay)")
        return self


def _imported_rates(ref: str, info: ValidationInfo) -> list[float]:
    """per_position of an acceptance file named in a scenario or study (`info.context["file"]`)."""
    from simspec.config.files import resolve_data_path
    from simspec.imported.record import load_rates

    file = (info.context or {}).get("file")
    try:
        return load_rates(resolve_data_path(ref, file))
    except InputError as exc:
        raise ValueError(exc.line()) from None


class PolicySpec(Strict):
    """`[speculation.policy]`: a registered policy (simspec.policies) and its parameters, e.g.
    `policy = { name = "adaptive", ema = 0.5 }`. Its keys besides `name` are the policy's."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    name: str

    @model_validator(mode="after")
    def _known(self) -> "PolicySpec":
        from simspec import policies

        key = "speculation.policy"
        try:
            policies.get(self.name, None, f"{key}.name").values(self.params, None, key)
        except InputError as exc:
            raise KeyedError(exc.key or key, exc.reason) from None
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as given (`values()` of the policy adds the defaults)."""
        return dict(self.model_extra or {})

    @property
    def entry(self):
        from simspec import policies

        return policies.get(self.name)

    def values(self) -> dict[str, Any]:
        """Every parameter of the policy: given or default, typed."""
        return self.entry.values(self.params, None, "speculation.policy")


class SpeculationSpec(Strict):
    # None: the fixed shape below every round; a table: a policy that chooses it (simspec.policies)
    policy: PolicySpec | None = None
    draft_len: Annotated[int, Field(ge=0)] = 0
    tree: list[PosInt] | None = Field(default=None, min_length=1)
    # "after_prefill": the prefill makes the first token, rounds follow (vLLM, SGLang).
    # "with_prefill": the prefill IS the first round: the drafter drafts from the prompt and the
    # target verifies prompt + draft in one pass (transformers' assisted generation, simspec run).
    first_round: Literal["after_prefill", "with_prefill"] = "after_prefill"
    # Draft no deeper than a sequence's remaining budget minus one (the bonus token): the last
    # round of a batch whose sequences are all near their end drafts less (simspec run, transformers).
    clip_to_budget: bool = False


class PlacementSpec(Strict):
    devices: dict[str, DeviceSpec] = Field(default_factory=lambda: {"dev0": DeviceSpec()})
    target: str = "dev0"
    draft: str | None = None  # default: the target's device
    overlap: bool = False
    replicas: PosInt = 1


class ServingSpec(Strict):
    max_batch: PosInt = 1
    kv_capacity_tokens: PosInt | None = None
    kv_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    seed: Annotated[int, Field(ge=0)] = 0  # numpy's generators take non-negative seeds
    # How the engine lays out a batch of sequences of different lengths. "packed": each
    # sequence reads only its own context (paged attention: vLLM, SGLang, TensorRT-LLM); a round
    # is priced at the batch's mean context, a prefill at the mean prompt. "padded": rows are
    # padded to the longest (HF batched generation, simspec's live loop): a round costs the
    # longest row's context, a prefill n prompts of the longest length.
    batch_layout: Literal["packed", "padded"] = "packed"


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
        check_sizes(self)  # before anything sized by them is built
        spec = self.speculation
        # a static policy (simspec.policies, dynamic=False) picks the shape itself, resolved
        # before the run (simspec.sim.static_policy): the scenario speculates without gamma
        static = spec.policy is not None and not spec.policy.entry.dynamic
        speculating = spec.draft_len > 0 or spec.tree is not None or static
        if speculating and self.draft.entry is None:
            raise KeyedError("speculation.draft_len", "speculation needs a [draft] kind other than 'none'")
        if speculating and self.acceptance is None:
            raise KeyedError("acceptance", "speculation needs an [acceptance] section")
        if spec.tree is not None:
            if spec.draft_len not in (0, len(spec.tree)):
                raise KeyedError("speculation.tree", f"tree depth {len(spec.tree)} != draft_len {spec.draft_len}")
            acc = self.acceptance
            if acc is not None and acc.rank_probs is None and acc.trace is None:
                raise KeyedError("acceptance", "a tree needs `rank_probs` (or a trace): chain acceptance says nothing of ranks > 0")
            if self.placement.overlap:
                raise KeyedError("placement.overlap", "overlap is modelled for chains, not trees")
        if spec.policy is not None:
            pol = spec.policy.entry
            if static and (spec.draft_len > 0 or spec.tree is not None):
                raise KeyedError("speculation.policy", f"policy {pol.name!r} chooses the shape itself: give no "
                                                       "`draft_len` or `tree` beside it")
            if not speculating:
                raise KeyedError("speculation.policy", f"policy {pol.name!r} chooses draft shapes: give `draft_len` (its "
                                                       "largest draft) or `tree` and a [draft] kind")
            if pol.kinds and (self.draft.entry is None or self.draft.kind not in pol.kinds):
                raise KeyedError("speculation.policy.name", f"policy {pol.name!r} applies to [draft] kind "
                                 + " or ".join(repr(k) for k in pol.kinds) + f", not {self.draft.kind!r}")
            if pol.dynamic and self.placement.overlap:
                raise KeyedError("placement.overlap", f"policy {pol.name!r} chooses each round's shape after the last "
                                                      "verdict: overlap is modelled for fixed chains")
        if self.placement.overlap and (spec.first_round != "after_prefill" or spec.clip_to_budget):
            raise KeyedError("placement.overlap", "overlap is modelled with first_round = \"after_prefill\" and no clip_to_budget")
        pl = self.placement
        for key, dev in (("placement.target", pl.target), ("placement.draft", pl.draft)):
            if dev is not None and dev not in pl.devices:
                raise KeyedError(key, f"unknown device {dev!r} (devices: {', '.join(pl.devices)})")
        draft_dev = pl.draft or pl.target
        if pl.overlap and draft_dev == pl.target:
            raise KeyedError("placement.overlap", "overlap needs draft and target on different devices")
        if self.target.roofline and not pl.devices[pl.target].priced:
            raise KeyedError(f"placement.devices.{pl.target}", "a roofline target (`model` / `dims`) needs a device with `catalog` or inline `flops` and `memory_gb_s`")
        if self.draft.roofline and self.draft.entry is not None and not pl.devices[draft_dev].priced:
            raise KeyedError(f"placement.devices.{draft_dev}", "a roofline drafter (`model` / `dims`) needs a device with `catalog` or inline `flops` and `memory_gb_s`")
        k = self.draft.entry
        acc = self.acceptance
        if speculating and k is not None and not k.traced and acc is not None and acc.trace is not None:
            raise KeyedError("acceptance.trace", f"kind = '{k.name}' ({k.title}) has no trace column (simspec cannot "
                                                 "run it here): give `per_position` (or `iid`) acceptance")
        if k is not None and k.head and not k.trees and spec.tree is not None:
            raise KeyedError("speculation.tree", f"kind = '{k.name}' ({k.title}) drafts chains only")
        if k is not None and k.crosses == "hidden" and pl.overlap:
            raise KeyedError("placement.overlap", f"kind = '{k.name}' reads the target's hidden states of a round: "
                                                  "it cannot draft the next round while that one verifies")
        if k is not None and self.draft.from_target:
            if draft_dev != pl.target:
                raise KeyedError("placement.draft", f"kind = '{k.name}' priced as the target's layers runs on the target's "
                                                    "device: give [draft] `dims` (or `cost`, `profile`) to place it elsewhere")
            if self.target.cost is not None and self.target.layers is None:
                raise KeyedError("target.layers", f"kind = '{k.name}' priced as the target's layers needs `target.layers` "
                                                  "with a synthetic target cost (or its own `draft.cost`)")
        if k is not None and k.target_layers:
            if draft_dev != pl.target:
                raise KeyedError("placement.draft", "an early-exit drafter is the target's own layers: it runs on the target's device")
            if self.target.cost is not None and self.draft.cost is None and self.target.layers is None:
                raise KeyedError("target.layers", "an early-exit drafter with a synthetic target cost needs `target.layers` (or its own `draft.cost`)")
            if self.target.layers and self.draft.exit_layer > self.target.layers:
                raise KeyedError("draft.exit_layer", f"{self.draft.exit_layer} > target.layers {self.target.layers}")
        return self

    @property
    def gamma(self) -> int:
        """Draft tokens per sequence per round (tree depth for trees)."""
        self._static_resolved()
        if self.speculation.tree is not None:
            return len(self.speculation.tree)
        return self.speculation.draft_len if self.draft.entry is not None else 0

    @property
    def shape(self) -> TreeShape:
        """The round's tree (a chain of `gamma` tokens when no tree is given)."""
        tree = self.speculation.tree
        return TreeShape(tuple(tree)) if tree is not None else TreeShape.chain(self.gamma)

    def _static_resolved(self) -> None:
        """A static policy's shape exists only once resolved: reading gamma before would
        silently decode plainly."""
        pol = self.speculation.policy
        if pol is not None and not pol.entry.dynamic:
            raise RuntimeError(f"policy {pol.name!r} is resolved before its shape is read "
                               "(simspec.sim.static_policy.resolved)")

    def with_(self, *changes: Mapping[str, Any], file: str = "<scenario>", **sections: Any) -> "Scenario":
        """This scenario changed, and validated again as a file would be: every error names
        `file`, the key and the reason. The typed way to derive one scenario from another (a
        study's trial, a capacity probe, a validation plan's config) instead of editing mappings.

        Each change is {section: value}: a section model (`DraftSpec(...)`, `sc.serving`)
        replaces the section; a mapping patches it as a study's [patch] does (nested tables
        merge, other values replace, None removes a key); None restores the section's default.
        `changes` apply in order, then `sections`; the result is validated once, so a step
        between two changes may be invalid. To replace a section by a mapping, clear it first:
            sc.with_({"draft": None}, {"draft": {"kind": "ngram"}}, file=f)
            sc.with_(serving={"max_batch": 8}, workload={"arrival": "poisson", "rate": 2.0, "concurrency": None}, file=f)
            sc.with_(acceptance=AcceptanceSpec(iid=0.6), speculation={"draft_len": 4}, file=f)
        Only the keys given (in the file or a change) are carried over, so defaults that depend
        on whether a key was given (a catalog device's price) stay defaults.
        """
        data = self.model_dump(exclude_unset=True)
        for change in (*changes, sections):
            data = deep_merge(data, change)
        return parse_scenario(data, file)


def parse_scenario(data: dict[str, Any], file: str = "<scenario>") -> Scenario:
    """Validate a scenario mapping; errors name `file` (its data paths stay as written:
    `files.resolve_data_path` finds them relative to the file when they are used; an
    `acceptance.imported` file is read now, as an inline list would be)."""
    try:
        sc = Scenario.model_validate(data, context={"file": file})
    except ValidationError as exc:
        raise input_error(file, exc) from None
    except KeyedError as exc:  # raised outside pydantic's wrapping
        raise InputError(file, exc.key, exc.reason) from None
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    return parse_scenario(read_toml(p), str(p))
