"""Suffix decoding replayed from a trace: a dynamic oracle (simspec.policies' contract).

Per traced position n the proposer (simspec.trace.suffix) gives `proposed[n]`, its draft's
length with max_spec_tokens = the scenario's gamma, and `accepted[n]`, the draft's common
prefix with the traced tokens. `propose(handles, positions, cap)` returns min(proposed, cap)
(the round's draft lengths); the next `draw` on the same handles returns min(accepted, that
proposal). Deterministic: no random numbers are drawn.

Exactness. The request trees need only the sequence itself; the global tree holds the outputs
of the traced sequences BEFORE this one in trace order (and this one's so far). So replay is
exact for the traced sequences run in trace order at batch 1 (`[acceptance] sequences =
[0, 1, ...]`, what `simspec validate` sets). At batch > 1 a live cache also holds the partial
outputs of the requests running beside it, and under a shuffled order other earlier outputs:
replay then keeps the trace-order cache, an approximation.
"""

from __future__ import annotations

import numpy as np

from simspec.errors import InputError
from simspec.trace.oracle import TraceOracle
from simspec.trace.schema import Trace
from simspec.trace.suffix import SuffixParams, replay

_CACHE: dict[tuple, tuple[Trace, np.ndarray, np.ndarray]] = {}  # the trace is kept: its id stays its own


def arrays(trace: Trace, params: SuffixParams, max_spec_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(proposed, accepted) over every traced position, memoised per trace, params and gamma."""
    key = (id(trace), params, max_spec_tokens)
    hit = _CACHE.get(key)
    if hit is None:
        seqs = [(trace.seq_prompt(i), trace.seq_tokens(i)) for i in range(trace.n_seq)]
        prop, acc = replay(seqs, params, max_spec_tokens)
        hit = _CACHE[key] = (trace, prop.astype(np.int64), acc.astype(np.int64))
    return hit[1], hit[2]


def accepted_runs(trace: Trace) -> np.ndarray:
    """Accepted counts at every traced position with vLLM's defaults (draft length up to the
    tree depth): what trace summaries and the exports' per-position rates read."""
    p = SuffixParams()
    return arrays(trace, p, p.max_tree_depth)[1]


class SuffixOracle(TraceOracle):
    """Replays suffix decoding's per-round draft lengths and accepted counts."""

    dynamic = True

    def __init__(self, trace: Trace, proposed: np.ndarray, accepted: np.ndarray, depth: int,
                 rng: np.random.Generator) -> None:
        super().__init__(trace, "lookup", accepted, [1] * depth, rng)
        self.proposed = proposed
        self._asked: tuple[np.ndarray, np.ndarray] | None = None  # (handles, proposals) of the last propose

    def _base(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        h = np.asarray(handles, dtype=np.int64)
        return self._start[h] + np.asarray(positions, dtype=np.int64) % self._len[h]

    def propose(self, handles: np.ndarray, positions: np.ndarray, cap) -> np.ndarray:
        """Draft tokens each sequence drafts this round, each in [0, cap]."""
        if len(handles) == 0:
            return np.zeros(0, dtype=np.int64)
        p = np.minimum(np.minimum(self.proposed[self._base(handles, positions)], self.depth),
                       np.maximum(np.asarray(cap, dtype=np.int64), 0))
        self._asked = (np.asarray(handles, dtype=np.int64).copy(), p)
        return p

    def draw(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        k = super().draw(handles, positions)  # the accepted count of a full draft (lookup mode)
        asked, self._asked = self._asked, None
        if asked is not None and np.array_equal(asked[0], np.asarray(handles, dtype=np.int64)):
            k = np.minimum(k, asked[1])
        return k


def load(sc, trace: Trace, depth: int, rng: np.random.Generator, file: str | None = None) -> SuffixOracle:
    """The oracle a scenario with [draft] kind = 'suffix' replays (its [draft] suffix keys)."""
    if sc.placement.overlap:
        raise InputError(file, "placement.overlap", "a suffix drafter chooses each round's length from the last "
                                                   "verdict: overlap is modelled for fixed chains")
    prop, acc = arrays(trace, sc.draft.suffix_params(), sc.gamma)
    return SuffixOracle(trace, prop, acc, depth, rng)
