"""Speculation policies: how each round's shape is chosen, beyond a fixed gamma or tree.

A drafter kind (simspec.drafters) says WHO proposes tokens; a policy says HOW MANY and WHERE
FROM, per round: an adaptive draft length from the acceptance seen so far, the exit layer
chosen per round, a tree sized for a node budget. One `register(Policy(...))` per policy,
read by every stage: the scenario's `[speculation.policy]` table (`name` + parameters), the
study's knobs (each `Param`'s range), trace replay (`replay`), the live engine (`live`) and
the engine exports. Torch-free: `replay`, `live` and `resolve` are "module:function" strings
resolved only when used.

Exactness contract. Under greedy decoding the traced rank of the target's token at each
position decides acceptance for any shape, so a policy that chooses its shape from the history
so far replays exactly if replay and live run the SAME controller code over the SAME history.
A controller therefore keeps per-sequence state, is deterministic, and sees only what both
sides see: the shape it chose and the number of draft tokens accepted, round by round.

Dynamic oracles (per-round shapes) extend simspec.sim.acceptance.AcceptanceOracle with

    dynamic = True
    def propose(self, handles, positions, cap) -> np.ndarray:
        '''Draft tokens each sequence drafts this round (int64, each in [0, cap]; cap: the
        round's depth limit after clip-to-budget). The next draw() on the same handles returns
        accepted counts <= these and updates the controllers' state.'''

and the serving loop prices that round at the shape chosen (draft steps and verify tokens of
the deepest proposal: a batch is padded to one shape), never at a fixed gamma; a dynamic
oracle is simulated round by round (no jumps: its rounds are not independent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from simspec import drafters
from simspec.errors import InputError


@dataclass(frozen=True)
class Param:
    """One policy parameter: its type, the range a scenario may give and a study searches, its
    default and what it means (in messages and the README)."""

    name: str
    kind: type                   # int or float
    low: float
    high: float
    default: Any
    doc: str = ""
    log: bool = False            # searched on a log scale

    def check(self, value: Any, file: str | None, key: str) -> Any:
        """The value as its type, or one line naming the file, key and reason."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
            ok = False
        if not ok:
            raise InputError(file, key, f"{value!r} is not {'an integer' if self.kind is int else 'a number'}")
        v = self.kind(value)
        if v != v or not self.low <= v <= self.high:
            raise InputError(file, key, f"{value!r} outside {self.low:g}..{self.high:g} ({self.doc or self.name})")
        return v


@dataclass(frozen=True)
class Policy:
    """What one policy is, for every stage that treats policies differently."""

    name: str
    title: str
    params: tuple[Param, ...] = ()
    kinds: tuple[str, ...] = ()          # drafter kinds it applies to (empty: any kind)
    dynamic: bool = True                 # a shape per round (replayed by a dynamic oracle)
    replay: str | Callable | None = None   # (scenario, trace oracle inputs) -> dynamic oracle
    live: str | Callable | None = None     # wraps / makes the live drafter
    resolve: str | Callable | None = None  # static policies: (scenario, file) -> the shape to run
    vllm: str | None = None              # what the vLLM export writes, or why it cannot
    sglang: str | None = None
    trtllm: str | None = None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def values(self, given: dict[str, Any], file: str | None, key: str) -> dict[str, Any]:
        """Every parameter's value (given or default), each checked; unknown names refused."""
        for name in given:
            if self.param(name) is None:
                known = ", ".join(p.name for p in self.params) or "none"
                raise InputError(file, f"{key}.{name}", f"policy {self.name!r} has no parameter {name!r} (has: {known})")
        return {p.name: p.check(given[p.name], file, f"{key}.{p.name}") if p.name in given else p.default
                for p in self.params}

    def fn(self, what: str) -> Callable:
        """Its `replay`, `live` or `resolve` function ("module:function" resolved on use)."""
        return drafters.resolve_ref(getattr(self, what), f"policy {self.name!r}", what)


FIXED = "fixed"  # the scenario's own gamma / tree every round (no policy table)
POLICIES: dict[str, Policy] = {}


def register(policy: Policy) -> Policy:
    """Add (or replace) a policy; they list in messages as registered."""
    POLICIES[policy.name] = policy
    return policy


def names() -> list[str]:
    return [FIXED] + list(POLICIES)


def get(name: str, file: str | None = None, key: str = "speculation.policy.name") -> Policy:
    """The registered policy, or one line listing the names there are."""
    p = POLICIES.get(name)
    if p is None:
        raise InputError(file, key, f"unknown policy {name!r} (policies: {', '.join(names())})")
    return p


