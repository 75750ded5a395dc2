"""Requests to serve: lengths and arrival times, drawn once from the seed.

Drawing the whole workload up front (rather than inside the event loop) keeps the loop
cheap and makes "same seed, same numbers" hold however the loop is scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simspec.config.workload import LogNormalLen, UniformLen, WorkloadSpec
from simspec.sim.datasets import length_pairs


@dataclass(frozen=True)
class Workload:
    prompt_len: np.ndarray   # int64[N]
    output_len: np.ndarray   # int64[N]
    arrival: np.ndarray      # float64[N]; for closed loops only the first `concurrency` matter
    mode: str                # closed | poisson | burst | explicit
    concurrency: int         # closed loop users (N for open loops)

    @property
    def n(self) -> int:
        return len(self.prompt_len)


def _lengths(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, int):
        return np.full(n, spec, dtype=np.int64)
    if isinstance(spec, UniformLen):
        lo, hi = sorted((spec.min, spec.max))
        return rng.integers(lo, hi + 1, size=n, dtype=np.int64)
    if isinstance(spec, LogNormalLen):
        x = np.round(spec.median * np.exp(spec.sigma * rng.standard_normal(n)))
        return np.clip(x, spec.min, spec.max).astype(np.int64)
    raise TypeError(f"unknown length spec {spec!r}")


def poisson_times(n: int, rate: float, seed: int = 0) -> list[float]:
    """n arrival times of a Poisson process of `rate` requests/s (the first after one gap), from
    their own generator: what a serving validation gives the live run and the simulator alike."""
    if rate <= 0:
        raise ValueError(f"rate {rate} must be > 0")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.cumsum(gaps).tolist()


def build_workload(spec: WorkloadSpec, seed: int,
                   trace_lengths: tuple[np.ndarray, np.ndarray] | None = None) -> Workload:
    """Draw lengths and arrival times for `spec.requests` requests.

    trace_lengths: (prompt, output) of the traced sequences requests 0..N-1 replay, needed
    (and only used) when `spec.dataset == "trace"`.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    n = spec.requests
    if spec.dataset is not None:
        if spec.dataset == "trace":
            if trace_lengths is None:
                raise ValueError('dataset = "trace" needs the lengths of the replayed trace')
            prompt, output = (np.asarray(a, dtype=np.int64).copy() for a in trace_lengths)
        else:
            pairs = length_pairs(spec.dataset)
            rows = pairs[rng.integers(0, len(pairs), size=n)]
            prompt, output = rows[:, 0].copy(), rows[:, 1].copy()
        # Explicit lengths override the dataset's (e.g. fixed output length over real prompts).
        if spec.prompt_len is not None:
            prompt = _lengths(spec.prompt_len, n, rng)
        if spec.output_len is not None:
            output = _lengths(spec.output_len, n, rng)
    else:
        prompt = _lengths(spec.prompt_len, n, rng)
        output = _lengths(spec.output_len, n, rng)
    if spec.max_output_len is not None:
        output = np.minimum(output, spec.max_output_len)
    if spec.arrival == "poisson":
        arrival = np.cumsum(rng.exponential(1.0 / spec.rate, size=n))
        conc = n
    elif spec.arrival == "explicit":
        arrival = np.asarray(spec.arrival_times, dtype=float)
        conc = n
    elif spec.arrival == "burst":
        arrival = np.zeros(n)
        conc = n
    else:
        conc = min(spec.concurrency or 1, n)
        arrival = np.zeros(n)
    return Workload(prompt, output, arrival, spec.arrival, conc)
