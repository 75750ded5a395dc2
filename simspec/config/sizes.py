"""A scenario's sizes against simspec.limits: every count that sizes an array or a loop
(requests, replicas, batch, draft depth, tree nodes, work, clock span) is refused past its
limit, naming its key, before the simulator allocates anything."""

from __future__ import annotations

from simspec import limits
from simspec.config.pydantic_errors import KeyedError

# a dataset's mean output length, for the work estimate (ShareGPT's replies average a few
# hundred tokens; HumanEval's solutions fewer): an upper guess, capped by max_output_len
DATASET_MEAN_OUTPUT = 1024


def check_sizes(sc) -> None:
    """Raise KeyedError(key, reason) for the first size of `sc` (a Scenario) past its limit."""
    wl = sc.workload
    checks = (
        ("workload.requests", wl.requests, limits.REQUESTS),
        ("placement.replicas", sc.placement.replicas, limits.REPLICAS),
        ("serving.max_batch", sc.serving.max_batch, limits.MAX_BATCH),
        ("speculation.draft_len", sc.speculation.draft_len, limits.GAMMA),
        ("speculation.tree", len(sc.speculation.tree or ()), limits.GAMMA),
        ("draft.exit_layer", sc.draft.exit_layer or 0, limits.LAYERS),
        ("target.layers", sc.target.layers or 0, limits.LAYERS),
        ("draft.vocab", sc.draft.vocab or 0, limits.VOCAB),
    )
    for key, value, limit in checks:
        why = limits.over(value, limit)
        if why is not None:
            raise KeyedError(key, why)
    if sc.speculation.tree is not None:
        why = limits.over(limits.tree_nodes(sc.speculation.tree), limits.TREE_NODES)
        if why is not None:
            raise KeyedError("speculation.tree", why.replace(" is above", "+ nodes is above", 1))
    why = limits.requests_memory(wl.requests)
    if why is not None:
        raise KeyedError("workload.requests", why)
    out = limits.mean_len(wl.output_len, DATASET_MEAN_OUTPUT)
    if wl.max_output_len is not None:
        out = min(out, wl.max_output_len)
    work = wl.requests * out
    if work > limits.SIM_TOKENS.value:
        raise KeyedError("workload.requests", f"{wl.requests:,} requests x ~{out:,.0f} output tokens: "
                         + limits.reason(round(work), limits.SIM_TOKENS))
    if wl.arrival == "poisson" and wl.rate is not None:
        why = limits.clock_reason(wl.requests / wl.rate, f"rate = {wl.rate:g} req/s for {wl.requests:,} requests")
        if why is not None:
            raise KeyedError("workload.rate", why)
    if wl.arrival_times:
        why = limits.clock_reason(max(wl.arrival_times), "arrival_times")
        if why is not None:
            raise KeyedError("workload.arrival_times", why)