def _tree_kinds() -> tuple[str, ...]:
    from simspec import drafters

    return tuple(n for n, k in drafters.KINDS.items() if k.trees)


register(Policy(
    "budget_tree", "a token tree for a node budget (Sequoia-style DP, simspec.sim.budget_tree)",
    params=(Param("budget", int, 1, 64, 8, "draft tokens (tree nodes, root excluded) per round"),
            Param("max_depth", int, 1, 16, 8, "the tree's deepest level")),
    kinds=_tree_kinds(), dynamic=False, resolve="simspec.sim.budget_tree:resolve",
    vllm="the explicit token tree it resolves to", sglang="the explicit token tree it resolves to",
    trtllm="the explicit token tree it resolves to"))

register(Policy(
    "budget_tree_cost", "the budget tree with the most tokens per second under the scenario's cost model",
    params=(Param("budget", int, 1, 64, 8, "draft tokens (tree nodes, root excluded) per round at most"),
            Param("max_depth", int, 1, 16, 8, "the tree's deepest level"),
            Param("context", int, 1, 131072, 512, "context tokens a round is priced at")),
    kinds=_tree_kinds(), dynamic=False, resolve="simspec.sim.budget_tree:resolve_cost",
    vllm="the explicit token tree it resolves to", sglang="the explicit token tree it resolves to",
    trtllm="the explicit token tree it resolves to"))


# -- the policies -------------------------------------------------------------------------------

# Adaptive draft length (simspec.sim.adaptive_length): an EMA of each sequence's accepted
# tokens picks its next draft length among tiers up to draft_len. SGLang's adaptive steps
# (--speculative-adaptive, PR #21599) do this per batch from a JSON config; vLLM has no
# per-round draft length (num_speculative_tokens is fixed).
register(Policy(
    "adaptive", "adaptive draft length (EMA of accepted tokens)",
    # chain drafters traced and run live here (a model, early exit, n-gram lookup); not suffix
    # decoding, whose own replay already sizes each draft from its match (drafters.Kind.oracle)
    kinds=tuple(k.name for k in drafters.KINDS.values() if k.traced and k.live is not None and k.oracle is None),
    params=(
        Param("ema", float, 0.05, 1.0, 0.5, "weight of the newest round in the EMA of accepted tokens"),
        Param("start", int, 1, 64, 4, "first draft length (capped at draft_len)"),
        Param("margin", float, 0.0, 8.0, 1.0, "next length: smallest tier >= EMA + margin"),
        Param("tiers", int, 1, 64, 64, "draft lengths to choose among, spread over 1..draft_len"),
    ),
    replay="simspec.sim.dynamic_oracles:adaptive_replay",
    live="simspec.live.policy_drafters:adaptive_drafter",
    vllm="not expressible: vLLM drafts a fixed num_speculative_tokens every round",
    sglang="--speculative-adaptive with --speculative-adaptive-config (candidate step tiers, EMA of "
           "accept lengths; one EMA per batch, not per sequence)",
    trtllm="not expressible: TensorRT-LLM's max_draft_len is fixed per engine",
))

# Dynamic exit layer (simspec.sim.exit_choice): per round and sequence, the exit layer and the
# draft length of the largest expected tokens per unit cost, from running per-layer acceptance.
register(Policy(
    "dynamic_exit", "dynamic exit layer and draft length (DEL)", kinds=(drafters.layer_kind().name,),
    params=(
        Param("prior", float, 0.1, 100.0, 2.0, "optimistic pseudo-count of accepted tokens per layer", log=True),
        Param("decay", float, 0.5, 1.0, 1.0, "factor on a layer's counts before each update (1: no forgetting)"),
        Param("step_cost", float, 0.0, 4.0, 1.0, "a draft step at layer l costs step_cost * l / L target passes"),
        Param("min_layer", int, 0, 1024, 0, "shallowest candidate exit layer (0: any traced)"),
        Param("max_layer", int, 0, 1024, 0, "deepest candidate exit layer (0: any traced)"),
    ),
    replay="simspec.sim.dynamic_oracles:dynamic_exit_replay",
    live="simspec.live.policy_drafters:dynamic_exit_drafter",
    vllm="not expressible: vLLM has no early-exit self-speculation",
    sglang="not expressible: SGLang has no early-exit self-speculation",
    trtllm="not expressible: TensorRT-LLM has no early-exit self-speculation",
))
