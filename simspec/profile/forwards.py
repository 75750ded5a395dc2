"""A loaded model's forwards as the timing protocol's points (simspec.timing.protocol).

`Forwards` is the `measure(point)` the protocol calls: one timed forward of the point, split
into layers / head / rest by the PhaseTimer (profile.timer, the per-measurement primitive).
Decode and verify points of one (batch, context) share a KV cache: a group, which the protocol
runs together inside a pass; the cache is built and settled (profile.workloads.settle) when its
group comes up and dropped when the next one starts, so one cache is alive at a time however
many points a pass holds. Every split is kept, so a profile row holds the fastest run's split
and the spread of all of them.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass
from typing import Callable, ContextManager

from simspec.profile.timer import Measured, PhaseTimer, Split
from simspec.profile.workloads import CacheFlusher, FilledCache, decode_fn, head_fn, prefill_fn, settle


@dataclass(frozen=True)
class Forward:
    """One point: kind "decode" (q query tokens over `context` cached ones, q > 1 verifies),
    "prefill" (q = prompt length), "head" (the head alone over `batch` states, `rows` rows) or
    "partial" (a decode forward of the first `layers` layers with a `rows`-row head)."""

    kind: str
    batch: int
    q: int
    context: int = 0
    layers: int | None = None
    rows: int | None = None

    def group(self) -> tuple:
        """Points that share a KV cache run together: (batch, context) for forwards over a cache."""
        return ("cache", self.batch, self.context) if self.kind in ("decode", "partial") else (self,)

    def label(self) -> str:
        if self.kind == "prefill":
            return f"prefill b={self.batch} len={self.q}"
        if self.kind == "head":
            return f"head tokens={self.batch} rows={self.rows}"
        extra = f" l={self.layers} K={self.rows or 'all'}" if self.kind == "partial" else ""
        return f"{self.kind} b={self.batch} q={self.q} ctx={self.context}{extra}"


class Forwards:
    """`measure(point) -> seconds` over one loaded model; `splits[point]` keeps every run.

    `settle_q`: the query tokens the settling runs use (None: the largest q of the group's points
    seen so far in `points`); `around(point)`: a context to run a "partial" point in."""

    def __init__(self, lm, points: list[Forward], seed: int = 0, settle_q: int | None = None,
                 around: Callable[[Forward], ContextManager] | None = None) -> None:
        self.model, self.device, self.seed = lm.model, lm.device, seed
        self.timer = PhaseTimer(lm.model, lm.device)
        self.around = around or (lambda f: contextlib.nullcontext())  # for "partial" points
        self.settle_q: dict[tuple, int] = {}
        for f in points:
            g = f.group()
            self.settle_q[g] = settle_q or max(self.settle_q.get(g, 1), f.q)
        self.splits: dict[Forward, list[Split]] = {}
        self._group: tuple | None = None
        self._cache: FilledCache | None = None
        self._flush: CacheFlusher | None = None

    def _cache_for(self, f: Forward) -> FilledCache:
        if self._group != f.group():
            self._cache = None  # the old one's memory back before the new one's
            self._cache = FilledCache(self.model, f.batch, f.context, seed=self.seed)
            self._group = f.group()
            settle(self.model, self._cache, f.batch, self.settle_q.get(f.group(), f.q))
        return self._cache

    def __call__(self, f: Forward) -> float:
        if f.kind in ("decode", "partial"):
            cache = self._cache_for(f)
            cache.reset()
            with self.around(f) if f.kind == "partial" else contextlib.nullcontext():
                split = self.timer.time_once(decode_fn(self.model, cache, f.batch, f.q))
        elif f.kind == "prefill":
            split = self.timer.time_once(prefill_fn(self.model, f.batch, f.q))
        elif f.kind == "head":
            if self._flush is None:
                self._flush = CacheFlusher(self.device)
            self._flush()  # cold caches, as inside a forward (workloads.CacheFlusher)
            t = self.timer.time_once(head_fn(self.model, f.batch, f.rows)).total
            split = Split(total=t, layer=0.0, head=t, rest=0.0)  # the head alone: all head time
        else:
            raise ValueError(f"unknown forward kind {f.kind!r}")
        self.splits.setdefault(f, []).append(split)
        return split.total

    def measured(self, f: Forward) -> Measured:
        """The point's fastest run (and its split), with the median and max of all its runs."""
        return measured(self.splits[f])

    def close(self) -> None:
        self.timer.close()
        self._cache = None
        self._group = None


def measured(splits: list[Split]) -> Measured:
    """Measured from a point's runs: the fastest run's total and split, all totals as spread."""
    best = min(splits, key=lambda s: s.total)
    totals = tuple(s.total for s in splits)
    return Measured(total=best.total, total_median=statistics.median(totals), total_max=max(totals),
                    layer=best.layer, head=best.head, rest=best.rest, repeats=len(totals), totals=totals)
