"""Wall-clock timing of model phases on a device, split into layers and head by hooks.

On cpu the clock is perf_counter (ops run synchronously); on cuda it is CUDA events recorded
around each decoder layer and the LM head, with a synchronize before reading them. One forward
thus yields its total time, the mean time of one decoder layer, the head time, and the rest
(embedding, rotary, masks, final norm, Python), which is what the cost model decomposes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Split:
    """One timed forward, in seconds."""

    total: float
    layer: float  # mean of one decoder layer
    head: float
    rest: float


def cuda_unavailable(device: str) -> str | None:
    """Why `device` cannot be timed with CUDA events here (None: it can, or it is not cuda).
    `simspec profile --device cuda` and the CUDA tests report this instead of failing."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
        return f"torch ({build}) sees no CUDA device"
    idx = int(device.split(":")[1]) if ":" in device else 0
    if idx >= torch.cuda.device_count():
        return f"{device}: only {torch.cuda.device_count()} CUDA device(s)"
    return None


class _Clock:
    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def elapsed(self, a, b) -> float:
        if self.cuda:
            return a.elapsed_time(b) / 1000.0
        return b - a

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class PhaseTimer:
    """Hooks on the decoder layers and the head of one model; times whole forwards."""

    def __init__(self, model: nn.Module, device: str) -> None:
        self.model = model
        self.clock = _Clock(device)
        self._marks: list[tuple[str, object]] = []
        self._handles = []
        base = model.get_decoder()
        self._layers = base.layers
        for layer in self._layers:
            self._hook(layer, "layer")
        self._hook(model.get_output_embeddings(), "head")

    def _hook(self, module: nn.Module, tag: str) -> None:
        def pre(_m, _a):
            self._marks.append((tag + "<", self.clock.mark()))

        def post(_m, _a, _o):
            self._marks.append((tag + ">", self.clock.mark()))

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def time_once(self, fn: Callable[[], object]) -> Split:
        """Run fn (one model forward) and split its time."""
        self._marks = []
        self.clock.sync()
        start = self.clock.mark()
        fn()
        end = self.clock.mark()
        self.clock.sync()
        total = self.clock.elapsed(start, end)
        layers: list[float] = []
        head = 0.0
        opened: dict[str, object] = {}
        for tag, m in self._marks:
            kind, edge = tag[:-1], tag[-1]
            if edge == "<":
                opened[kind] = m
            elif kind == "layer":
                layers.append(self.clock.elapsed(opened.pop(kind), m))
            else:
                head += self.clock.elapsed(opened.pop(kind), m)
        layer = sum(layers) / len(layers) if layers else 0.0
        return Split(total=total, layer=layer, head=head, rest=total - sum(layers) - head)


@dataclass(frozen=True)
class Measured:
    """One grid point: the fastest run (and its split), with the median and max as spread."""

    total: float
    total_median: float
    total_max: float
    layer: float
    head: float
    rest: float
    repeats: int
    totals: tuple[float, ...] = ()  # every run, warm-ups included (for `merge`)

    def merge(self, total: float) -> "Measured":
        """This point with one more run of `total` seconds taken later (a second pass)."""
        totals = (self.totals or (self.total,)) + (total,)
        scale = min(total, self.total) / self.total if self.total > 0 else 1.0
        return Measured(
            total=min(totals), total_median=statistics.median(totals), total_max=max(totals),
            layer=self.layer * scale, head=self.head * scale, rest=self.rest * scale,
            repeats=self.repeats + 1, totals=totals,
        )


def measure(timer: PhaseTimer, fn: Callable[[], object], runs: int, long_s: float = 1.0,
            long_runs: int = 1, reset: Callable[[], None] | None = None,
            warmup: int = 1, agree: float = 0.0, max_runs: int = 0) -> Measured:
    """`warmup` runs, then `runs` timed ones (`long_runs` if the warm-up took over `long_s`);
    then, while the two fastest runs differ by more than `agree` (relative) and fewer than
    `max_runs` runs were made, one more; keep the fastest, the warm-ups included.

    On a shared CPU the noise is one-sided (other processes only slow a run down, and a
    descheduled OpenMP thread can stall a run several-fold), so the fastest run is the best
    estimate of the device's own cost. A warm-up can only be slower than the steady state,
    never faster, so counting it is free: for a long point with one timed run it halves the
    chance that a single stall is recorded (one such stall read 5.5 s for a 3.8 s forward).
    A fastest warm-up lends its total; the layer/head/rest split is the timed run's, scaled.
    Agreement instead of a fixed count spends runs where they matter: a quiet point is done
    after two, a point where one run stalled gets more until two runs agree.
    """
    n = runs
    warm: list[float] = []
    for i in range(warmup):
        if reset:
            reset()
        timer.clock.sync()
        t0 = time.perf_counter()
        fn()
        timer.clock.sync()  # cuda: the kernels' end, not their launch
        warm.append(time.perf_counter() - t0)
        if i == 0 and warm[0] > long_s:
            n = min(runs, long_runs)
    splits: list[Split] = []

    def spread() -> float:
        two = sorted([s.total for s in splits] + warm)[:2]
        return (two[1] - two[0]) / two[0] if len(two) == 2 and two[0] > 0 else 0.0

    while len(splits) < n or (agree > 0 and len(splits) + len(warm) < max_runs and spread() > agree):
        if reset:
            reset()
        splits.append(timer.time_once(fn))
    best = min(splits, key=lambda s: s.total)
    totals = [s.total for s in splits] + warm
    fastest = min(totals)
    scale = fastest / best.total if best.total > 0 else 1.0
    return Measured(
        total=fastest, total_median=statistics.median(totals), total_max=max(totals),
        layer=best.layer * scale, head=best.head * scale, rest=best.rest * scale, repeats=len(totals),
        totals=tuple(totals),
    )


def time_plain(fn: Callable[[], object], device: str, warmup: int, repeats: int,
               reset: Callable[[], None] | None = None, long_s: float = 1.5,
               long_runs: int = 3) -> list[float]:
    """Times of `fn` without hooks (used by --check, so hooks cannot bias the reference).

    Warm-up runs are timed too and returned first, so callers taking the fastest can use them.
    """
    clock = _Clock(device)
    out: list[float] = []
    n = warmup + repeats
    while len(out) < n:
        if reset:
            reset()
        clock.sync()
        a = clock.mark()
        fn()
        b = clock.mark()
        clock.sync()
        out.append(clock.elapsed(a, b))
        if len(out) == 1 and out[0] > long_s:
            n = min(n, long_runs)
    return out
