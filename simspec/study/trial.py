"""One point of the search space (knob values) -> its Scenario: the one place a trial's
parameters become a scenario.

The study's base scenario is parsed once, when the study loads, decoding plainly
(`StudySpec.base`). A point changes it through `Scenario.with_`: the drafter knobs (gamma,
drafter, exit_layer, vocab, tree) give [draft], [acceptance] and [speculation] together,
because one kind's cost and acceptance depend on all four; then each knob that changes a
section on its own (max_batch, placement, dtype: `knobs.Knob.apply`); then the caller's
changes (a capacity probe's rate and replicas, a schedule bucket's batch size). The result is
validated once, so an invalid point is one InputError naming the study file, key and reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simspec import drafters
from simspec.config import Scenario
from simspec.config.scenario import AcceptanceSpec, CostSpec
from simspec.errors import InputError
from simspec.sim.static_policy import resolved
from simspec.study import knobs
from simspec.study.knobs import Changes, Point, has_layer
from simspec.study.schema import DrafterSpec, StudySpec, parse_tree
from simspec.trace.suffix import PARAMS as SUFFIX_PARAMS


def scenario(spec: StudySpec, p: Point, *changes: Changes) -> Scenario:
    """The scenario of point `p`, with the caller's `changes` (`Scenario.with_`) applied last."""
    steps = drafter_changes(spec, p)
    for k in knobs.KNOBS:
        if k.apply is not None and k.name in p:
            steps += k.apply(spec, p)
    # a static policy's shape (a budget tree) written in: the trial simulates, and best.toml and
    # the exports hold, the very scenario the explicit tree would give
    return resolved(spec.base.with_(*steps, *changes, file=spec.where), spec.where)


def explicit_knobs(spec: StudySpec, p: Point) -> Point:
    """A static policy's point as the fixed knobs it resolves to (gamma = its depth, tree = its
    shape; policy knobs gone): what the engine exports write for a budget tree, which is the
    same static tree an explicit `tree` knob gives. Other points are returned as they are."""
    if not knobs.static_policy(p) or int(p.get("gamma", 0)) == 0:
        return p
    shape = scenario(spec, p).shape
    q = {k: v for k, v in p.items() if not k.startswith("policy")}
    q["gamma"] = shape.max_depth
    q.pop("tree", None)
    if not shape.is_chain:
        q["tree"] = str(shape)
    return q


SUFFIX_KEYS = tuple(key for key, *_ in SUFFIX_PARAMS)


def drafter_changes(spec: StudySpec, p: Point) -> list[Changes]:
    """[draft], [acceptance] and [speculation] of a point (none for plain decoding: the base)."""
    gamma = int(p.get("gamma", 0))
    if gamma == 0:
        return []
    kind = p.get("drafter")
    tree = parse_tree(p["tree"]) if p.get("tree", "chain") != "chain" else None
    speculation = {"speculation": {"draft_len": gamma, "tree": tree}}
    policy = knobs.policy_table(p)
    if policy is not None:  # a static policy picks its own shape: no gamma or tree beside it
        shape = {"draft_len": 0, "tree": None} if knobs.static_policy(p) else {}
        speculation = {"speculation": {**speculation["speculation"], **shape, "policy": policy}}
    ds = spec.file.drafters.get(kind)
    if ds is None:  # the base scenario's own drafter, as written there, with its acceptance
        return [{"draft": None}, {"draft": spec.own_draft}, speculation]
    draft: dict[str, Any] = {"kind": kind}
    if ds.name:
        draft["name"] = ds.name
    if ds.cost is not None:
        draft["cost"] = ds.cost
    if ds.profile is not None:
        draft["profile"] = ds.profile
    acc = ds.acceptance if ds.acceptance is not None else \
        AcceptanceSpec(iid=_interp(ds.acceptance_by_layer, p["exit_layer"]))
    if has_layer(kind):
        draft["exit_layer"] = int(p["exit_layer"])
    for key in SUFFIX_KEYS:  # suffix decoding's parameters: a point's knob, else the drafter's own
        v = p.get(key, getattr(ds, key, None))
        if v is not None:
            draft[key] = v
    trimmed = None
    if "vocab" in p:
        k = int(p["vocab"])
        if ds.vocab_size is None or k < ds.vocab_size:
            trimmed = draft["vocab"] = k
        if ds.coverage is not None and acc.trace is None:
            acc = _scale_acceptance(acc, _interp(ds.coverage, k, log_x=True))
        cost = _trimmed_head_cost(spec, ds, kind, draft, k)
        if cost is not None:
            draft["cost"] = cost
    if acc.trace is not None:
        acc = acc.model_copy(update={"drafter": _trace_column(spec, kind, acc.drafter, p, trimmed)})
    # both replaced whole: cleared, then given
    return [{"draft": None, "acceptance": None}, {"draft": draft, "acceptance": acc}, speculation]


