"""The search space: Optuna suggestions (define-by-run, conditional knobs), grids, and the
checks a study file gets when it loads (a point becomes a scenario in `trial.py`).

Knobs, in the order they are suggested:
  gamma        draft tokens per round, 0 = plain decoding (then no drafter knob exists)
  drafter      a kind of simspec.drafters                      (only when gamma > 0)
  exit_layer   the early-exit layer                           (only for a kind that exits early)
  vocab        trimmed LM-head rows K                          (only for drafters with `vocab_size`)
  policy_<kind>  "fixed" or a policy of simspec.policies that applies to the kind (only when
               [search] policy is given); then policy.<name>.<param>, each parameter of the
               chosen policy (its range, or [search.policy_params.<name>])
  tree_d<g>    'chain' or a tree shape of depth g              (only when shapes of depth g
               exist, and not for a static policy: a budget tree picks its own)
  max_batch, placement, dtype                                  (always, when searched)
A conditional knob has its own name, so each name always has one distribution, which is
what Optuna's samplers expect.
"""

from __future__ import annotations

from typing import Any

from simspec import drafters
from simspec.errors import InputError
from simspec.study import knobs, trial
from simspec.study.knobs import drafter_choices, has_layer, has_vocab, int_values, tree_shapes  # noqa: F401
from simspec.study.schema import IntRange, StudySpec

PARAM_NAMES = knobs.NAMES


