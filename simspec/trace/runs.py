"""Accepted-run arrays: for every traced position, how many draft tokens a chain starting
there gets accepted (before the cap at gamma). Rank columns give them by their leading
rank-0 run; model-free drafters by their replay rule over the tokens. Replay (oracle.py) and
the trace summary (summary.py) both read them from here. Numpy only.
"""

from __future__ import annotations

import numpy as np

from simspec import drafters
from simspec.trace.schema import Trace

_CACHE: dict[tuple, tuple[Trace, np.ndarray]] = {}  # the trace is kept: its id stays its own


def zero_runs(ranks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """run[i] = number of consecutive rank-0 positions starting at i, within i's sequence."""
    n = len(ranks)
    idx = np.arange(n, dtype=np.int64)
    fail = np.where(np.asarray(ranks) != 0, idx, n)
    next_fail = np.minimum.accumulate(fail[::-1])[::-1]
    seq_end = np.repeat(np.asarray(offsets[1:], dtype=np.int64), np.diff(offsets))
    return np.minimum(next_fail, seq_end) - idx


def _per_sequence(trace: Trace, key: tuple, resolve, arg: int, dtype) -> np.ndarray:
    """fn(prompt, tokens, arg) of every traced sequence, concatenated, fn = resolve() on a miss
    (memoised per trace; the entry holds the trace, so no other trace can take its id meanwhile)."""
    key = key + (id(trace), arg)
    hit = _CACHE.get(key)
    if hit is None:
        fn = resolve()
        parts = [fn(trace.seq_prompt(i), trace.seq_tokens(i), arg) for i in range(trace.n_seq)]
        hit = _CACHE[key] = (trace, np.concatenate(parts).astype(dtype))
    return hit[1]


def replay_column(trace: Trace, kind: drafters.Kind, arg: int) -> np.ndarray:
    """A model-free drafter's accepted lengths at every traced position, computed from the
    tokens themselves by the kind's replay rule (memoised per trace)."""
    if kind.oracle is not None:  # its own draft length per round: its default settings
        key = ("replay", kind.name, id(trace), arg)
        hit = _CACHE.get(key)
        if hit is None:
            hit = _CACHE[key] = (trace, np.asarray(kind.runs_fn()(trace)).astype(np.int16))
        return hit[1]
    return _per_sequence(trace, ("replay", kind.name), kind.replay_fn, arg, np.int16)


def proposed_column(trace: Trace, kind: drafters.Kind, arg: int) -> np.ndarray | None:
    """A model-free drafter's proposed lengths at every traced position (before the cap at
    gamma), or None when the kind always drafts the full length (memoised per trace)."""
    if kind.proposes is None:
        return None
    return _per_sequence(trace, ("proposed", kind.name), kind.proposes_fn, arg, np.int64)


def replayed_kind(column: str) -> tuple[drafters.Kind, str] | None:
    """(kind, arg) when `column` names a model-free drafter replayed from the tokens."""
    for k in drafters.KINDS.values():
        if k.replayed:
            arg = k.column_arg(column)
            if arg is not None:
                return k, arg
    return None
