"""Closed forms of speculative decoding, used to check the simulator and to explain it.

References: Leviathan et al. 2023 (i.i.d. chain, speedup, Table 1); per-position chains as
engines log them (vLLM, llama.cpp); Sequoia's tree value G(T).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def chain_expected_tokens(alpha: float, gamma: int) -> float:
    """E[tokens per round] = (1 - a^(g+1)) / (1 - a): accepted drafts plus the bonus token."""
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def speedup(alpha: float, gamma: int, c: float) -> float:
    """Walltime improvement over plain decoding, c = draft step / target step."""
    return chain_expected_tokens(alpha, gamma) / (gamma * c + 1.0)


def per_position_expected_tokens(rates: Sequence[float]) -> float:
    """E = 1 + sum_k prod_{j<=k} a_j, with a_j the conditional acceptance at depth j."""
    return 1.0 + float(np.cumprod(np.asarray(rates, dtype=float)).sum())


def optimal_gamma(alpha: float, c: float, max_gamma: int = 32) -> tuple[int, float]:
    """The draft length that maximises speedup(alpha, gamma, c), and that speedup."""
    best = max(range(max_gamma + 1), key=lambda g: speedup(alpha, g, c))
    return best, speedup(alpha, best, c)


Tree = list  # a node is a list of child nodes; the i-th child has rank i (TreeShape.nested())


def tree_value(tree: Tree, rank_probs: Sequence[float]) -> float:
    """Sequoia's G(T): sum over nodes of the product of per-rank acceptance along the path.

    The root (the bonus token position) counts 1, so a chain of g nodes with p_0 = a gives
    (1 - a^(g+1)) / (1 - a).
    """
    p = list(rank_probs)

    def walk(children: Tree, weight: float) -> float:
        total = weight
        for rank, child in enumerate(children):
            pr = p[rank] if rank < len(p) else 0.0
            total += walk(child, weight * pr)
        return total

    return walk(tree, 1.0)


def expected_tokens_from_survival(survival: Sequence[float]) -> float:
    """E[tokens per round] = 1 + sum_k P(at least k drafts accepted)."""
    return 1.0 + float(np.sum(survival))


def predict(sc: Any, cost: Any) -> dict[str, float] | None:
    """Closed-form figures for a scenario with synthetic acceptance, or None if none apply.

    Throughput is predicted for one sequence at a time (batch 1, one replica), ignoring
    prefill, which is where the closed forms hold.
    """
    from simspec.sim.build import survival

    g = sc.gamma
    if g > 0 and (sc.acceptance is None or sc.acceptance.trace is not None):
        return None
    e = expected_tokens_from_survival(survival(sc, g)) if g > 0 else 1.0
    out = {"mean_tokens_per_round": e}
    single = sc.serving.max_batch == 1 and sc.placement.replicas == 1 and not sc.placement.overlap
    if single and not cost.context_dependent:
        t_round = cost.draft_s(1, 0) + cost.verify_s(1, 0)
        out["throughput_tok_s"] = e / t_round if t_round > 0 else float("inf")
        t_plain = cost.target.latency_s("decode", 1, 1, 0)
        out["speedup_vs_plain"] = (e / t_round) / (1.0 / t_plain) if t_round > 0 else float("inf")
    return out
