"""Token-budget trees: the level-uniform tree a node budget buys the most accepted tokens with.

The family is simspec's trees (simspec.tree_shape): `branching = (c_1..c_D)`, every node at
depth j-1 gets the drafter's top c_j tokens. Such a tree has sum_j prod_{i<=j} c_i nodes (the
root, the pending token, not counted: the budget is the draft tokens a round verifies) and,
when the target's token at each position falls at rank r with P(r < c) = cover[c]
independently of the position, accepts in expectation

    E[accepted] = sum_j prod_{i<=j} cover[c_i] = cover[c_1] (1 + cover[c_2] (1 + ...))

draft tokens per round (tokens per round = 1 + E). `best_tree` maximises E over every
level-uniform tree with at most `budget` nodes and depth at most `max_depth`, by dynamic
programming over (depth left, nodes on the current level, budget left), the nested form
above making each level's choice depend only on that state.

Relation to Sequoia (Chen et al. 2024): Sequoia's DP searches ARBITRARY trees (each node its
own number of children) under the same position-independent per-rank acceptance, so its
optimum is at least ours for the same budget. Here the family is restricted to the
level-uniform trees the live engine, trace replay and the engine exports all run (SGLang's
topk x steps, vLLM's `speculative_token_tree` of the same shape): a tree chosen here is
replayed exactly (simspec.trace.oracle) and exported unchanged. Ties go to the smaller tree
(fewer nodes, then shallower): a level that adds nothing is not drafted.

Numpy only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from simspec.limits import tree_nodes


def cover_from_ranks(ranks: np.ndarray, top: int) -> np.ndarray:
    """cover[c] = P(rank < c), c = 0..top, from the ranks of a trace column (every position
    weighs the same; a capped rank, "not in the top RANK_CAP", never counts as covered)."""
    r = np.asarray(ranks, dtype=np.int64).ravel()
    if len(r) == 0:
        raise ValueError("no traced positions")
    counts = np.bincount(np.clip(r, 0, top), minlength=top + 1)[:top]
    return np.concatenate([[0.0], np.cumsum(counts) / len(r)])


def cover_from_rank_probs(rank_probs: Sequence[float], top: int) -> np.ndarray:
    """cover[c] = sum of rank_probs[:c], c = 0..top (ranks past the list: never accepted)."""
    p = np.zeros(top, dtype=float)
    given = np.asarray(rank_probs, dtype=float)[:top]
    p[: len(given)] = given
    return np.concatenate([[0.0], np.cumsum(p)])


def nodes(branching: Sequence[int]) -> int:
    """Draft tokens of the tree (root excluded)."""
    return tree_nodes(branching) - 1


def value(branching: Sequence[int], cover: np.ndarray) -> float:
    """E[accepted draft tokens per round] of the tree under `cover` (the nested form, evaluated
    as best_tree evaluates it, so equal trees give bit-equal values)."""
    v = 0.0
    for c in reversed(list(branching)):
        v = float(cover[min(c, len(cover) - 1)]) * (1.0 + v)
    return v


class BudgetDP:
    """The DP over one `cover`, its memo shared by every (budget, max_depth) asked: the state
    (depth left, nodes on the level, budget left) does not depend on the budget asked, so the
    best tree of every budget 1..B and depth 1..D costs about one DP of B and D."""

    def __init__(self, cover: np.ndarray) -> None:
        self.cover = np.asarray(cover, dtype=float)
        self._top = len(self.cover) - 1
        self._memo: dict[tuple[int, int, int], tuple[float, int, int, tuple[int, ...]]] = {}

    def _q(self, c: int) -> float:
        return float(self.cover[min(c, self._top)])

    def _rest(self, depth_left: int, level: int, left: int) -> tuple[float, int, int, tuple[int, ...]]:
        """Best continuation below a level of `level` nodes with `left` nodes of budget:
        (value, -nodes, -depth, branching); the empty continuation is always allowed."""
        key = (depth_left, level, left)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        best: tuple[float, int, int, tuple[int, ...]] = (0.0, 0, 0, ())
        if depth_left > 0:
            for c in range(1, left // level + 1):
                n = level * c
                v, neg_n, neg_d, tail = self._rest(depth_left - 1, n, left - n)
                cand = (self._q(c) * (1.0 + v), neg_n - n, neg_d - 1, (c, *tail))
                if cand[:3] > best[:3]:
                    best = cand
        self._memo[key] = best
        return best

    def best(self, budget: int, max_depth: int) -> tuple[tuple[int, ...], float]:
        """The best tree of at most `budget` nodes and depth 1..max_depth: (branching, E)."""
        if budget < 1 or max_depth < 1:
            raise ValueError("a budget tree needs budget >= 1 and max_depth >= 1")
        first = None
        for c in range(1, budget + 1):  # depth >= 1: the first level is always drafted
            v, neg_n, neg_d, tail = self._rest(max_depth - 1, c, budget - c)
            cand = (self._q(c) * (1.0 + v), neg_n - c, neg_d - 1, (c, *tail))
            if first is None or cand[:3] > first[:3]:
                first = cand
        return first[3], first[0]


def best_tree(cover: np.ndarray, budget: int, max_depth: int) -> tuple[tuple[int, ...], float]:
    """The level-uniform tree of at most `budget` nodes and depth 1..max_depth maximising
    E[accepted] under `cover` (cover[c] = P(rank < c), nondecreasing, c = 0..len-1; a c past
    the end covers as much as the last). Returns (branching, E[accepted])."""
    return BudgetDP(cover).best(budget, max_depth)


def frontier(cover: np.ndarray, budget: int, max_depth: int) -> list[tuple[tuple[int, ...], float]]:
    """The best tree of every budget 1..`budget` and depth 1..`max_depth` (each once): the
    candidates a cost-aware choice weighs. A round's cost is (nearly) a function of its nodes
    and depth (verify: nodes + 1 query tokens; drafting: one step per level), so among trees of
    at most n nodes and depth d the one accepting most is the one worth pricing; exact when the
    draft step's cost does not depend on the level's width."""
    dp = BudgetDP(cover)
    seen: dict[tuple[int, ...], float] = {}
    for b in range(1, budget + 1):
        for d in range(1, max_depth + 1):
            tree, v = dp.best(b, d)
            seen.setdefault(tree, v)
    return list(seen.items())


def scenario_cover(sc, file: str | None, top: int) -> np.ndarray:
    """cover[c] = P(rank < c), c = 0..top, from a scenario's acceptance: its trace column's
    rank histogram over every traced position (the column its chain would replay), or its
    `rank_probs`. Any other acceptance is one line naming the key."""
    from simspec.errors import InputError

    acc = sc.acceptance
    name = sc.speculation.policy.name
    if acc is not None and acc.rank_probs is not None:
        return cover_from_rank_probs(acc.rank_probs, top)
    if acc is None or acc.trace is None:
        raise InputError(file, "acceptance", f"policy {name!r} picks a tree from per-rank acceptance: give `rank_probs` "
                                             "or a trace (`iid` / `per_position` say nothing of ranks > 0)")
    from simspec.sim.build import build_oracle

    chain = sc.with_({"speculation": {"policy": None, "draft_len": 1, "tree": None}}, file=file or "<scenario>")
    from simspec.trace.oracle import TraceOracle

    oracle = build_oracle(chain, file, np.random.default_rng(0))
    mode = oracle.mode if isinstance(oracle, TraceOracle) else None
    if mode != "rank":
        raise InputError(file, "acceptance.drafter", f"policy {name!r} needs a greedy rank column: {acc.drafter!r} "
                                                     "replays " + ("sampled (beta) acceptance" if mode == "beta"
                                                                   else "one chain (no ranks)"))
    return cover_from_ranks(oracle.values, top)


def resolve(sc, file: str | None) -> tuple[int, ...]:
    """The `budget_tree` policy's tree for scenario `sc` (simspec.policies: `resolve`)."""
    v = sc.speculation.policy.values()
    budget, depth = int(v["budget"]), int(v["max_depth"])
    branching, _ = _best_cached(tuple(scenario_cover(sc, file, budget).tolist()), budget, depth)
    return branching


