"""Holdout check of a profile: time random off-grid points live and compare with the model.

Two parts: (1) >= 30 random points off the grid (decode/verify with q and context off-grid,
prefill with the prompt length off-grid), full model; (2) the decomposition
rest + l x layer + head(K) against a direct timing of the first l layers with a K-row head.
Every point -- holdout, drift probe, decomposition -- is timed with the timing protocol
(simspec.timing): interleaved passes in a new random order each, the fastest pass per point,
until odd and even passes agree or the budget ends. This VM has slow episodes of seconds to
minutes that slow every run of a point alike (one read a 1.45 s forward as 2.26 s), which
back-to-back runs cannot see and a capture taken at another time does not share; passes spread
across the whole check can. Decode points run over a KV cache settled by two runs at the grid's
largest q (profile.workloads.settle), as the capture's do.
The drift probes are grid points timed with the rest: the machine's drift since the capture. A
shared VM drifts: the same seed-0 points of Qwen2.5-1.5B read a median 10% slower at 06:29 than
at 06:14 on 2026-11-22, and the holdout errors carry that; the drift line says how much of an
error is the machine rather than the model. A profile captured before the protocol took the
fastest of 2-4 back-to-back runs: the protocol's minimum over more passes can sit below it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch

from simspec.models.loader import LoadedModel
from simspec.models.views import TrimmedHead, first_layers
from simspec.profile.costmodel import ProfileCostModel
from simspec.profile.forwards import Forward, Forwards
from simspec.timing.protocol import Protocol, Result, run


@dataclass
class CheckPoint:
    kind: str  # "decode", "prefill", "partial" (l layers, K head rows) or "grid" (drift)
    batch: int
    q: int
    context: int
    layers: int | None
    head_rows: int | None
    measured_s: float
    predicted_s: float
    noise: float = float("nan")  # (median - min) / min over the point's protocol passes

    @property
    def rel_error(self) -> float:
        return abs(self.predicted_s - self.measured_s) / self.measured_s

    def to_dict(self) -> dict:
        return {**asdict(self), "rel_error": self.rel_error}


@contextlib.contextmanager
def partial_model(model, layers: int, rows: int | None) -> Iterator[None]:
    """Inside: `model` runs its first `layers` layers and, unless `rows` is None, a head of
    its first `rows` rows (what rest + l x layer + head(K) prices)."""
    full = model.get_output_embeddings()
    with first_layers(model, layers):
        if rows is not None:
            model.set_output_embeddings(TrimmedHead(model, torch.arange(rows)))
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


def grid_points(cm: ProfileCostModel, n: int, seed: int, under_s: float = 1.0):
    """n random decode grid points whose profiled time is under `under_s` (drift probes)."""
    g = cm.meta["grid"]
    rng = random.Random(seed + 7919)
    cands = [(b, q, c) for b in g["batch"] for q in g["q"] for c in g["context"]
             if cm.latency_s("decode", b, q, c) < under_s]
    return rng.sample(cands, min(n, len(cands)))


def partial_pairs(cm: ProfileCostModel) -> list[tuple[int, int | None]]:
    """(l, K) pairs: early exits at 1/2, 3/4, L-1 with trimmed heads, and one full-depth K."""
    L, V = cm.num_layers, cm.vocab_size
    ks = [k for k in (1024, 4096, 16384, 32768) if k < V] or [V // 2]
    return [(L // 2, ks[0]), ((3 * L) // 4, ks[min(1, len(ks) - 1)]), (L - 1, None),
            (L, ks[-1]), (max(L // 4, 1), ks[min(2, len(ks) - 1)])]


def drift_probes(points: int) -> int:
    return points // 5


# Passes over at least two minutes (the hosts' slow phases last seconds to over a minute), at
# most ten; `--repeats N` runs exactly N passes instead.
PROTOCOL = Protocol(min_passes=4, max_passes=10, budget_s=900.0, min_seconds=120.0)


def check_steps(points: int, proto: Protocol = PROTOCOL) -> int:
    """Progress steps of run_check at most: the holdout points, the drift probes and the
    decomposition (5 pairs x 2 shapes), each once per pass, up to the protocol's max passes."""
    return proto.max_passes * (points + drift_probes(points) + 10)


def run_check(lm: LoadedModel, cm: ProfileCostModel, points: int = 30, repeats: int | None = None,
              seed: int = 0, step: Callable[[str], None] = lambda s: None,
              proto: Protocol = PROTOCOL) -> tuple[list[CheckPoint], Result]:
    """Time the holdout points, the drift probes and the decomposition pairs in one run of the
    timing protocol (`repeats`: exactly that many passes); (check points, protocol result)."""
    model = lm.model
    g = cm.meta["grid"]
    if repeats:
        proto = dataclasses.replace(proto, min_passes=repeats, max_passes=repeats)
    n_prefill = max(points // 5, 1)
    role: dict[Forward, tuple[str, int | None, int | None]] = {}  # forward -> (check kind, l, K)
    for kind, b, q, ctx in sample_points(cm, points - n_prefill, n_prefill, seed):
        role[Forward(kind, b, q, ctx)] = (kind, None, None)
    for b, q, ctx in grid_points(cm, drift_probes(points), seed):
        role.setdefault(Forward("decode", b, q, ctx), ("grid", None, None))
    # decomposition: first l layers + a K-row head, decode at batch 1 and a small verify
    for l, k in partial_pairs(cm):
        for b, q, ctx in ((1, 1, 512), (2, 4, 1024)):
            role[Forward("partial", b, q, ctx, layers=l, rows=k)] = ("partial", l, k)
    fws = list(role)
    fw = Forwards(lm, fws, seed=seed, settle_q=max(g["q"]),
                  around=lambda f: partial_model(model, f.layers, f.rows))
    try:
        res = run(fws, fw, proto, group=Forward.group, step=step, label=Forward.label)
    finally:
        fw.close()
    out = []
    for f, (kind, l, k) in role.items():
        price = ("prefill" if f.kind == "prefill" else "decode", f.batch, f.q, f.context)
        pred = cm.latency_s(*price, layers=l, head_rows=k) if kind == "partial" else cm.latency_s(*price)
        out.append(CheckPoint(kind, f.batch, f.q, f.context, l, k, res.estimate(f), pred, res.noise(f)))
    return out, res


def summarize(results: list[CheckPoint]) -> dict:
    """holdout and partial: relative errors; drift: the median of measured / profiled - 1 over
    the re-timed grid points, and the holdout errors with that factor taken out."""
    def stats(rs, scale: float = 1.0):
        errs = [abs(r.predicted_s * scale - r.measured_s) / r.measured_s for r in rs]
        return {"points": len(errs), "median_rel_error": statistics.median(errs),
                "max_rel_error": max(errs)} if errs else {"points": 0}

    holdout = [r for r in results if r.kind in ("decode", "prefill")]
    out = {"holdout": stats(holdout), "partial": stats([r for r in results if r.kind == "partial"])}
    grid = [r for r in results if r.kind == "grid"]
    if grid:
        drift = statistics.median(r.measured_s / r.predicted_s for r in grid) - 1.0
        out["drift"] = {"points": len(grid), "median": drift,
                        "holdout_without_drift": stats(holdout, 1.0 + drift)}
    return out
