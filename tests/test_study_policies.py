"""The study's `policy` knob: policies from the registry as conditional knobs (each parameter a
knob `policy.<name>.<param>`, proposed only with its policy and only for the drafter kinds it
applies to), the summary saying which policy won and why, and a budget-tree winner exported
as the explicit tree it resolved to."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import optuna
import pytest

from simspec import drafters, policies
from simspec.policies import Param, Policy
from simspec.study import export, results, space, trial
from simspec.study.engines.sglang import MAIN as SGLANG_MAIN
from simspec.study.schedule import Point
from simspec.study.spec import load_study
from studyhelpers import simspec

STUDY = """
name = "pol"
seed = {seed}
trials = {trials}

[scenario.target]
name = "t"
cost = {{ step_ms = 20.0, per_seq_ms = 0.5, per_token_ms = 0.4 }}

[scenario.serving]
seed = 0
max_batch = 1

[workload]
requests = 16
arrival = "closed"
concurrency = 1
prompt_len = 64
output_len = 48

[search]
gamma = {{ low = 0, high = 4 }}
drafter = {drafters}
tree = ["2,1", "2,2,1", "3,1,1"]
{policy}

[drafters.model]
name = "org/draft"
cost = {{ step_ms = 2.0, per_seq_ms = 0.1 }}
acceptance = {{ rank_probs = [0.55, 0.15, 0.08, 0.05, 0.03] }}

[drafters.ngram]
acceptance = {{ iid = 0.3 }}

