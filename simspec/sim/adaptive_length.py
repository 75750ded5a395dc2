"""Adaptive draft length: each sequence's next draft length from an EMA of its accepted tokens.

The controller the `adaptive` policy runs, the same object in trace replay
(simspec.sim.dynamic_oracles) and in the live engine (simspec.live.policy_drafters), so a
replayed round and a live round choose the same length from the same history. In the spirit
of SGLang's adaptive speculative steps (PR #21599: an EMA of accept lengths picks one of the
pre-built step tiers, roughly round(ema) + 1) and of DiffuSpec's ADL / SpecDec++ (size the
next draft from recent acceptance); per sequence here, where SGLang keeps one EMA per batch.

Per sequence (a slot): e, the EMA of the draft tokens accepted per drafting round, and the
length it drafts next. After a round that drafted d > 0 tokens and had k accepted:
    e <- (1 - ema) * e + ema * k
    next length = the smallest tier >= e + margin (the largest tier if none)
A round that drafted nothing (clipped to the budget) teaches nothing and changes nothing.
Tiers: `tiers` lengths spread over 1..draft_len (every length when tiers >= draft_len), as
SGLang captures a CUDA graph per step tier. Numpy only; deterministic.
"""

from __future__ import annotations

import math

import numpy as np


def tier_lengths(draft_len: int, tiers: int) -> np.ndarray:
    """The lengths a sequence may draft: ceil(i * draft_len / tiers), i = 1..tiers, distinct."""
    t = min(tiers, draft_len)
    return np.unique([math.ceil(i * draft_len / t) for i in range(1, t + 1)]).astype(np.int64)


class AdaptiveLength:
    """Per-slot EMA controller; slots are handed out by `new` and never reused."""

    def __init__(self, draft_len: int, ema: float, start: int, margin: float, tiers: int) -> None:
        if draft_len < 1:
            raise ValueError(f"draft_len {draft_len} must be >= 1")
        self.tiers = tier_lengths(draft_len, tiers)
        self.ema, self.margin = float(ema), float(margin)
        first = min(int(start), draft_len)
        self._start_e = float(first)
        self._start_len = int(self.tiers[min(int(np.searchsorted(self.tiers, first)), len(self.tiers) - 1)])
        self.e = np.empty(0)
        self.length = np.empty(0, dtype=np.int64)

    def _pick(self, e: np.ndarray) -> np.ndarray:
        """The smallest tier >= e + margin, else the largest."""
        i = np.searchsorted(self.tiers, e + self.margin, side="left")
        return self.tiers[np.minimum(i, len(self.tiers) - 1)]

    def new(self, n: int) -> np.ndarray:
        """n fresh slots (a new request each): EMA at `start`, first length its tier."""
        base = len(self.e)
        self.e = np.concatenate([self.e, np.full(n, self._start_e)])
        self.length = np.concatenate([self.length, np.full(n, self._start_len, dtype=np.int64)])
        return np.arange(base, base + n, dtype=np.int64)

    def propose(self, slots: np.ndarray, cap: int) -> np.ndarray:
        """Draft tokens per slot this round, at most `cap`."""
        return np.minimum(self.length[np.asarray(slots, dtype=np.int64)], max(int(cap), 0))

    def update(self, slots: np.ndarray, proposed: np.ndarray, accepted: np.ndarray) -> None:
        """Feed back a round: `accepted` draft tokens of the `proposed` ones, per slot."""
        s = np.asarray(slots, dtype=np.int64)
        d = np.asarray(proposed, dtype=np.int64)
        k = np.minimum(np.asarray(accepted, dtype=np.int64), d)
        on = d > 0
        if not on.any():
            return
        s, k = s[on], k[on]
        e = (1.0 - self.ema) * self.e[s] + self.ema * k
        self.e[s] = e
        self.length[s] = self._pick(e)
