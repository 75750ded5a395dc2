"""Scenario -> the parts the serving loop needs: cost models, round shape, oracle, KV budget."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from simspec.config import CostSpec, Scenario, resolve_data_path
from simspec.errors import InputError
from simspec.sim.acceptance import SurvivalOracle, chain_survival, tree_survival
from simspec.sim.costs import CostModel, ScaledCost, SyntheticCost, load_profile_cost
from simspec.sim.round_cost import RoundCost


def _synthetic(cost: CostSpec, total_layers: int | None = None) -> SyntheticCost:
    return SyntheticCost(cost.step_ms, cost.per_seq_ms, cost.per_token_ms, cost.per_kv_token_ms,
                         total_layers)


@lru_cache(maxsize=32)
def _load_profile(path: str, mtime_ns: int) -> CostModel:
    # A study simulates hundreds of trials on the same few profiles: parse and fit once.
    return load_profile_cost(path)


def _profile(ref: str, key: str, file: str | None) -> CostModel:
    path = resolve_data_path(ref, file)
    if not Path(path).exists():
        raise InputError(file, key, f"profile file not found: {ref}")
    try:
        return _load_profile(str(Path(path).resolve()), Path(path).stat().st_mtime_ns)
    except ModuleNotFoundError as exc:
        raise InputError(file, key, f"profile support is not installed ({exc.name})") from None


def target_cost(sc: Scenario, file: str | None) -> CostModel:
    if sc.target.cost is not None:
        return _synthetic(sc.target.cost, sc.target.layers)
    return _profile(sc.target.profile, "target.profile", file)


def draft_cost(sc: Scenario, target: CostModel, file: str | None) -> CostModel | None:
    d = sc.draft
    k = d.entry
    if k is None or sc.gamma == 0:
        return None
    if d.cost is not None:
        return _synthetic(d.cost)
    if k.model_free:
        return SyntheticCost(0.0)
    if k.target_layers:
        return ScaledCost(target, layers=d.exit_layer, head_rows=d.vocab)
    model = _profile(d.profile, "draft.profile", file)
    return ScaledCost(model, head_rows=d.vocab) if d.vocab else model


def round_shape(sc: Scenario) -> tuple[list[int], list[int], int]:
    """(query tokens per sequence at each draft step, tree nodes at depth 1..D, query tokens
    in the verify pass)."""
    if sc.gamma == 0:
        return [], [], 1
    shape = sc.shape
    nodes = shape.nodes_per_depth()
    return [1] + nodes[:-1], nodes, shape.size


def survival(sc: Scenario, depth: int) -> np.ndarray:
    """S_1..S_depth of a synthetic acceptance section."""
    acc = sc.acceptance
    if acc.iid is not None:
        return chain_survival([acc.iid], depth)
    if acc.per_position is not None:
        return chain_survival(acc.per_position, depth)
    children = list(sc.speculation.tree or [1] * depth)
    children += [1] * (depth - len(children))
    return tree_survival(children, acc.rank_probs)


def build_oracle(sc: Scenario, file: str | None, rng: np.random.Generator):
    if sc.gamma == 0:
        return None
    depth = sc.gamma + (1 if sc.placement.overlap else 0)
    acc = sc.acceptance
    if acc.trace is None:
        return SurvivalOracle(survival(sc, depth), rng)
    try:
        from simspec.trace.oracle import load_trace_oracle
    except ModuleNotFoundError:
        raise InputError(file, "acceptance.trace", "trace replay is not available in this build of simspec") from None
    return load_trace_oracle(sc, resolve_data_path(acc.trace, file), depth, rng, file)


def build_round_cost(sc: Scenario, file: str | None) -> RoundCost:
    tgt = target_cost(sc, file)
    drf = draft_cost(sc, tgt, file)
    levels, nodes, verify_q = round_shape(sc)
    pl = sc.placement
    k = sc.draft.entry
    drafting = k is not None and drf is not None
    return RoundCost(
        target=tgt,
        draft=drf,
        draft_prefill=drafting and k.separate_model,
        parallel_devices=(pl.draft or pl.target) != pl.target,
        level_queries=levels,
        verify_queries=verify_q,
        depth_nodes=nodes,
        draft_reads_prompt=drafting and k.reads_prompt,
        draft_catch_up=drafting and k.catch_up,
    )


def kv_capacity(sc: Scenario, cost: RoundCost, file: str | None) -> int | None:
    """KV tokens per replica: given, or derived from device memory and model dimensions."""
    if sc.serving.kv_capacity_tokens is not None:
        return sc.serving.kv_capacity_tokens
    dev = sc.placement.devices[sc.placement.target]
    if dev.memory_gb is None:
        return None
    dims = sc.target.dims
    per_token = getattr(cost.target, "kv_bytes_per_token", None)
    weights = getattr(cost.target, "weights_bytes", 0.0) or 0.0
    if dims is not None:
        per_token = 2 * dims.layers * dims.kv_heads * dims.head_dim * dims.dtype_bytes
        weights = dims.weights_gb * 1e9
    if not per_token:
        raise InputError(file, f"placement.devices.{sc.placement.target}.memory_gb",
                         "deriving KV capacity needs `target.dims` (or a profile with model dimensions)")
    if cost.draft is not None and (sc.placement.draft or sc.placement.target) == sc.placement.target:
        weights += getattr(cost.draft, "weights_bytes", 0.0) or 0.0
    free = dev.memory_gb * 1e9 * sc.serving.kv_memory_fraction - weights
    if free <= 0:
        raise InputError(file, f"placement.devices.{sc.placement.target}.memory_gb",
                         f"the weights ({weights / 1e9:.2f} GB) leave no room for a KV cache")
    return int(free // per_token)
