"""The search knobs, one `Knob` each: when it applies, its values, how a trial suggests it,
its Optuna name and (for the knobs that change a scenario section on their own) its change.

`space.py` loops over `KNOBS` in this order, which is the order a trial suggests them in (so a
seed replays the same trials). A conditional knob depends only on the knobs before it. The
drafter knobs (gamma, drafter, exit_layer, vocab, tree) give the [draft] and [acceptance]
sections together in `trial.drafter_changes`, because one kind's cost and acceptance depend
on all four. A study that searches `policy` (simspec.policies) gets, after `policy`, one knob
per parameter of each searched policy (`policy.<name>.<param>`, `sequence(spec)`), suggested
only when that policy is chosen; a study that does not has exactly the knobs it had before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from simspec import drafters, policies
from simspec.config.patch import one_source
from simspec.study.schema import FloatRange, IntRange, StudySpec, parse_tree

Point = dict[str, Any]  # knob -> value
Changes = dict[str, Any]  # section -> change, for `Scenario.with_`


def int_values(knob) -> list[int]:
    if isinstance(knob, IntRange):
        return knob.values()
    return sorted(set(int(v) for v in knob))


def suggest_int(trial, name: str, knob) -> int:
    if isinstance(knob, IntRange):
        if knob.low == knob.high:
            return knob.low
        return trial.suggest_int(name, knob.low, knob.high, step=knob.step, log=knob.log)
    if len(knob) == 1:
        return int(knob[0])
    return int(trial.suggest_categorical(name, sorted(set(int(v) for v in knob))))


def choose(trial, name: str, choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))


def drafter_choices(spec: StudySpec) -> list[str]:
    s = spec.file.search
    if s.drafter is not None:
        return list(s.drafter)
    if spec.file.drafters:
        return list(spec.file.drafters)
    kind = spec.own_kind
    return [kind] if kind != drafters.NONE else []


def tree_shapes(spec: StudySpec, depth: int) -> list[str]:
    return [t for t in (spec.file.search.tree or ()) if len(parse_tree(t)) == depth]


def has_layer(kind: str) -> bool:
    """The kind exits the target early: an `exit_layer` knob applies to it."""
    return drafters.get(kind).arg == "layer"


def has_vocab(spec: StudySpec, kind: str) -> bool:
    d = spec.file.drafters.get(kind)
    return (spec.file.search.vocab is not None and d is not None and d.vocab_size is not None
            and drafters.get(kind).trims_head)


def policy_choices(spec: StudySpec, p: Point) -> list[str]:
    """The searched policies that apply to the point's drafter kind (`Policy.kinds`), in the
    study file's order: a policy for other kinds is never proposed for this one."""
    out = []
    for name in spec.file.search.policy or ():
        pol = policies.POLICIES.get(name)
        if name == policies.FIXED or (pol is not None and (not pol.kinds or p.get("drafter") in pol.kinds)):
            out.append(name)
    return out


def _policy_applies(spec: StudySpec, p: Point) -> bool:
    return _drafting(spec, p) and bool(spec.file.search.policy)


POLICY_PREFIX = "policy."


def policy_knob(name: str) -> str:
    return f"{POLICY_PREFIX}{name}."


def _param_knob(spec: StudySpec, policy: str, param: policies.Param):
    """What a policy parameter's knob searches: [search.policy_params] or its whole range."""
    knob = spec.file.search.policy_params.get(policy, {}).get(param.name)
    if knob is not None:
        return knob
    if param.kind is int:
        return IntRange(low=int(param.low), high=int(param.high), log=param.log)
    return FloatRange(low=param.low, high=param.high, log=param.log)


def param_values(spec: StudySpec, policy: str, param: policies.Param) -> list:
    """The searched values of a policy parameter (for grids): a list's values, an int range's
    every value, a float range's low, default (clamped) and high."""
    knob = _param_knob(spec, policy, param)
    if isinstance(knob, IntRange) and param.kind is int:
        return knob.values()
    if isinstance(knob, (IntRange, FloatRange)):
        return sorted({float(knob.low), float(min(max(param.default, knob.low), knob.high)), float(knob.high)})
    return sorted({param.kind(v) for v in knob})


def _suggest_param(policy: str, param: policies.Param):
    def suggest(trial, spec: StudySpec, p: Point) -> Any:
        name = f"{policy_knob(policy)}{param.name}"
        knob = _param_knob(spec, policy, param)
        if param.kind is int:
            return suggest_int(trial, name, knob)
        if isinstance(knob, (IntRange, FloatRange)):
            if knob.low == knob.high:
                return float(knob.low)
            return float(trial.suggest_float(name, float(knob.low), float(knob.high), log=knob.log))
        vals = sorted({float(v) for v in knob})
        return vals[0] if len(vals) == 1 else float(trial.suggest_categorical(name, vals))

    return suggest


def policy_param_knobs(spec: StudySpec) -> tuple["Knob", ...]:
    """One conditional knob per parameter of each searched policy, named policy.<name>.<param>
    and suggested only when that policy is chosen."""
    out = []
    for name in spec.file.search.policy or ():
        pol = policies.POLICIES.get(name)
        for param in (pol.params if pol is not None else ()):
            out.append(Knob(f"{policy_knob(name)}{param.name}",
                            lambda spec, p, name=name: p.get("policy") == name,
                            lambda spec, p, name=name, param=param: param_values(spec, name, param),
                            suggester=_suggest_param(name, param)))
    return tuple(out)


