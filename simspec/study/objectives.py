"""Objectives and SLO constraints over the simulator's summary figures."""

from __future__ import annotations

import math
from typing import Any

from simspec.errors import InputError

METRICS = (
    "throughput_tok_s", "request_throughput_req_s",
    "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s",
    "mean_tokens_per_round", "mean_accepted_per_round", "cost_per_mtok",
)
ALIASES = {
    "throughput": "throughput_tok_s",
    "ttft_p99": "ttft_p99_s",
    "tpot_p99": "tpot_p99_s",
    "e2e_p99": "e2e_p99_s",
    "cost": "cost_per_mtok",
}


def metric(name: str) -> str:
    return ALIASES.get(name, name)


def check_metrics(spec) -> None:
    for section, keys in (("objectives", spec.file.objectives), ("constraints", spec.file.constraints)):
        for k in keys:
            if metric(k) not in METRICS:
                raise InputError(spec.where, f"{section}.{k}",
                                 f"unknown metric (known: {', '.join(list(ALIASES) + list(METRICS))})")
    seen = [metric(k) for k in spec.file.objectives]
    if len(set(seen)) != len(seen):
        raise InputError(spec.where, "objectives", "the same metric is named twice")


def objective_names(spec) -> list[str]:
    return [metric(k) for k in spec.file.objectives]


def directions(spec) -> list[str]:
    return list(spec.file.objectives.values())


def values(spec, summary: dict[str, Any]) -> list[float]:
    return [float(summary[m]) for m in objective_names(spec)]


def constraint_values(spec, summary: dict[str, Any]) -> dict[str, float]:
    """{metric: value}; <= 0 is feasible (Optuna's convention). NaN counts as a violation."""
    out = {}
    for k, c in spec.file.constraints.items():
        v = float(summary[metric(k)])
        if math.isnan(v):
            out[metric(k)] = 1.0
        elif c.max is not None:
            out[metric(k)] = v - c.max
        else:
            out[metric(k)] = c.min - v
    return out


def feasible(spec, summary: dict[str, Any]) -> bool:
    return all(v <= 0 for v in constraint_values(spec, summary).values())


def describe(spec) -> str:
    objs = ", ".join(f"{d} {metric(k)}" for k, d in spec.file.objectives.items())
    cons = ", ".join(f"{metric(k)} {'<=' if c.max is not None else '>='} {c.max if c.max is not None else c.min:g}"
                     for k, c in spec.file.constraints.items())
    return objs + (f" subject to {cons}" if cons else "")
