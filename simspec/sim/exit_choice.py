"""Dynamic exit layer (DEL): per round and per sequence, which early-exit layer drafts and how deep.

The controller the `dynamic_exit` policy runs, the same object in trace replay
(simspec.sim.dynamic_oracles) and in the live engine (simspec.live.policy_drafters). After
DEL (Dynamic Exit Layer, 2025: per-layer acceptance tracked online picks the exit layer and the
draft length each round), reduced to what replay and a live run both observe: the chosen
layer's accepted count.

Per sequence and candidate layer l, running counts of accepted draft tokens (a) and of
rejections (r: rounds that stopped short of their draft), both multiplied by `decay` before
each update of that layer. Its per-token acceptance estimate is
    alpha_l = (prior + a) / (prior + a + r)
optimistic at the start (alpha = 1 until a rejection: every layer gets tried, deterministically).
A round at layer l drafting d tokens is expected to yield E = 1 + alpha + ... + alpha^d tokens
(accepted + the target's own) at a cost of 1 + step_cost * d * l / L target passes (L: the
target's layers; a draft step at layer l costs about l / L of a target pass). The controller
picks the (l, d), d = 0..cap, of the largest E / cost (d = 0: plain decoding, 1 / 1); ties go to
the shallower layer and then the shorter draft. Numpy only; deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def exit_passes(layer: np.ndarray, depth: np.ndarray) -> list[tuple[int, int]]:
    """(index into the layers, depth) of each drafting pass a round runs: one per layer some
    row chose to draft at, as deep as that layer's deepest row. What the live drafter runs and
    the simulator prices."""
    on = depth > 0
    return [(int(i), int(depth[on & (layer == i)].max())) for i in np.unique(layer[on])]


class ExitChoice:
    def __init__(self, layers: Sequence[int], total_layers: int, prior: float, decay: float,
                 step_cost: float) -> None:
        ls = [int(x) for x in layers]
        if not ls or ls != sorted(set(ls)) or ls[0] < 1 or ls[-1] >= total_layers:
            raise ValueError(f"exit layers {ls} must be distinct, increasing, within 1..{total_layers - 1}")
        self.layers = np.asarray(ls, dtype=np.int64)
        self.total = int(total_layers)
        self.prior, self.decay, self.step_cost = float(prior), float(decay), float(step_cost)
        self.acc = np.empty((0, len(ls)))
        self.rej = np.empty((0, len(ls)))
        self._frac = self.layers / float(self.total)  # a draft step's share of a target pass

    def new(self, n: int) -> np.ndarray:
        base = len(self.acc)
        m = len(self.layers)
        self.acc = np.concatenate([self.acc, np.zeros((n, m))])
        self.rej = np.concatenate([self.rej, np.zeros((n, m))])
        return np.arange(base, base + n, dtype=np.int64)

    def alpha(self, slots: np.ndarray) -> np.ndarray:
        """[b, layers] per-token acceptance estimates."""
        s = np.asarray(slots, dtype=np.int64)
        a = self.acc[s]
        return (self.prior + a) / (self.prior + a + self.rej[s])

    def propose(self, slots: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        """(index into `layers`, draft tokens) per slot, each draft in [0, cap]."""
        s = np.asarray(slots, dtype=np.int64)
        b, m, cap = len(s), len(self.layers), max(int(cap), 0)
        if b == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if cap == 0:
            return np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
        al = self.alpha(s)                                         # [b, m]
        powers = np.cumprod(np.repeat(al[:, :, None], cap, axis=2), axis=2)  # alpha^1..alpha^cap
        expected = 1.0 + np.cumsum(powers, axis=2)                 # d = 1..cap
        d = np.arange(1, cap + 1, dtype=np.float64)
        cost = 1.0 + self.step_cost * d[None, :] * self._frac[:, None]       # [m, cap]
        value = expected / cost[None]                              # [b, m, cap]
        flat = value.reshape(b, m * cap)                           # layer-major: shallower first
        best = flat.argmax(axis=1)
        top = flat[np.arange(b), best]
        layer = (best // cap).astype(np.int64)
        depth = (best % cap + 1).astype(np.int64)
        none = top <= 1.0  # plain decoding yields 1 token per pass: drafting must beat it
        return np.where(none, 0, layer), np.where(none, 0, depth)

    def update(self, slots: np.ndarray, layer: np.ndarray, proposed: np.ndarray, accepted: np.ndarray) -> None:
        s = np.asarray(slots, dtype=np.int64)
        li = np.asarray(layer, dtype=np.int64)
        d = np.asarray(proposed, dtype=np.int64)
        k = np.minimum(np.asarray(accepted, dtype=np.int64), d)
        on = d > 0
        s, li, d, k = s[on], li[on], d[on], k[on]
        self.acc[s, li] = self.decay * self.acc[s, li] + k
        self.rej[s, li] = self.decay * self.rej[s, li] + (k < d)