def sequence(spec: StudySpec) -> tuple["Knob", ...]:
    """The knobs of this study in the order a trial suggests them: KNOBS, with the searched
    policies' parameter knobs right after `policy` (none when no policy is searched)."""
    if not spec.file.search.policy:
        return KNOBS
    i = NAMES.index("policy") + 1
    return KNOBS[:i] + policy_param_knobs(spec) + KNOBS[i:]


def static_policy(p: Point) -> bool:
    """The point's policy picks its shape before the run (a budget tree): gamma and the tree
    knob say nothing then."""
    pol = policies.POLICIES.get(p.get("policy") or policies.FIXED)
    return pol is not None and not pol.dynamic


def policy_table(p: Point) -> dict[str, Any] | None:
    """`[speculation.policy]` of a point (None: fixed)."""
    name = p.get("policy") or policies.FIXED
    if name == policies.FIXED:
        return None
    prefix = policy_knob(name)
    return {"name": name, **{k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}}


@dataclass(frozen=True)
class Knob:
    name: str                                        # in results, baselines and `best.toml`
    applies: Callable[[StudySpec, Point], bool]      # given the knobs chosen before it
    values: Callable[[StudySpec, Point], list]       # every value (grids; categorical choices)
    integer: bool = False                            # suggested as an int range / int list
    optuna: Callable[[Point], str] | None = None     # its Optuna name, when not `name`
    apply: Callable[[StudySpec, Point], list[Changes]] | None = None  # its scenario changes, in order
    suggester: Callable[[Any, StudySpec, Point], Any] | None = None   # its own suggestion (policy parameters)

    def optuna_name(self, p: Point) -> str:
        return self.optuna(p) if self.optuna else self.name

    def suggest(self, trial, spec: StudySpec, p: Point) -> Any:
        if self.suggester is not None:
            return self.suggester(trial, spec, p)
        if self.integer:
            return suggest_int(trial, self.optuna_name(p), getattr(spec.file.search, self.name))
        return choose(trial, self.optuna_name(p), self.values(spec, p))


def _int_knob(name: str) -> Callable[[StudySpec, Point], list]:
    return lambda spec, p: int_values(getattr(spec.file.search, name))


def _variant(knob: str) -> Callable[[StudySpec, Point], list[Changes]]:
    """placement / dtype: the chosen [variants.<knob>.<name>] tables, patched into the scenario."""
    def apply(spec: StudySpec, p: Point) -> list[Changes]:
        entry = drafters.KINDS.get(p["drafter"]) if _drafting(spec, p) else None
        own_model = entry is not None and entry.separate_model  # else [draft] has no cost to vary
        patch = {sec: v for sec, v in spec.file.variants[knob][p[knob]].items() if sec != "draft" or own_model}
        cleared = [{"placement": None}] if knob == "placement" and "placement" in patch else []
        return cleared + [one_source(patch)]  # a placement is replaced whole; a profile replaces a cost

    return apply


def _max_batch(spec: StudySpec, p: Point) -> list[Changes]:
    return [{"serving": {"max_batch": int(p["max_batch"])}}]


def _drafting(spec: StudySpec, p: Point) -> bool:
    return p.get("gamma", 0) > 0


KNOBS: tuple[Knob, ...] = (
    Knob("gamma", lambda spec, p: True, _int_knob("gamma"), integer=True),
    Knob("drafter", _drafting, lambda spec, p: drafter_choices(spec)),
    Knob("exit_layer", lambda spec, p: _drafting(spec, p) and has_layer(p["drafter"]), _int_knob("exit_layer"),
         integer=True),
    Knob("vocab", lambda spec, p: _drafting(spec, p) and has_vocab(spec, p["drafter"]), _int_knob("vocab"),
         integer=True),
    Knob("policy", _policy_applies, lambda spec, p: policy_choices(spec, p),
         optuna=lambda p: f"policy_{p['drafter']}"),  # its choices depend on the drafter kind
    Knob("tree", lambda spec, p: _drafting(spec, p) and not static_policy(p) and bool(tree_shapes(spec, p["gamma"])),
         lambda spec, p: ["chain"] + tree_shapes(spec, p["gamma"]), optuna=lambda p: f"tree_d{p['gamma']}"),
    Knob("max_batch", lambda spec, p: spec.file.search.max_batch is not None, _int_knob("max_batch"),
         integer=True, apply=_max_batch),
    Knob("placement", lambda spec, p: spec.file.search.placement is not None,
         lambda spec, p: list(spec.file.search.placement), apply=_variant("placement")),
    Knob("dtype", lambda spec, p: spec.file.search.dtype is not None,
         lambda spec, p: list(spec.file.search.dtype), apply=_variant("dtype")),
)
NAMES = tuple(k.name for k in KNOBS)
BY_NAME = {k.name: k for k in KNOBS}


def optuna_to_knob(param: str) -> str:
    """An Optuna parameter name -> its knob (tree_d<g> -> tree)."""
    for k in KNOBS:
        if k.optuna is not None and param.startswith(k.name + "_d"):
            return k.name
    if param.startswith("policy_"):
        return "policy"
    return param
