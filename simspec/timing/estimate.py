"""The fastest-state estimate of one point's samples, its noise figure, and split-half agreement.

Why the minimum (and not a low quantile or the median): on the shared hosts simspec runs on,
a neighbour on the same physical core puts the machine in slow phases of ~2x (a bf16 GEMM
43-45 ms <-> 85-95 ms, a GEMV 52-56 <-> 83-87 ms) that last from ~5 s to over a minute, and
sometimes a sustained slow state for many minutes; steal time is ~0 and CPU time is as noisy
as wall time. That noise is one-sided (nothing makes a forward faster than the machine's own
speed), and the fast state may hold for far fewer than half of the samples, so the median or
any quantile above the fast-state share reads the slow state. The minimum over repetitions
spread across time needs one sample in a fast phase per point; it is `timeit`'s rule ("the
lowest value gives a lower bound for how fast your machine can run the snippet; higher values
are typically caused by other processes interfering"). A low quantile of the 4-12 passes a
protocol affords would be the minimum or the second-lowest sample anyway, and the second-lowest
needs two fast-phase visits per point. What the minimum cannot see -- a run spent entirely in a
sustained slow state -- no estimator over that run can; the drift probes of `--check` and the
halves' agreement below are how a report shows it.

The noise figure is (median - min) / min: 0 on a quiet machine, ~1 when half the samples sat in a
2x slow phase. It is defined from two samples on (p90/p10 needs ~10 before it means anything).
"""

from __future__ import annotations

import statistics
from typing import Sequence


def fastest(samples: Sequence[float]) -> float:
    """The fastest-state estimate: the minimum over the samples."""
    if not samples:
        raise ValueError("no samples")
    return min(samples)


def noise(samples: Sequence[float]) -> float:
    """(median - min) / min of the samples: how far the typical sample sat above the fastest."""
    lo = fastest(samples)
    return (statistics.median(samples) - lo) / lo if lo > 0 else 0.0


def halves(samples: Sequence[float]) -> tuple[float, float] | None:
    """The estimates of the odd and the even passes (samples in pass order), or None under two."""
    if len(samples) < 2:
        return None
    return fastest(samples[0::2]), fastest(samples[1::2])


def disagreement(samples: Sequence[float]) -> float | None:
    """|a - b| / min(a, b) of the two halves' estimates, or None under two samples."""
    h = halves(samples)
    if h is None:
        return None
    a, b = h
    lo = min(a, b)
    return abs(a - b) / lo if lo > 0 else 0.0
