"""What a trace says, per drafter: mean tokens per round for chains g = 1..G, per-position
acceptance, trimmed-set coverage. Numpy only.

Mean tokens per round is the exact greedy replay of each sequence: start at position 1 (the
first token comes from prefill), each round emits min(run of rank-0, g) + 1 tokens (never past
the sequence's end); the figure is total emitted tokens / total rounds. This is what a batch-1
simulation of the same trace must reproduce.
"""

from __future__ import annotations

import numpy as np

from simspec import drafters
from simspec.trace.runs import replay_column, replayed_kind, zero_runs
from simspec.trace.schema import RANK_CAP, TARGET, Trace, parse_drafter


def replay_chain(run: np.ndarray, offsets: np.ndarray, g: int) -> tuple[int, int]:
    """(tokens emitted after prefill, rounds) of chain-g greedy speculative decoding."""
    tokens = rounds = 0
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        n, length = 1, b - a
        while n < length:
            emit = min(min(int(run[a + n]), g) + 1, length - n)
            n += emit
            tokens += emit
            rounds += 1
    return tokens, rounds


def _runs(trace: Trace, drafter: str) -> np.ndarray:
    replayed = replayed_kind(drafter)
    if replayed is not None:
        k, arg = replayed
        return replay_column(trace, k, int(arg) if arg else 0).astype(np.int64)
    return zero_runs(trace.ranks[drafter], trace.offsets)


def tokens_per_round(trace: Trace, drafter: str, gs=range(1, 9)) -> dict[int, float]:
    run = _runs(trace, drafter)
    # a chain longer than the longest accepted run replays exactly as that run's length: replay
    # each distinct effective length once (a long --g-max costs no more than the trace's runs)
    top = max(int(run.max()) if len(run) else 0, 1)
    memo: dict[int, float] = {}
    out = {}
    for g in gs:
        ge = min(g, top)
        if ge not in memo:
            t, r = replay_chain(run, trace.offsets, ge)
            memo[ge] = t / r if r else float("nan")
        out[g] = memo[ge]
    return out


def per_position(trace: Trace, drafter: str, depth: int = 8) -> list[float]:
    """P(draft token j accepted | tokens 1..j-1 accepted), j = 1..depth, over all positions."""
    run = _runs(trace, drafter)
    out = []
    for j in range(1, depth + 1):
        reach = (run >= j - 1).sum()
        out.append(float((run >= j).sum() / reach) if reach else float("nan"))
    return out


def coverage(trace: Trace) -> dict[int, float]:
    """Share of the target's generated tokens inside each trimmed set (from the target/kK columns)."""
    out = {}
    for d, r in trace.ranks.items():
        name = parse_drafter(d)
        if name.base == TARGET and name.k:
            out[name.k] = float((r < RANK_CAP).mean())
    return dict(sorted(out.items()))


def summary_rows(trace: Trace, gmax: int = 8, sizes: tuple[int, ...] = (2, 3)) -> list[dict]:
    """One row per rank column, plus the model-free drafters computed from the tokens (each
    n-sized one at every n of `sizes`: prompt lookup as ngram:2, ngram:3; suffix decoding at vLLM's
    default settings, its global tree over the earlier sequences in trace order)."""
    replayed = [k.column(n) for k in drafters.KINDS.values() if k.replayed
                for n in (sizes if k.arg == "n" else [None])]
    rows = []
    for d in [*trace.ranks, *replayed]:
        run = _runs(trace, d)
        tpr = tokens_per_round(trace, d, range(1, gmax + 1))
        if d in trace.ranks:
            r = trace.ranks[d]
            row = {"drafter": d, "top1": float((r == 0).mean()), "top4": float((r < 4).mean())}
        else:
            row = {"drafter": d, "top1": float((run >= 1).mean()), "top4": float("nan")}
        row.update({f"g{g}": v for g, v in tpr.items()})
        row["per_position"] = per_position(trace, d, min(gmax, 4))
        for (bd, t), b in trace.betas.items():
            if bd == d:
                row[f"beta@{t:g}"] = float(b.mean())
        rows.append(row)
    return rows
