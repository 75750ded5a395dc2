"""Multi-fidelity trials (`simspec study --prune`): stop spending on clearly bad points.

A trial first simulates growing prefixes of the workload's requests (FRACTIONS of them) and
reports its objective after each; Optuna's SuccessiveHalvingPruner stops a trial whose value at
that size is worse than most trials before it at the same size. A trial it does not stop runs
the whole workload, and only complete trials are ranked, so the best trial is always evaluated
on the full workload. Single-objective studies only (Optuna prunes on one value; a Pareto front
is not pruned) and not --capacity (its probes are already a search).

Each trial records the requests it simulated (`REQUESTS`), a pruned one the prefix it stopped at
(`PRUNED_AT`), so the summary can say how many were pruned and what that saved.
"""

from __future__ import annotations

import math
from typing import Any

from simspec.study import objectives
from simspec.study.evaluate import Evaluator
from simspec.study.knobs import Point
from simspec.study.spec import StudySpec

FRACTIONS = (0.1, 0.3)    # the prefixes a trial runs before the whole workload (x3 each: the
                          # successive-halving rungs, reported at step = tenths of the workload)
PRUNED_AT = "pruned_at"   # user attr: requests of the prefix a pruned trial stopped at
REQUESTS = "requests_simulated"  # user attr: requests a trial simulated, prefixes included
FULL = "requests_full"    # user attr: requests of the trial's whole workload


def applies(spec: StudySpec, capacity: bool) -> bool:
    return not capacity and len(objectives.directions(spec)) == 1


def make_pruner(on: bool):
    import optuna

    if not on:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def prefixes(n: int) -> list[tuple[int, int]]:
    """(step, requests) of the prefixes a trial over n requests runs first (each smaller than
    n). The step is the prefix in tenths of the workload, so the pruner's rungs (min_resource 1,
    reduction factor 3: steps 1, 3, 9, ...) fall on the 10% and 30% prefixes."""
    out: dict[int, int] = {}
    for f in FRACTIONS:
        m = max(1, int(n * f))
        if m < n and m not in out.values():
            out[round(f * 10)] = m
    return sorted(out.items())


def run_prefixes(trial, spec: StudySpec, ev: Evaluator, p: Point) -> int:
    """Simulate the prefixes, reporting the objective after each; raise TrialPruned when the
    pruner says stop. Returns the requests simulated so far (the whole workload comes next)."""
    import optuna

    sc = ev.scenario(p)
    n = ev.workload(sc).n
    trial.set_user_attr(FULL, n)
    done = 0
    for step, m in prefixes(n):
        summary = ev.run(sc, requests=m)
        done += m
        value = objectives.values(spec, summary)[0]
        if math.isnan(value):
            continue  # nothing to compare at this size (no request finished): go on
        trial.report(value, step)
        if trial.should_prune():
            trial.set_user_attr(PRUNED_AT, m)
            trial.set_user_attr(REQUESTS, done)
            raise optuna.TrialPruned(f"stopped after {m} of {n} requests")
    return done


def savings(study) -> dict[str, Any] | None:
    """{pruned, trials, simulated, unpruned}: trials stopped early, trials that ran prefixes,
    the requests they simulated and the requests the same trials would have simulated without
    pruning (None when no trial ran prefixes)."""
    from optuna.trial import TrialState

    ran = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
           if REQUESTS in t.user_attrs]
    if not ran:
        return None
    pruned = sum(PRUNED_AT in t.user_attrs for t in ran)
    simulated = sum(int(t.user_attrs[REQUESTS]) for t in ran)
    unpruned = sum(int(t.user_attrs[FULL]) for t in ran)
    return {"pruned": pruned, "trials": len(ran), "simulated": simulated, "unpruned": unpruned}


def describe(study) -> str | None:
    """One line for the summary: how many trials were pruned and what that saved."""
    s = savings(study)
    if s is None:
        return None
    saved = 1 - s["simulated"] / s["unpruned"] if s["unpruned"] else 0.0
    return (f"pruned: {s['pruned']} of {s['trials']} trials stopped on a request prefix "
            f"({', '.join(f'{f:.0%}' for f in FRACTIONS)} of the workload, then all); "
            f"{s['simulated']:,} requests simulated instead of {s['unpruned']:,} ({saved:.0%} saved)")
