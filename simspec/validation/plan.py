"""A validation plan: which live configurations to run, and the scenario that predicts each.

    name = "qwen1.5b-humaneval"
    target = "qwen2.5-coder-1.5b"
    trace = "traces/qwen2.5-coder-1.5b__humaneval.parquet"   # prompts + acceptance
    # traces = { fp32 = "traces/...-b1-fp32.parquet" }   # per dtype: the acceptance replayed for
                                    # that dtype's configs, decoded with the live run's numerics
                                    # (batch 1, that dtype); same prompts as `trace`
    prompts = 4                     # the first N traced sequences (or sequences = [..])
    max_new_tokens = 128
    # rounds = 3                    # live rounds: every config R times, each round in a seeded random
                                    # order (order_seed = S); simspec.validation.rounds combines them
    [profiles]                      # model -> dtype -> profile the simulator prices it with
    "qwen2.5-coder-1.5b" = { bf16 = "profiles/intel-xeon/qwen2.5-coder-1.5b-bf16.parquet" }
                                    # or "auto" (no [profiles] at all: auto for every model):
                                    # profiles/<machine>/<model>-<dtype>.parquet fitting this machine
    [[config]]
    dtype = "bf16"
    draft = "model:qwen2.5-coder-0.5b"   # none or a drafter kind: model:NAME | early_exit:L | ngram[:N]
    gamma = 4                             # or tree = [2, 2, 1]; vocab = K trims the head
    # name = "..." labels it; column = "..." names its trace column when not derivable
    # synthetic = "trace"                 # forced acceptance: the live run accepts, round for
                                          # round, what the simulator replays from the trace
                                          # (real kernels, batching and KV traffic; output text
                                          # meaningless, stop tokens ignored, traced lengths
                                          # decoded); the target may be random:<dims>

    [[config]]                            # a serving config: any of these keys makes one
    dtype = "bf16"
    draft = "early_exit:20"
    gamma = 3
    max_batch = 4                         # continuous batching, prefill-first
    arrival = "poisson"                   # or "closed" (concurrency = N users, default max_batch)
    rate = 0.5                            # poisson: requests/s; seed = S draws the arrivals
    requests = 16                         # the plan's traced prompts, cycled
    # kv_capacity_tokens = 4096           # admission holds prompt + output + tree size per request

    [[config]]                            # a pipeline config: drafter and target in two processes
    dtype = "bf16"
    draft = "model:qwen2.5-coder-0.5b"    # a separate drafter model, a chain (gamma)
    gamma = 4
    pipeline = "overlap"                  # or "sequential"; "overlap": PEARL's pre-drafting
    [pipeline]                            # where pipeline configs run (these are the defaults)
    target_core = 0                       # one core each, pinned
    draft_core = 1
    threads = 1                           # torch threads per process (price with profiles
                                          # captured at this many threads)

Live and simulated runs see the same prompts (the trace's own token ids), in the same order,
at batch 1, with the same stop tokens; the simulator replays those sequences' acceptance.
Replay is exact only when the trace was decoded with the live run's numerics: in bf16 a batch
of 16 and a batch of 1 round near-tied logits differently, and fp32 and bf16 greedy paths part,
so a `traces` entry per dtype names a trace captured at batch 1 in that dtype.
A serving config is served live by simspec.live.serving.serve and simulated with the same
policy (continuous batching, prefill-first, max_batch, KV capacity), the same requests
(request i: traced prompt i % n, its traced output length as max_new_tokens) and, for
poisson, the same arrival times (drawn once here, given to both).
Torch-free: the live half is in simspec.validation.live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from simspec import drafters
from simspec.config.fields import PosInt, Strict, TokenLen
from simspec.config.files import read_toml
from simspec.config.pydantic_errors import KeyedError, input_error
from simspec.config.workload import check_arrival
from simspec.drafters import DraftSpec
from simspec.errors import InputError
from simspec.sim.workload import poisson_times


class LiveConfig(Strict):
    dtype: Literal["bf16", "fp32"] = "bf16"
    draft: str = "none"
    gamma: Annotated[int, Field(ge=0)] = 0
    tree: list[PosInt] | None = Field(default=None, min_length=1)
    vocab: PosInt | None = None
    name: str | None = None
    column: str | None = None  # trace column, when the drafter's name there differs from its spec
    # serving (continuous batching): any of these keys makes a serving config
    max_batch: PosInt | None = None
    arrival: Literal["closed", "poisson"] | None = None
    concurrency: PosInt | None = None
    rate: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] | None = None
    requests: Annotated[int, Field(gt=0, le=100_000)] | None = None
    kv_capacity_tokens: PosInt | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    # two-process pipeline (simspec.live.pipeline), placed by the plan's [pipeline] table
    pipeline: Literal["sequential", "overlap"] | None = None
    # "trace": the live run's accept/reject decisions are forced to what the simulator replays
    # from the trace (simspec.live.synthetic), so only costs and serving dynamics are compared
    synthetic: Literal["trace"] | None = None
    # a policy (simspec.policies): a static one ({ name = "budget_tree", budget = 8 }) instead of
    # gamma / tree, resolved to its shape from the config's trace when the plan's inputs load
    # (simspec.validation.run.load_inputs); a dynamic one ({ name = "adaptive", ... }) beside a
    # gamma, its largest draft, choosing each round's draft live and in the simulator alike
    policy: dict[str, Any] | None = None

    @property
    def serving(self) -> bool:
        return any(getattr(self, k) is not None for k in SERVING_KEYS)

    @property
    def kind(self) -> str:
        """"batch-1", "serving" or "pipeline": which live run measures it and which row holds it."""
        return "serving" if self.serving else "pipeline" if self.pipeline else "batch-1"

    @property
    def overlap(self) -> bool:
        return self.pipeline == "overlap"

    @model_validator(mode="after")
    def _check(self) -> "LiveConfig":
        if self.serving:
            for k in ("max_batch", "arrival", "requests"):
                if getattr(self, k) is None:
                    raise ValueError(f"a serving config (it sets {self._serving_set()}) needs `{k}`")
            check_arrival(self.arrival, self.rate, self.concurrency)
            if self.arrival != "poisson" and self.seed is not None:
                raise ValueError("`seed` draws poisson arrivals: arrival = 'closed' takes none")
        try:
            k = DraftSpec.parse(self.draft).entry
        except InputError as exc:
            raise ValueError(f"draft {exc.reason}") from None
        if k is not None and k.live is None:
            raise ValueError(f"draft {self.draft!r} ({k.title}) has no live drafter in simspec (no weights to run "
                             "here): simulate it with `acceptance.per_position` instead")
        if self.policy is not None:
            self._check_policy(k)
        if k is None and (self.gamma or self.tree):
            raise ValueError("draft = 'none' takes no gamma or tree")
        if k is not None and not self.gamma and not self.tree and self.policy is None:
            raise ValueError(f"draft {self.draft!r} needs gamma >= 1 or a tree")
        if self.gamma and self.tree:
            raise ValueError("give gamma or tree, not both")
        if self.vocab is not None and (k is None or not k.trims_head):
            trimmable = " or ".join(n for n, x in drafters.KINDS.items() if x.trims_head)
            raise ValueError(f"vocab (a trimmed head) needs a {trimmable} drafter")
        if self.tree and k is not None and not k.trees:
            raise ValueError(f"{k.title or k.name} drafts chains only")
        if self.pipeline:
            self._check_pipeline(k)
        if self.synthetic and k is None:
            raise ValueError("synthetic = 'trace' forces a drafter's acceptance: give a draft (not 'none')")
        if self.synthetic and self.pipeline:
            raise ValueError("synthetic acceptance runs in the in-process engine: not with `pipeline`")
        if self.policy is not None:
            self._check_policy(k)
        return self

    def _check_policy(self, k) -> None:
        """The policy is registered, its parameters in range, and this config can run it."""
        from simspec.config.scenario import PolicySpec

        if not isinstance(self.policy.get("name"), str):
            from simspec import policies

            raise ValueError("policy.name: required, a registered policy's name "
                             f"({', '.join(policies.POLICIES)})")
        try:
            pol = PolicySpec.model_validate(self.policy).entry
        except ValidationError as err:
            e = err.errors()[0]
            inner = (e.get("ctx") or {}).get("error")
            if isinstance(inner, KeyedError):  # the policy's own key: speculation.policy.<param>
                raise ValueError(f"{inner.key.removeprefix('speculation.')}: {inner.reason}") from None
            where = ".".join(str(x) for x in e.get("loc", ()))
            raise ValueError(f"policy{'.' + where if where else ''}: {e.get('msg', '').removeprefix('Value error, ')}") from None
        if pol.kinds and (k is None or k.name not in pol.kinds):
            raise ValueError(f"policy.name: policy {pol.name!r} applies to draft kind "
                             + " or ".join(repr(x) for x in pol.kinds) + f", not {self.draft!r}")
        if self.pipeline:
            raise ValueError(f"policy.name: a pipeline config drafts a chain of gamma: no policy {pol.name!r}")
        if not pol.dynamic:
            if self.gamma or self.tree:
                raise ValueError(f"policy {pol.name!r} chooses the shape itself: give no gamma or tree beside it")
            return
        if pol.live is None:
            raise ValueError(f"policy.name: policy {pol.name!r} has no live drafter in simspec")
        if self.tree or not self.gamma:
            raise ValueError(f"policy.name: policy {pol.name!r} sizes chains: give gamma (its largest draft), not a tree")
        if self.synthetic:
            raise ValueError(f"policy.name: policy {pol.name!r} runs in the in-process engine by its own acceptance: "
                             "not with `synthetic`")

    @property
    def policy_params(self) -> dict[str, Any]:
        return {k: v for k, v in (self.policy or {}).items() if k != "name"}

    def _check_pipeline(self, k) -> None:
        """What simspec.live.pipeline runs: a separate drafter model, chains, batch 1, full heads."""
        if k is None or not k.separate_model:
            models = [f"{n}:NAME" for n, x in drafters.KINDS.items() if x.separate_model]
            raise ValueError(f"a pipeline config runs a drafter model in its own process: draft = "
                             f"{' or '.join(repr(m) for m in models)}, not {self.draft!r}")
        if self.tree or not self.gamma:
            raise ValueError("a pipeline config drafts chains: give gamma >= 1, not a tree")
        if self.vocab is not None:
            raise ValueError("a pipeline config runs the drafter's full head: no `vocab`")
        if self.serving:
            raise ValueError(f"a pipeline config runs batch 1: no serving keys (it sets {self._serving_set()})")

    @property
    def spec(self) -> DraftSpec:
        return DraftSpec.parse(self.draft)

    @property
    def draft_kind(self) -> str:
        return self.spec.kind

    @property
    def arg(self) -> str:
        return self.draft.partition(":")[2]

    @property
    def depth(self) -> int:
        return len(self.tree) if self.tree else self.gamma

    def _serving_set(self) -> str:
        return ", ".join(f"`{k}`" for k in SERVING_KEYS if getattr(self, k) is not None)

    @property
    def users(self) -> int:
        """Closed loop: the concurrent users (default max_batch)."""
        return self.concurrency or self.max_batch or 1

    def arrival_times(self) -> list[float] | None:
        """Poisson: the requests' arrival times, drawn once from `seed` by
        simspec.sim.workload.poisson_times; the live run and the simulator are both
        given this list. None for a closed loop (arrivals follow completions)."""
        if self.arrival != "poisson":
            return None
        return poisson_times(self.requests, self.rate, self.seed or 0)

    def label(self) -> str:
        base = self._label()
        if self.name:
            return base
        if self.pipeline:
            return f"{base} pipeline {self.pipeline}"
        if not self.serving:
            return base
        load = f"closed c{self.users}" if self.arrival == "closed" else f"poisson {self.rate:g}/s"
        kv = f" kv{self.kv_capacity_tokens}" if self.kv_capacity_tokens else ""
        seed = f" s{self.seed}" if self.seed else ""
        return f"{base} serve b{self.max_batch} {load} n{self.requests}{kv}{seed}"

    def _dynamic_policy(self) -> bool:
        from simspec import policies

        p = policies.POLICIES.get(str(self.policy.get("name"))) if self.policy is not None else None
        return p is not None and p.dynamic

    def _label(self) -> str:
        if self.name:
            return self.name
        k = self.spec.entry
        shape = "" if k is None else (
            f" tree{'-'.join(map(str, self.tree))}" if self.tree else f" g{self.gamma}")
        static = self.policy is not None and not self._dynamic_policy()
        if static:  # the same label before and after its shape is resolved
            shape = " " + "-".join([str(self.policy.get("name"))] + [f"{a}{v}" for a, v in sorted(self.policy.items())
                                                                     if a != "name"])
        draft = "plain" if k is None else k.label
        arg = "" if k is None else (self.arg.split("-")[-1] if k.arg == "model" else self.arg)
        head = f" K{self.vocab}" if self.vocab else ""
        forced = " synthetic" if self.synthetic else ""
        pol = ""
        if self.policy is not None and not static:
            given = ",".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                             for k, v in sorted(self.policy_params.items()))
            pol = f" {self.policy.get('name')}" + (f"({given})" if given else "")
        return f"{self.dtype} {draft}{(':' + arg) if arg else ''}{shape}{head}{forced}{pol}".strip()


SERVING_KEYS = ("max_batch", "arrival", "concurrency", "rate", "requests", "kv_capacity_tokens", "seed")


class PipelinePlacement(Strict):
    """Where the plan's pipeline configs run: the target and the drafter each in its own process,
    pinned to its own core, with `threads` torch threads (their profiles must be captured so)."""

    target_core: Annotated[int, Field(ge=0, le=4095)] = 0
    draft_core: Annotated[int, Field(ge=0, le=4095)] = 1
    threads: Annotated[int, Field(gt=0, le=4096)] = 1

    @model_validator(mode="after")
    def _check(self) -> "PipelinePlacement":
        if self.target_core == self.draft_core:
            raise ValueError(f"target_core and draft_core must differ (one core each), both are {self.target_core}")
        return self


class Plan(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    target: str
    trace: str
    traces: dict[Literal["bf16", "fp32"], str] | None = None  # dtype -> trace replayed for its configs
    prompts: Annotated[int, Field(gt=0, le=100_000)] | None = None
    sequences: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1)
    max_new_tokens: TokenLen = 128
    threads: PosInt | None = None
    rounds: Annotated[int, Field(gt=0, le=1000)] = 1  # live rounds, configs interleaved (--rounds overrides)
    order_seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0  # seeds each round's random order
    # model -> dtype -> profile path or "auto"; no [profiles] table: "auto" for every model
    profiles: dict[str, dict[Literal["bf16", "fp32"], str]] | None = None
    pipeline: PipelinePlacement | None = None  # pipeline configs' placement (None: the defaults)
    config: list[LiveConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "Plan":
        if (self.prompts is None) == (self.sequences is None):
            raise ValueError("give exactly one of `prompts` (the first N) or `sequences`")
        labels = [c.label() for c in self.config]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"two configs are both {sorted(dup)[0]!r}: give one a `name`")
        if self.pipeline is not None and not any(c.pipeline for c in self.config):
            raise KeyedError("pipeline", "[pipeline] places pipeline configs, but no [[config]] sets `pipeline`")
        return self

    @property
    def placement(self) -> PipelinePlacement:
        """The pipeline configs' placement: the plan's [pipeline] table, else its defaults."""
        return self.pipeline or PipelinePlacement()

    def seqs(self) -> list[int]:
        return list(self.sequences) if self.sequences is not None else list(range(self.prompts or 0))

    def trace_for(self, dtype: str) -> str:
        """The trace whose acceptance replays a config of `dtype` (its `traces` entry, else `trace`)."""
        return (self.traces or {}).get(dtype, self.trace)


def load_plan(path: str | Path) -> Plan:
    data = read_toml(path)
    try:
        return Plan.model_validate(data)
    except ValidationError as err:
        raise input_error(str(path), err) from None


def select(plan: Plan, wanted: str | None, file: str) -> list[LiveConfig]:
    """--configs: comma-separated labels or 1-based indices; all when None."""
    if not wanted:
        return list(plan.config)
    labels = [c.label() for c in plan.config]
    out = []
    for w in (x.strip() for x in wanted.split(",")):
        if w.isdigit() and 1 <= int(w) <= len(labels):
            out.append(plan.config[int(w) - 1])
        elif w in labels:
            out.append(plan.config[labels.index(w)])
        else:
            raise InputError(file, "--configs", f"{w!r} is neither 1..{len(labels)} nor one of {labels}")
    return out
