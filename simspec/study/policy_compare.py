"""Which speculation policy won a study that searched them (`[search] policy`), and why: the best
feasible trial of each policy on the first objective, with the two figures that explain a
policy's result, tokens per round (what its shapes get accepted) and time per round (what they
cost: TPOT p50 x tokens per round). "fixed" splits into a fixed chain and a static tree (the
`tree` knob), so a budget tree is compared with the hand-picked trees beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simspec import drafters, policies
from simspec.study import knobs, results
from simspec.study.spec import StudySpec


@dataclass
class PolicyBest:
    label: str          # "fixed chain", "static tree", or a policy's name
    number: int         # its best trial
    value: float        # the first objective
    tokens_per_round: float
    ms_per_round: float
    shape: str          # what it ran: "chain g4", "tree 2,2,1", "budget_tree -> tree 4,1,1"


def label(k: dict[str, Any]) -> str:
    name = k.get("policy") or policies.FIXED
    if name != policies.FIXED:
        return name
    kind = drafters.KINDS.get(str(k.get("drafter")))
    if kind is not None and kind.oracle is not None:  # sizes each draft itself: suffix decoding
        return kind.name
    return "fixed chain" if k.get("tree", "chain") in (None, "chain") else "static tree"


def shape(spec: StudySpec, k: dict[str, Any]) -> str:
    name = k.get("policy") or policies.FIXED
    if knobs.static_policy(k):
        from simspec.study.trial import scenario

        s = scenario(spec, k).shape
        return f"{name} -> {'chain g' + str(s.max_depth) if s.is_chain else 'tree ' + str(s)}"
    fixed = f"chain g{k.get('gamma')}" if k.get("tree", "chain") in (None, "chain") else f"tree {k['tree']}"
    return fixed if name == policies.FIXED else f"{name} (up to {fixed})"


def best_per_policy(spec: StudySpec, study) -> list[PolicyBest]:
    """The best feasible speculating trial of each policy, best first (empty when the study
    searched no policy)."""
    if not spec.file.search.policy:
        return []
    sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
    best: dict[str, Any] = {}
    for t in sorted(results.feasible_trials(study), key=lambda t: (sign * t.values[0], t.number)):
        k = results.knobs(t)
        if int(k.get("gamma", 0)) == 0 or not t.values or math.isnan(t.values[0]):
            continue
        best.setdefault(label(k), t)
    out = []
    for lab, t in best.items():
        s = t.user_attrs.get("summary") or {}
        tpr = float(s.get("mean_tokens_per_round", math.nan))
        out.append(PolicyBest(lab, t.number, float(t.values[0]), tpr, 1e3 * float(s.get("tpot_p50_s", math.nan)) * tpr,
                              shape(spec, results.knobs(t))))
    return out


def why(spec: StudySpec, rows: list[PolicyBest], objective: str) -> str | None:
    """One line: the winning policy against the runner-up policy's best trial."""
    if not rows:
        return None
    w = rows[0]
    head = f"{w.label} won ({w.shape}, trial #{w.number}): {objective} {w.value:.4g}"
    if len(rows) == 1:
        return head + f", {w.tokens_per_round:.2f} tokens per round at {w.ms_per_round:.1f} ms per round; no other policy had a feasible trial."
    r = rows[1]
    return (head + f" vs {r.value:.4g} for {r.label}'s best ({r.shape}, #{r.number}): {w.tokens_per_round:.2f} vs "
            f"{r.tokens_per_round:.2f} tokens per round at {w.ms_per_round:.1f} vs {r.ms_per_round:.1f} ms per round "
            "(TPOT p50 x tokens per round).")
