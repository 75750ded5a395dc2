"""Capacity planning: the fewest target replicas that serve a request rate within the SLOs.

For one configuration, replicas are searched by doubling then bisection (the SLO figures
improve with replicas); the study's sampler searches configurations for the smallest count
(Vidur-Search's question, asked through the same simulator). Falling behind the offered
rate shows as queueing, so the SLOs must include a TTFT or end-to-end limit (checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simspec.errors import InputError
from simspec.study import objectives
from simspec.study.evaluate import Evaluator
from simspec.study.knobs import Changes
from simspec.study.spec import StudySpec

QUEUEING_METRICS = ("ttft_p50_s", "ttft_p99_s", "e2e_p50_s", "e2e_p99_s")


@dataclass
class CapacityResult:
    replicas: int            # fewest feasible (max_replicas + 1 if none)
    feasible: bool
    score: float             # replicas + SLO headroom tie-break in [0, 0.5)
    summary: dict[str, Any]
    probes: dict[str, bool] = field(default_factory=dict)


def changes(spec: StudySpec, replicas: int) -> Changes:
    """The scenario changes of one capacity probe: the offered Poisson rate on `replicas` replicas."""
    cap = spec.file.capacity
    wl: dict[str, Any] = {"arrival": "poisson", "rate": cap.rate, "concurrency": None}
    if cap.requests is not None:
        wl["requests"] = cap.requests
    return {"workload": wl, "placement": {"replicas": replicas}}


def _ok(spec: StudySpec, summary: dict) -> bool:
    return objectives.feasible(spec, summary)


def _headroom(spec: StudySpec, summary: dict) -> float:
    """How close to its SLO limits a feasible point runs: max(value / limit) in [0, 1]."""
    worst = 0.0
    for k, c in spec.file.constraints.items():
        v = summary[objectives.metric(k)]
        if c.max is not None and c.max > 0:
            worst = max(worst, v / c.max)
        elif c.min is not None and v > 0:
            worst = max(worst, c.min / v)
    return min(1.0, max(0.0, worst))


def check(spec: StudySpec) -> None:
    if spec.file.capacity is None:
        raise InputError(spec.where, "capacity", "--capacity needs a [capacity] section with `rate` (requests/s)")
    if not any(objectives.metric(k) in QUEUEING_METRICS and c.max is not None
               for k, c in spec.file.constraints.items()):
        raise InputError(spec.where, "constraints",
                         "--capacity needs a limit that sees queueing: a `max` on ttft_p99_s, ttft_p50_s, e2e_p99_s or e2e_p50_s")


def fewest_replicas(spec: StudySpec, ev: Evaluator, p: dict[str, Any]) -> CapacityResult:
    cap = spec.file.capacity
    probes: dict[str, bool] = {}
    summaries: dict[int, dict] = {}

    def feasible(n: int) -> bool:
        s = ev.evaluate(p, changes(spec, n))
        summaries[n] = s
        probes[str(n)] = ok = _ok(spec, s)
        return ok

    lo, hi = 0, 1  # lo: known infeasible (0 = none tried), hi: candidate
    while not feasible(hi):
        lo = hi
        if hi >= cap.max_replicas:
            s = summaries[hi]
            return CapacityResult(cap.max_replicas + 1, False, cap.max_replicas + 1.0, s, probes)
        hi = min(cap.max_replicas, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    s = summaries[hi]
    return CapacityResult(hi, True, hi + 0.5 * _headroom(spec, s), s, probes)
