"""The search space: Optuna suggestions (define-by-run, conditional knobs) -> a scenario.

Knobs, in the order they are suggested:
  gamma        draft tokens per round, 0 = plain decoding (then no drafter knob exists)
  drafter      a kind of simspec.drafters                      (only when gamma > 0)
  exit_layer   the early-exit layer                           (only for a kind that exits early)
  vocab        trimmed LM-head rows K                          (only for drafters with `vocab_size`)
  tree_d<g>    'chain' or a tree shape of depth g              (only when shapes of depth g exist)
  max_batch, placement, dtype                                  (always, when searched)
A conditional knob has its own name, so each name always has one distribution, which is
what Optuna's samplers (and TPE's `group=True`) expect.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from simspec import drafters
from simspec.config import parse_scenario
from simspec.errors import InputError
from simspec.study import knobs
from simspec.study.knobs import drafter_choices, has_layer, has_vocab, int_values, tree_shapes  # noqa: F401
from simspec.study.schema import IntRange, StudySpec, parse_tree

PARAM_NAMES = knobs.NAMES


def suggest(trial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for one point of the space; returns {knob: value} (no tree_d prefix)."""
    p: dict[str, Any] = {}
    for k in knobs.KNOBS:
        if k.applies(spec, p):
            p[k.name] = k.suggest(trial, spec, p)
    return p


def to_optuna_params(p: dict[str, Any]) -> dict[str, Any]:
    """Knob values -> Optuna parameter names (for enqueue_trial)."""
    return {knobs.BY_NAME[k].optuna_name(p) if k in knobs.BY_NAME else k: v for k, v in p.items()}


def from_optuna_params(params: dict[str, Any]) -> dict[str, Any]:
    return {knobs.optuna_to_knob(k): v for k, v in params.items()}


# -- knob values -> scenario ---------------------------------------------------------

def _interp(points: list[list[float]], x: float, log_x: bool = False) -> float:
    xs = np.array([pt[0] for pt in points], dtype=float)
    ys = np.array([pt[1] for pt in points], dtype=float)
    if log_x:
        xs, x = np.log(xs), math.log(x)
    return float(np.interp(x, xs, ys))


def _scale_acceptance(acc: dict, factor: float) -> dict:
    out = dict(acc)
    if "iid" in out:
        out["iid"] = out["iid"] * factor
    if "per_position" in out:
        out["per_position"] = [a * factor for a in out["per_position"]]
    if "rank_probs" in out:
        out["rank_probs"] = [a * factor for a in out["rank_probs"]]
    return out


def build(spec: StudySpec, p: dict[str, Any]) -> dict[str, Any]:
    """The scenario mapping for one point (validated later by `parse_scenario`)."""
    d = copy.deepcopy(spec.base)
    spec_sec = dict(d.get("speculation") or {})
    spec_sec.pop("tree", None)
    gamma = int(p.get("gamma", 0))
    kind = p.get("drafter")
    if gamma == 0:
        d["draft"] = {"kind": "none"}
        spec_sec["draft_len"] = 0
    else:
        ds = spec.file.drafters.get(kind)
        if ds is not None:
            draft: dict[str, Any] = {"kind": kind}
            if ds.name:
                draft["name"] = ds.name
            if ds.cost is not None:
                draft["cost"] = ds.cost.model_dump()
            if ds.profile is not None:
                draft["profile"] = ds.profile
            if ds.acceptance is not None:
                acc = ds.acceptance.model_dump(exclude_none=True)
            else:
                acc = {"iid": _interp(ds.acceptance_by_layer, p["exit_layer"])}
            if has_layer(kind):
                draft["exit_layer"] = int(p["exit_layer"])
            trimmed = None
            if "vocab" in p:
                k = int(p["vocab"])
                if ds.vocab_size is None or k < ds.vocab_size:
                    trimmed = draft["vocab"] = k
                if ds.coverage is not None and "trace" not in acc:
                    acc = _scale_acceptance(acc, _interp(ds.coverage, k, log_x=True))
                _trim_head_cost(d, draft, ds, k, kind)
            if "trace" in acc:
                acc["drafter"] = _trace_column(spec, kind, acc.get("drafter"), p, trimmed)
            d["draft"] = draft
            d["acceptance"] = acc
        spec_sec["draft_len"] = gamma
        if p.get("tree", "chain") != "chain":
            spec_sec["tree"] = parse_tree(p["tree"])
    d["speculation"] = spec_sec
    for k in knobs.KNOBS:  # the knobs that patch a section on their own, in order
        if k.apply is not None and k.name in p:
            d = k.apply(spec, p, d)
    return d


def _trace_column(spec: StudySpec, kind: str, given: str | None, p: dict[str, Any], trimmed: int | None) -> str:
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


def _trim_head_cost(d: dict, draft: dict, ds, k: int, kind: str) -> None:
    """Synthetic costs: the LM head's share scales with the rows kept (K / vocab_size)."""
    if ds.head_ms <= 0 or ds.vocab_size is None:
        return
    keep = min(1.0, k / ds.vocab_size)
    entry = drafters.get(kind)
    if entry.separate_model and "cost" in draft:
        c = dict(draft["cost"])
        c["step_ms"] = max(0.0, c["step_ms"] - ds.head_ms * (1 - keep))
        draft["cost"] = c
    elif entry.target_layers and "cost" not in draft:
        tgt = d.get("target") or {}
        tc, layers = tgt.get("cost"), tgt.get("layers")
        if tc is None or not layers:
            return  # a profile prices the trimmed head itself (head_rows)
        f = draft["exit_layer"] / layers
        draft["cost"] = {
            "step_ms": max(0.0, (tc["step_ms"] - ds.head_ms) * f + ds.head_ms * keep),
            "per_seq_ms": tc.get("per_seq_ms", 0.0) * f,
            "per_token_ms": tc.get("per_token_ms", 0.0) * f,
            "per_kv_token_ms": tc.get("per_kv_token_ms", 0.0) * f,
        }