def _interp(points: list[list[float]], x: float, log_x: bool = False) -> float:
    xs = np.array([pt[0] for pt in points], dtype=float)
    ys = np.array([pt[1] for pt in points], dtype=float)
    if log_x:
        xs, x = np.log(xs), math.log(x)
    return float(np.interp(x, xs, ys))


def _scale_acceptance(acc: AcceptanceSpec, factor: float) -> AcceptanceSpec:
    """Synthetic acceptance times the share of target tokens a trimmed head still holds."""
    update: dict[str, Any] = {}
    if acc.iid is not None:
        update["iid"] = acc.iid * factor
    for key in ("per_position", "rank_probs"):
        if getattr(acc, key) is not None:
            update[key] = [a * factor for a in getattr(acc, key)]
    if acc.imported is not None:  # the scaled list replaces the file's (exactly one source)
        update["imported"] = None
    return acc.model_copy(update=update)


def _trace_column(spec: StudySpec, kind: str, given: str | None, p: Point, trimmed: int | None) -> str:
    """The trace column a point replays: `exit<l>` for early exit, the given model name,
    `/k<K>` appended when the head is trimmed (the trace's naming); or a {knob} template."""
    if given and "{" in given:
        try:
            col = given.format(**p)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(spec.where, f"drafters.{kind}.acceptance.drafter",
                             f"cannot fill the trace column template: {exc}") from None
    else:
        k = drafters.get(kind)
        col = k.column(p["exit_layer"]) if k.arg == "layer" else (given or kind)
    if trimmed is not None and "/k" not in col:
        col += f"/k{trimmed}"
    return col


def _trimmed_head_cost(spec: StudySpec, ds: DrafterSpec, kind: str, draft: dict[str, Any], k: int) -> CostSpec | None:
    """Synthetic costs: the LM head's share scales with the rows kept (K / vocab_size). None
    when nothing changes (no head share given, or a profile prices the trimmed head itself)."""
    if ds.head_ms <= 0 or ds.vocab_size is None:
        return None
    keep = min(1.0, k / ds.vocab_size)
    entry = drafters.get(kind)
    cost: CostSpec | None = draft.get("cost")
    if entry.separate_model and cost is not None:
        return cost.model_copy(update={"step_ms": max(0.0, cost.step_ms - ds.head_ms * (1 - keep))})
    if entry.target_layers and cost is None:
        tc, layers = spec.base.target.cost, spec.base.target.layers
        if tc is None or not layers:
            return None  # a profile prices the trimmed head itself (head_rows)
        f = draft["exit_layer"] / layers
        return CostSpec(step_ms=max(0.0, (tc.step_ms - ds.head_ms) * f + ds.head_ms * keep),
                        per_seq_ms=tc.per_seq_ms * f, per_token_ms=tc.per_token_ms * f,
                        per_kv_token_ms=tc.per_kv_token_ms * f)
    return None