[objectives]
throughput = "maximize"
"""

POLICY = '''policy = ["fixed", "budget_tree"]
[search.policy_params.budget_tree]
budget = [2, 4, 8, 16]
max_depth = { low = 1, high = 6 }'''


def study_file(tmp: Path, policy: str = POLICY, seed: int = 0, trials: int = 30,
               kinds: str = '["model"]', name: str = "pol.toml") -> Path:
    p = tmp / name
    p.write_text(STUDY.format(seed=seed, trials=trials, drafters=kinds, policy=policy))
    return p


def run(study: Path, out: Path):
    r = simspec("study", str(study), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)


def test_policy_study_runs_and_says_which_won(tmp_path):
    study = run(study_file(tmp_path), tmp_path / "run")
    trials = results.feasible_trials(study)
    ks = [results.knobs(t) for t in trials]
    bt = [k for k in ks if k.get("policy") == "budget_tree"]
    assert bt and any(k.get("policy") == "fixed" for k in ks)
    for k in ks:  # a policy's knobs only with it; no tree knob beside a static policy
        has = {n for n in k if n.startswith("policy.")}
        if k.get("policy") == "budget_tree":
            assert has == {"policy.budget_tree.budget", "policy.budget_tree.max_depth"} and "tree" not in k
            assert k["policy.budget_tree.budget"] in (2, 4, 8, 16) and 1 <= k["policy.budget_tree.max_depth"] <= 6
        else:
            assert not has
    text = (tmp_path / "run" / "summary.md").read_text()
    assert "## Policies" in text
    line = next(l for l in text.splitlines() if " won (" in l)
    spec = load_study(tmp_path / "pol.toml")
    rows = __import__("simspec.study.policy_compare", fromlist=["x"]).best_per_policy(spec, study)
    assert line.startswith(f"{rows[0].label} won (") and f"#{rows[0].number}" in line and f"#{rows[1].number}" in line
    # the winner's best really is the best speculating trial, and the runner-up another policy's best
    spec_trials = [t for t in trials if int(results.knobs(t).get("gamma", 0)) > 0]
    assert rows[0].value == max(t.values[0] for t in spec_trials)
    assert rows[1].label != rows[0].label
    assert f"{rows[0].tokens_per_round:.2f} vs {rows[1].tokens_per_round:.2f} tokens per round" in line
    df = results.frame(study)
    assert "policy.budget_tree.budget" in df.columns and "policy" in df.columns


def test_budget_tree_trial_is_the_resolved_explicit_tree(tmp_path):
    spec = load_study(study_file(tmp_path))
    p = {"gamma": 3, "drafter": "model", "policy": "budget_tree", "policy.budget_tree.budget": 8,
         "policy.budget_tree.max_depth": 4}
    sc = trial.scenario(spec, p)
    assert sc.speculation.policy is None and sc.speculation.tree is not None
    explicit = trial.explicit_knobs(spec, p)
    assert explicit == {"gamma": sc.shape.max_depth, "drafter": "model", "tree": str(sc.shape)}
    assert trial.scenario(spec, explicit) == sc


def test_no_policy_knob_leaves_the_trials_as_they_were(tmp_path):
    """`policy = ["fixed"]` proposes nothing new: the same trials as a study without it."""
    a = run(study_file(tmp_path, policy="", name="a.toml", trials=16), tmp_path / "a")
    b = run(study_file(tmp_path, policy='policy = ["fixed"]', name="b.toml", trials=16), tmp_path / "b")
    ka = [results.knobs(t) for t in a.trials]
    kb = [{k: v for k, v in results.knobs(t).items() if k != "policy"} for t in b.trials]
    assert ka == kb
    assert [t.values for t in a.trials] == [t.values for t in b.trials]
    assert "policy" not in results.frame(a).columns


def test_seeded_policy_study_repeats(tmp_path):
    a = run(study_file(tmp_path, name="a.toml", trials=14, seed=5), tmp_path / "a")
    b = run(study_file(tmp_path, name="b.toml", trials=14, seed=5), tmp_path / "b")
    assert [results.knobs(t) for t in a.trials] == [results.knobs(t) for t in b.trials]


@pytest.fixture
def dummy():
    """A registry-generic check: a static policy for the model drafter (one float and one int
    parameter), and one that applies to n-gram lookup only."""
    def resolve(sc, file):
        v = sc.speculation.policy.values()
        return (int(v["width"]),) + (1,) * (1 if v["depth_bias"] < 0.5 else 2)

    policies.register(Policy("dummy_static", "a test policy", kinds=("model",), dynamic=False, resolve=resolve,
                             params=(Param("width", int, 1, 3, 1), Param("depth_bias", float, 0.0, 1.0, 0.5))))
    policies.register(Policy("ngram_only", "a test policy", kinds=("ngram",), dynamic=False, resolve=resolve,
                             params=(Param("width", int, 1, 1, 1), Param("depth_bias", float, 0.0, 1.0, 0.5))))
    yield
    del policies.POLICIES["dummy_static"], policies.POLICIES["ngram_only"]


def test_registry_generic_policies_are_conditional_knobs(tmp_path, dummy):
    f = study_file(tmp_path, kinds='["model", "ngram"]',
                   policy='policy = ["fixed", "dummy_static", "ngram_only"]')
    f.write_text(f.read_text().replace('tree = ["2,1", "2,2,1", "3,1,1"]', 'tree = ["2,1"]').replace(
        "acceptance = { iid = 0.3 }", "acceptance = { rank_probs = [0.3] }"))
    spec = load_study(f)
    names = [k.name for k in space.knobs.sequence(spec)]
    assert names.index("policy") < names.index("policy.dummy_static.width") < names.index("tree")
    assert any(p.get("tree") == "2,1" for p in space.grid(spec))  # the tree knob still exists for "fixed"
    grid = space.grid(spec)
    for p in grid:
        pol = p.get("policy")
        if p.get("drafter") == "model":
            assert pol in ("fixed", "dummy_static")
        elif p.get("drafter") == "ngram":
            assert pol in ("fixed", "ngram_only")
        if pol == "dummy_static":
            assert p["policy.dummy_static.depth_bias"] in (0.0, 0.5, 1.0) and "tree" not in p
    study = run(f, tmp_path / "run")
    ks = [results.knobs(t) for t in results.complete(study)]
    seen = {(k.get("drafter"), k.get("policy")) for k in ks if k.get("gamma")}
    assert ("model", "dummy_static") in seen
    assert not {("model", "ngram_only"), ("ngram", "dummy_static")} & seen
    for t in results.complete(study):
        k = results.knobs(t)
        if k.get("policy") == "dummy_static":
            assert isinstance(k["policy.dummy_static.depth_bias"], float)
            assert "policy_model" in t.params  # the policy knob's Optuna name is per drafter kind


@pytest.mark.parametrize("policy, line", [
    ('policy = ["fixed", "nope"]', "search.policy: unknown policy 'nope'"),
    ('policy = ["budget_tree"]\n[search.policy_params.budget_tree]\nbudget = [0, 4]',
     "search.policy_params.budget_tree.budget: 0 outside 1..64"),
    ('policy = ["budget_tree"]\n[search.policy_params.budget_tree]\nwidth = [2]',
     "search.policy_params.budget_tree.width: policy 'budget_tree' has no parameter 'width'"),
    ('policy = ["fixed"]\n[search.policy_params.budget_tree]\nbudget = [4]',
     "search.policy_params.budget_tree: policy 'budget_tree' is not searched"),
    ('policy = ["budget_tree"]\n[search.policy_params.budget_tree]\nmax_depth = { low = 2, high = 40 }',
     "search.policy_params.budget_tree.max_depth: 40 outside 1..16"),
    ('policy = ["budget_tree"]\n[search.policy_params.budget_tree]\nbudget = [2.5]',
     "search.policy_params.budget_tree.budget: 2.5 is not an integer"),
])
def test_bad_policy_search_is_one_line(tmp_path, policy, line):
    f = study_file(tmp_path, policy=policy)
    r = simspec("study", str(f), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 2 and r.stderr.strip() == r.stderr.strip().splitlines()[0], r.stderr
    assert r.stderr.startswith(f"error: {f}: {line}"), r.stderr


def test_budget_tree_needs_ranks_said_at_load(tmp_path):
    f = study_file(tmp_path)
    f.write_text(f.read_text().replace("acceptance = { rank_probs = [0.55, 0.15, 0.08, 0.05, 0.03] }",
                                       "acceptance = { per_position = [0.6, 0.5] }").replace('tree = ["2,1", "2,2,1", "3,1,1"]', ""))
    r = simspec("study", str(f), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 2, r.stderr
    assert re.match(rf"error: {re.escape(str(f))}: search.policy: 'budget_tree' with drafter 'model' gives an invalid "
                    r"scenario: acceptance: policy 'budget_tree' picks a tree from per-rank acceptance", r.stderr), r.stderr


@pytest.fixture
def eagle():
    """An EAGLE-like kind (SGLang and vLLM export its trees), budget_tree applying to it."""
    drafters.register(drafters.Kind("eaglet", "eaglet", "an EAGLE head", arg="model", separate_model=True,
                                    vllm_method="eagle", sglang_algorithm="EAGLE", trtllm_decoding_type="Eagle3"))
    old = policies.POLICIES["budget_tree"]
    policies.register(dataclasses.replace(old, kinds=old.kinds + ("eaglet",)))
    yield "eaglet"
    policies.register(old)
    del drafters.KINDS["eaglet"]


def test_budget_tree_winner_exports_as_the_explicit_tree(tmp_path, eagle):
    f = study_file(tmp_path, kinds='["eaglet"]')
    f.write_text(f.read_text().replace("[drafters.model]", "[drafters.eaglet]"))
    spec = load_study(f)
    best = {"gamma": 2, "drafter": "eaglet", "policy": "budget_tree", "policy.budget_tree.budget": 12,
            "policy.budget_tree.max_depth": 4}
    explicit = trial.explicit_knobs(spec, best)
    shape = trial.scenario(spec, best).shape
    assert not shape.is_chain and explicit["tree"] == str(shape)
    d = shape.max_depth
    pts = [Point(1, "none", 0, 10.0, 0.1), Point(1, "eaglet", d, 20.0, 0.05)]
    a = export.export(spec, None, best, pts, predict=False)
    b = export.export(spec, None, explicit, pts, predict=False)
    assert a.files() == b.files() and a.notes == b.notes
    flags = a.get("sglang").files[SGLANG_MAIN]
    assert f"--speculative-eagle-topk {shape.branching[0]}" in flags
    assert f"--speculative-num-draft-tokens {shape.size}" in flags


def test_a_study_without_policy_knobs_keeps_its_stored_definition(tmp_path):
    """The policy knobs came after run folders were stored: while unused they are not part of
    the definition, so a study stored before them still resumes (its definition has no such key)."""
    from simspec.study.definition import definition

    plain = definition(load_study(study_file(tmp_path, policy="", name="plain.toml")), False)["search"]
    assert "policy" not in plain and "policy_params" not in plain
    with_policy = definition(load_study(study_file(tmp_path)), False)["search"]
    assert with_policy["policy"] == ["fixed", "budget_tree"] and with_policy["policy_params"]["budget_tree"]
