"""Wall-clock timing of model phases on a device, split into layers and head by hooks.

On cpu the clock is perf_counter (ops run synchronously); on cuda it is CUDA events recorded
around each decoder layer and the LM head, with a synchronize before reading them. One forward
thus yields its total time, the mean time of one decoder layer, the head time, and the rest
(embedding, rotary, masks, final norm, Python), which is what the cost model decomposes.
"""

from __future__ import annotations

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
    totals: tuple[float, ...] = ()  # every run


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
