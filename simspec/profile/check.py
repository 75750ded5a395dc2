"""Holdout check of a profile: time random off-grid points live and compare with the model.

Two parts: (1) >= 30 random points off the grid (decode/verify with q and context off-grid,
prefill with the prompt length off-grid), full model; (2) the decomposition
rest + l x layer + head(K) against a direct timing of the first l layers with a K-row head.
Each point is timed with the protocol the profile was captured with (a KV cache settled by
two runs at the largest q, one warm-up, the grid's `runs` timed runs and, where the grid says
so, more until two agree; the fastest kept: profile.workloads.settle, profile.timer.measure), so the
error measures the cost model, not a difference of estimators: on this VM the first runs after
a new cache shape fault memory in and are slower, so the fastest of 7 runs sits below the
fastest of 2. `repeats` > the grid's runs gives that stricter reference instead.
"""

from __future__ import annotations

import contextlib
import random
import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch

from simspec.models.loader import LoadedModel
from simspec.models.views import TrimmedHead, first_layers
from simspec.profile.costmodel import ProfileCostModel
from simspec.profile.timer import PhaseTimer, measure
from simspec.profile.workloads import FilledCache, decode_fn, prefill_fn, settle


@dataclass
class CheckPoint:
    kind: str  # "decode", "prefill" or "partial" (l layers, K head rows)
    batch: int
    q: int
    context: int
    layers: int | None
    head_rows: int | None
    measured_s: float
    predicted_s: float

    @property
    def rel_error(self) -> float:
        return abs(self.predicted_s - self.measured_s) / self.measured_s

    def to_dict(self) -> dict:
        return {**asdict(self), "rel_error": self.rel_error}


@contextlib.contextmanager
def swapped_head(model, head) -> Iterator[None]:
    full = model.get_output_embeddings()
    model.set_output_embeddings(head)
    try:
        yield
    finally:
        model.set_output_embeddings(full)


def _off(values: list[int], lo: int, hi: int, rng: random.Random) -> int:
    """A random integer in [lo, hi] that is not a grid value."""
    choices = [v for v in range(lo, hi + 1) if v not in values]
    return rng.choice(choices)


def _log_uniform_off(values: list[int], rng: random.Random) -> int:
    lo, hi = min(values), max(values)
    while True:
        v = int(round(lo * (hi / lo) ** rng.random()))
        if v not in values and lo < v < hi:
            return v


def sample_points(cm: ProfileCostModel, n_decode: int, n_prefill: int, seed: int):
    g = cm.meta["grid"]
    rng = random.Random(seed)
    pts = []
    for _ in range(n_decode):
        b = rng.randint(min(g["batch"]), max(g["batch"]))
        q = _off(g["q"], min(g["q"]), max(g["q"]), rng)
        pts.append(("decode", b, q, _log_uniform_off(g["context"], rng)))
    for _ in range(n_prefill):
        b = rng.randint(min(g["prefill_batch"]), max(g["prefill_batch"]))
        pts.append(("prefill", b, _log_uniform_off(g["prefill_len"], rng), 0))
    return pts


def partial_pairs(cm: ProfileCostModel) -> list[tuple[int, int | None]]:
    """(l, K) pairs: early exits at 1/2, 3/4, L-1 with trimmed heads, and one full-depth K."""
    L, V = cm.num_layers, cm.vocab_size
    ks = [k for k in (1024, 4096, 16384, 32768) if k < V] or [V // 2]
    return [(L // 2, ks[0]), ((3 * L) // 4, ks[min(1, len(ks) - 1)]), (L - 1, None),
            (L, ks[-1]), (max(L // 4, 1), ks[min(2, len(ks) - 1)])]


def run_check(lm: LoadedModel, cm: ProfileCostModel, points: int = 30, repeats: int | None = None,
              seed: int = 0, step: Callable[[str], None] = lambda s: None) -> list[CheckPoint]:
    model = lm.model
    g = cm.meta["grid"]
    runs = repeats or int(g.get("runs", 2))
    long_s, long_runs = float(g.get("long_s", 1.0)), int(g.get("long_runs", 1))
    agree, max_runs = float(g.get("agree", 0.0)), int(g.get("max_runs", 0))
    timer = PhaseTimer(model, lm.device)

    def timed(fn, reset=None) -> float:
        return measure(timer, fn, runs, long_s, long_runs, reset=reset, warmup=1, agree=agree,
                       max_runs=max_runs).total

    n_prefill = max(points // 5, 1)
    results: list[CheckPoint] = []
    for kind, b, q, ctx in sample_points(cm, points - n_prefill, n_prefill, seed):
        if kind == "decode":
            cache = FilledCache(model, b, ctx, seed=seed)
            settle(model, cache, b, max(g["q"]))
            t = timed(decode_fn(model, cache, b, q), cache.reset)
            del cache
        else:
            t = timed(prefill_fn(model, b, q))
        pred = cm.latency_s(kind, b, q, ctx)
        results.append(CheckPoint(kind, b, q, ctx, None, None, t, pred))
        step(f"{kind} b={b} q={q} ctx={ctx}")
    # decomposition: first l layers + a K-row head, decode at batch 1 and a small verify
    for l, k in partial_pairs(cm):
        for b, q, ctx in ((1, 1, 512), (2, 4, 1024)):
            head = None if k is None else TrimmedHead(model, torch.arange(k))
            cache = FilledCache(model, b, ctx, seed=seed)
            settle(model, cache, b, max(g["q"]))
            with first_layers(model, l), (swapped_head(model, head) if head is not None
                                          else contextlib.nullcontext()):
                t = timed(decode_fn(model, cache, b, q), cache.reset)
            del cache
            pred = cm.latency_s("decode", b, q, ctx, layers=l, head_rows=k)
            results.append(CheckPoint("partial", b, q, ctx, l, k, t, pred))
            step(f"partial l={l} K={k} b={b} q={q}")
    timer.close()
    return results


def summarize(results: list[CheckPoint]) -> dict:
    def stats(rs):
        errs = [r.rel_error for r in rs]
        return {"points": len(errs), "median_rel_error": statistics.median(errs),
                "max_rel_error": max(errs)} if errs else {"points": 0}

    return {
        "holdout": stats([r for r in results if r.kind != "partial"]),
        "partial": stats([r for r in results if r.kind == "partial"]),
    }