def suggest(optuna_trial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for one point of the space; returns {knob: value} (no tree_d prefix)."""
    p: dict[str, Any] = {}
    for k in knobs.sequence(spec):
        if k.applies(spec, p):
            p[k.name] = k.suggest(optuna_trial, spec, p)
    return p


def to_optuna_params(p: dict[str, Any]) -> dict[str, Any]:
    """Knob values -> Optuna parameter names (for enqueue_trial)."""
    return {knobs.BY_NAME[k].optuna_name(p) if k in knobs.BY_NAME else k: v for k, v in p.items()}


def from_optuna_params(params: dict[str, Any]) -> dict[str, Any]:
    return {knobs.optuna_to_knob(k): v for k, v in params.items()}


# -- checks and grids ----------------------------------------------------------------

def grid(spec: StudySpec) -> list[dict[str, Any]]:
    """Every point of the space (for exhaustive comparisons; use list or small int knobs), in
    the order of the knobs: each applying knob multiplies the points chosen before it."""
    points: list[dict[str, Any]] = [{}]
    for k in knobs.sequence(spec):
        points = [{**p, k.name: v} if k.applies(spec, p) else p for p in points
                  for v in (k.values(spec, p) if k.applies(spec, p) else [None])]
    return points


def check(spec: StudySpec) -> None:
    """Cross-checks that pydantic cannot do; each failure names the study file and key."""
    f, s, where = spec.file, spec.file.search, spec.where
    gmax = s.gamma.high if isinstance(s.gamma, IntRange) else max(s.gamma)
    kinds = drafter_choices(spec)
    if gmax > 0 and not kinds:
        raise InputError(where, "search.drafter", "gamma > 0 needs a drafter: give [drafters.<kind>] or a [draft] in the scenario")
    for kind in kinds:
        if kind not in f.drafters and kind != spec.own_kind:
            raise InputError(where, "search.drafter", f"drafter {kind!r} has no [drafters.{kind}] section")
    layered = [k for k in kinds if has_layer(k)]
    if layered and s.exit_layer is None:
        raise InputError(where, "search.exit_layer", f"the {layered[0]} drafter needs an `exit_layer` range")
    layers = spec.base.target.layers
    if layered and layers is not None:
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
    check_policies(spec, kinds)
    for i, b in enumerate(f.baselines):
        bad = [k for k in b if k not in PARAM_NAMES and not k.startswith(knobs.POLICY_PREFIX)]
        if bad:
            raise InputError(where, f"baselines[{i}].{bad[0]}", f"unknown knob (knobs: {', '.join(PARAM_NAMES)})")
        for k, low in (("gamma", 0), ("max_batch", 1), ("exit_layer", 1), ("vocab", 1)):
            v = b.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise InputError(where, f"baselines[{i}].{k}", f"must be an integer >= {low} (got {v!r})")
    # One scenario per drafter must validate (the plain one did when the study loaded), and
    # every file behind it must be whole: a damaged trace found by the trials would only turn
    # them invalid, one by one, and let another drafter be reported best.
    check_inputs(spec, spec.base, "scenario")
    for kind in kinds:
        try:
            sc = trial.scenario(spec, probe(spec, kind, max(1, gmax)))
        except InputError as exc:
            raise InputError(where, f"drafters.{kind}", f"gives an invalid scenario: {exc.key}: {exc.reason}") from None
        check_inputs(spec, sc, f"drafters.{kind}")


def check_policies(spec: StudySpec, kinds: list[str]) -> None:
    """[search] policy: registered names, parameters the policy has, values inside their ranges;
    each static policy resolves for every drafter it applies to (a budget tree needs ranks)."""
    from simspec import policies

    s, where = spec.file.search, spec.where
    for name in s.policy or ():
        if name != policies.FIXED:
            policies.get(name, where, "search.policy")
    for name, params in s.policy_params.items():
        key = f"search.policy_params.{name}"
        if name not in (s.policy or ()):
            raise InputError(where, key, f"policy {name!r} is not searched (search.policy: {', '.join(s.policy or ()) or 'none'})")
        pol = policies.get(name, where, key)
        for pname, knob in params.items():
            param = pol.param(pname)
            if param is None:
                raise InputError(where, f"{key}.{pname}", f"policy {name!r} has no parameter {pname!r} "
                                                         f"(has: {', '.join(p.name for p in pol.params) or 'none'})")
            ends = [knob.low, knob.high] if isinstance(knob, (IntRange, knobs.FloatRange)) else list(knob)
            if param.kind is float and isinstance(knob, IntRange) and knob.step != 1:
                raise InputError(where, f"{key}.{pname}", "a float parameter's range takes no `step`")
            for v in ends:
                param.check(int(v) if param.kind is int and float(v).is_integer() else v, where, f"{key}.{pname}")
    gmax = s.gamma.high if isinstance(s.gamma, IntRange) else max(s.gamma)
    if not s.policy or gmax < 1:
        return
    for kind in kinds:
        for name in knobs.policy_choices(spec, {"drafter": kind}):
            if name == policies.FIXED:
                continue
            p = {**probe(spec, kind, gmax), "policy": name}
            for param in policies.get(name).params:
                p[f"{knobs.policy_knob(name)}{param.name}"] = knobs.param_values(spec, name, param)[0]
            try:
                trial.scenario(spec, p)
            except InputError as exc:
                said = exc.line() if exc.file != where else f"{exc.key}: {exc.reason}"
                raise InputError(where, "search.policy", f"{name!r} with drafter {kind!r} gives an invalid scenario: {said}") from None


def check_inputs(spec: StudySpec, sc, key: str) -> None:
    """Read the scenario's trace whole and build its replay (the drafter's column included),
    as the first trial would: a problem is one line naming the study key and the file."""
    import numpy as np

    from simspec.sim.build import build_oracle
    from simspec.sim.run import lengths_only_trace

    if sc.acceptance is None or sc.acceptance.trace is None:
        return
    try:
        if sc.gamma == 0:
            lengths_only_trace(sc, spec.where, 0)
        else:
            build_oracle(sc, spec.where, np.random.default_rng(0))
    except InputError as exc:
        said = exc.line() if exc.file != spec.where else f"{exc.key}: {exc.reason}"
        raise InputError(spec.where, key, f"gives an invalid scenario: {said}") from None


def probe(spec: StudySpec, kind: str, gamma: int) -> dict[str, Any]:
    """A point that exercises drafter `kind` (its first exit layer, its largest vocabulary)."""
    s = spec.file.search
    p: dict[str, Any] = {"gamma": gamma, "drafter": kind}
    if has_layer(kind):
        p["exit_layer"] = int_values(s.exit_layer)[0] if not isinstance(s.exit_layer, IntRange) else s.exit_layer.low
    if has_vocab(spec, kind):
        p["vocab"] = s.vocab.high if isinstance(s.vocab, IntRange) else max(s.vocab)
    return p
