"""Reading a finished study: feasibility, the best trial, the Pareto front, a flat table."""

from __future__ import annotations

import math
from typing import Any

from simspec.study import space
from simspec.study.evaluate import SCENARIO_KEY
from simspec.study.knobs import POLICY_PREFIX

CONSTRAINT_PREFIX = "constraints:"


def constraints(t) -> dict[str, float]:
    return {k[len(CONSTRAINT_PREFIX):]: v for k, v in t.system_attrs.items() if k.startswith(CONSTRAINT_PREFIX)}


def is_feasible(t) -> bool:
    return all(v <= 0 for v in constraints(t).values())


def complete(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def feasible_trials(study) -> list:
    return [t for t in complete(study) if is_feasible(t)]


def best_trial(study):
    """Single objective: the best feasible trial. Several: the Pareto trial best on the first."""
    sign = [1 if d.name == "MINIMIZE" else -1 for d in study.directions]
    cands = pareto(study) if len(sign) > 1 else feasible_trials(study)
    cands = [t for t in cands if t.values and not any(math.isnan(v) for v in t.values)]
    if not cands:
        return None
    return min(cands, key=lambda t: (sign[0] * t.values[0], t.number))


def pareto(study) -> list:
    """Feasible non-dominated trials (Optuna's `best_trials` already drops infeasible ones)."""
    if len(study.directions) == 1:
        b = best_trial(study)
        return [b] if b is not None else []
    return sorted(study.best_trials, key=lambda t: t.number)


def knobs(t) -> dict[str, Any]:
    """The trial's point, fixed knobs included (a one-value knob is no Optuna parameter: a
    study with `gamma = [3]` drafts 3 tokens in every trial); older studies: their parameters."""
    point = t.user_attrs.get("point")
    if isinstance(point, dict):
        return dict(point)
    return space.from_optuna_params(t.params)


def frame(study):
    """One row per trial: state, values, knobs, feasibility, simulated figures."""
    import pandas as pd

    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    policies = any("policy" in knobs(t) for t in study.get_trials(deepcopy=False))
    for t in study.get_trials(deepcopy=False):
        r: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, n in enumerate(names):
            r[n if n.startswith("value") else f"value_{n}"] = t.values[i] if t.values else float("nan")
        k = knobs(t)
        for key in space.PARAM_NAMES:
            if key == "policy" and not policies:
                continue  # a column only in studies that search policies (older tables unchanged)
            v = k.get(key)
            r[key] = None if v is None else str(v)
        for key, v in k.items():
            if key.startswith(POLICY_PREFIX):
                r[key] = v
        r["feasible"] = bool(t.state.name == "COMPLETE" and is_feasible(t))
        for key, v in constraints(t).items():
            r[f"constraint_{key}"] = v
        for key, v in (t.user_attrs.get("summary") or {}).items():
            if key != SCENARIO_KEY:  # a digest for the study's memo, not a figure
                r[key] = v
        if "replicas" in t.user_attrs:
            r["replicas"] = t.user_attrs["replicas"]
        r["invalid"] = t.user_attrs.get("invalid")
        r["duration_s"] = t.duration.total_seconds() if t.duration is not None else float("nan")
        rows.append(r)
    df = pd.DataFrame(rows)
    for col in ("exit_layer", "vocab", "gamma", "max_batch"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df