@lru_cache(maxsize=256)
def _best_cached(cover: tuple[float, ...], budget: int, max_depth: int) -> tuple[tuple[int, ...], float]:
    # a study resolves the same (acceptance, budget, depth) many times
    return best_tree(np.asarray(cover), budget, max_depth)


_COST_CACHE: dict[tuple[str, str | None], tuple[int, ...]] = {}


def rate(sc, file: str | None, branching: Sequence[int], cover: np.ndarray, batch: int, context: int) -> float:
    """Tokens per second of one round of tree `branching` for `batch` sequences at `context`
    tokens, priced by the scenario's own cost model (draft steps, transfer, verify)."""
    from simspec.sim.build import build_round_cost
    from simspec.sim.static_policy import with_shape

    tree = list(branching)
    cost = build_round_cost(with_shape(sc, tree, file), file)
    ctx = cost.bucket(float(context))
    t = cost.draft_s(batch, ctx) + cost.transfer_s(batch) + cost.verify_s(batch, ctx)
    return batch * (1.0 + value(tree, cover)) / t if t > 0 else float("inf")


def resolve_cost(sc, file: str | None) -> tuple[int, ...]:
    """The `budget_tree_cost` policy: among the budget's DP trees (`frontier`), the one with the
    most tokens per second at the scenario's max_batch and the policy's `context`, priced by
    the scenario's cost model. A wider tree verifies more tokens: on a compute-bound target
    (fp32 on a CPU) the budget is then rarely worth spending whole."""
    key = (sc.model_dump_json(), file)
    hit = _COST_CACHE.get(key)
    if hit is not None:
        return hit
    v = sc.speculation.policy.values()
    budget, depth, context = int(v["budget"]), int(v["max_depth"]), int(v["context"])
    cover = scenario_cover(sc, file, budget)
    batch = sc.serving.max_batch
    cands = sorted(frontier(cover, budget, depth), key=lambda tv: (nodes(tv[0]), len(tv[0]), tv[0]))
    best = max(cands, key=lambda tv: rate(sc, file, tv[0], cover, batch, context))[0]  # first of equals: smallest
    if len(_COST_CACHE) >= 256:
        _COST_CACHE.pop(next(iter(_COST_CACHE)))
    _COST_CACHE[key] = best
    return best