# -- checks and grids ----------------------------------------------------------------

def grid(spec: StudySpec) -> list[dict[str, Any]]:
    """Every point of the space (for exhaustive comparisons; use list or small int knobs), in
    the order of the knobs: each applying knob multiplies the points chosen before it."""
    points: list[dict[str, Any]] = [{}]
    for k in knobs.KNOBS:
        points = [{**p, k.name: v} if k.applies(spec, p) else p for p in points
                  for v in (k.values(spec, p) if k.applies(spec, p) else [None])]
    return points


def check(spec: StudySpec) -> None:
    """Cross-checks that pydantic cannot do; each failure names the study file and key."""
    f, s, where = spec.file, spec.file.search, spec.where
    if "target" not in spec.base or "workload" not in spec.base:
        raise InputError(where, "scenario", "the base scenario needs [target] and [workload]")
    gmax = s.gamma.high if isinstance(s.gamma, IntRange) else max(s.gamma)
    kinds = drafter_choices(spec)
    if gmax > 0 and not kinds:
        raise InputError(where, "search.drafter", "gamma > 0 needs a drafter: give [drafters.<kind>] or a [draft] in the scenario")
    base_kind = (spec.base.get("draft") or {}).get("kind", "none")
    for kind in kinds:
        if kind not in f.drafters and kind != base_kind:
            raise InputError(where, "search.drafter", f"drafter {kind!r} has no [drafters.{kind}] section")
    layered = [k for k in kinds if has_layer(k)]
    if layered and s.exit_layer is None:
        raise InputError(where, "search.exit_layer", f"the {layered[0]} drafter needs an `exit_layer` range")
    layers = (spec.base.get("target") or {}).get("layers")
    if layered and isinstance(layers, int):
        top = max(int_values(s.exit_layer)) if not isinstance(s.exit_layer, IntRange) else s.exit_layer.high
        if top > layers:
            raise InputError(where, "search.exit_layer", f"reaches layer {top} but target.layers is {layers}")
    for kind, ds in f.drafters.items():
        if has_layer(kind) and ds.acceptance is None and ds.acceptance_by_layer is None:
            raise InputError(where, f"drafters.{kind}", "give `acceptance` or `acceptance_by_layer`")
        if ds.acceptance_by_layer is not None and not has_layer(kind):
            early = " or ".join(k for k in drafters.KINDS if has_layer(k))
            raise InputError(where, f"drafters.{kind}.acceptance_by_layer", f"only applies to {early}")
    if s.vocab is not None and not any(has_vocab(spec, k) for k in kinds):
        raise InputError(where, "search.vocab", "no drafter in the search gives `vocab_size`")
    if s.tree:
        for kind in kinds:
            ds = f.drafters.get(kind)
            acc = ds.acceptance if ds is not None else None
            if acc is None or (acc.rank_probs is None and acc.trace is None):
                raise InputError(where, f"drafters.{kind}.acceptance",
                                 "tree shapes need `rank_probs` (or a trace) acceptance for every drafter")
    for knob in ("placement", "dtype"):
        names = getattr(s, knob) or []
        for n in names:
            if n not in f.variants.get(knob, {}):
                raise InputError(where, f"search.{knob}", f"{n!r} has no [variants.{knob}.{n}] section")
    if s.dtype:
        from simspec.config import resolve_data_path

        for n in s.dtype:
            for sec, v in f.variants["dtype"][n].items():
                prof = v.get("profile") if isinstance(v, dict) else None
                if prof and not resolve_data_path(prof, where).exists():
                    raise InputError(where, f"variants.dtype.{n}.{sec}.profile", f"profile not found: {prof}")
    from simspec.study.objectives import check_metrics

    check_metrics(spec)
    for i, b in enumerate(f.baselines):
        bad = [k for k in b if k not in PARAM_NAMES]
        if bad:
            raise InputError(where, f"baselines[{i}].{bad[0]}", f"unknown knob (knobs: {', '.join(PARAM_NAMES)})")
    # Probe: one scenario per drafter (and the plain one) must validate.
    probes = [{"gamma": 0}] + [probe(spec, k, max(1, gmax)) for k in kinds]
    for pr in probes:
        try:
            parse_scenario(build(spec, pr), where)
        except InputError as exc:
            where_key = f"drafters.{pr['drafter']}" if "drafter" in pr else "scenario"
            raise InputError(where, where_key, f"gives an invalid scenario: {exc.key}: {exc.reason}") from None


def probe(spec: StudySpec, kind: str, gamma: int) -> dict[str, Any]:
    """A point that exercises drafter `kind` (its first exit layer, its largest vocabulary)."""
    s = spec.file.search
    p: dict[str, Any] = {"gamma": gamma, "drafter": kind}
    if has_layer(kind):
        p["exit_layer"] = int_values(s.exit_layer)[0] if not isinstance(s.exit_layer, IntRange) else s.exit_layer.low
    if has_vocab(spec, kind):
        p["vocab"] = s.vocab.high if isinstance(s.vocab, IntRange) else max(s.vocab)
    return p
