"""Token-budget trees (simspec.sim.budget_tree, policy `budget_tree`): the DP against brute force
over every level-uniform tree, the resolved tree replaying exactly as the same explicit tree,
and bad input as one line with exit code 2."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from clihelpers import cli
from simspec.config import load_scenario, parse_scenario
from simspec.sim.budget_tree import best_tree, cover_from_rank_probs, cover_from_ranks, nodes, value
from simspec.sim.run import simulate
from simspec.sim.static_policy import resolved

REPO = Path(__file__).resolve().parents[1]
TRACE = str(REPO / "traces" / "smollm2-135m__sharegpt.parquet")


def all_trees(budget: int, max_depth: int):
    """Every level-uniform tree (depth 1..max_depth) with at most `budget` nodes."""
    out = []

    def grow(prefix, used, level):
        if prefix:
            out.append(tuple(prefix))
        if len(prefix) == max_depth:
            return
        for c in itertools.count(1):
            n = level * c
            if used + n > budget:
                break
            grow(prefix + [c], used + n, n)

    grow([], 0, 1)
    return out


def covers():
    rng = np.random.default_rng(31)
    yield cover_from_rank_probs([0.6, 0.15, 0.08, 0.05], 16)   # rank 0 dominates
    yield cover_from_rank_probs([0.3, 0.25, 0.2, 0.1, 0.05], 16)  # spread: wide pays
    yield cover_from_rank_probs([0.0], 16)                        # nothing accepted
    for _ in range(6):
        p = rng.dirichlet(np.ones(8)) * rng.uniform(0.3, 1.0)
        yield cover_from_rank_probs(p.tolist(), 16)


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8, 12, 16])
@pytest.mark.parametrize("max_depth", [1, 3, 16])
def test_dp_is_the_brute_force_optimum(budget, max_depth):
    for cover in covers():
        tree, v = best_tree(cover, budget, max_depth)
        assert nodes(tree) <= budget and 1 <= len(tree) <= max_depth
        assert v == value(tree, cover)
        brute = max(value(t, cover) for t in all_trees(budget, max_depth))
        assert v == pytest.approx(brute, rel=1e-12, abs=1e-15)
        # ties go to the smaller tree: no tree as good has fewer nodes
        assert not any(value(t, cover) >= v and nodes(t) < nodes(tree) for t in all_trees(budget, max_depth))


def test_shapes_follow_the_rank_spread():
    assert best_tree(cover_from_rank_probs([0.9, 0.05], 8), 4, 8)[0] == (1, 1, 1, 1)  # a chain
    wide, _ = best_tree(cover_from_rank_probs([0.3, 0.25, 0.2, 0.1], 8), 4, 8)
    assert wide[0] > 1  # the first level branches
    assert best_tree(cover_from_rank_probs([0.0], 8), 8, 8)[0] == (1,)  # nothing pays: smallest


def test_cover_from_ranks_counts_capped_ranks_as_misses():
    c = cover_from_ranks(np.array([0, 0, 1, 3, 127, 127]), 4)
    assert c.tolist() == pytest.approx([0, 2 / 6, 3 / 6, 3 / 6, 4 / 6])


def scenario(policy=None, *, drafter="exit28", kind="early_exit", acceptance=None, **spec):
    draft = {"kind": kind}
    if kind == "early_exit":
        draft["exit_layer"] = 28
    speculation = dict(spec)
    if policy is not None:
        speculation["policy"] = policy
    return {
        "target": {"name": "smollm2-135m", "layers": 30, "cost": {"step_ms": 20.0, "per_seq_ms": 0.5, "per_token_ms": 0.3}},
        "draft": draft,
        "acceptance": acceptance or {"trace": TRACE, "drafter": drafter},
        "speculation": speculation,
        "workload": {"requests": 24, "arrival": "closed", "concurrency": 4, "dataset": "trace"},
        "serving": {"max_batch": 4, "seed": 3},
    }


def _figures(res):
    return {k: v for k, v in res.summary.items() if k != "wall_s"}


@pytest.mark.parametrize("budget, depth", [(3, 8), (12, 8), (24, 4), (40, 16)])
def test_resolved_tree_replays_as_the_explicit_tree(budget, depth):
    sc = parse_scenario(scenario({"name": "budget_tree", "budget": budget, "max_depth": depth}), "x.toml")
    r = resolved(sc, "x.toml")
    tree = list(r.shape.branching)
    assert r.speculation.policy is None and nodes(tree) <= budget and len(tree) <= depth
    explicit = parse_scenario(scenario(**({"tree": tree} if max(tree) > 1 else {"draft_len": len(tree)})), "x.toml")
    a, b = simulate(sc, "x.toml"), simulate(explicit, "x.toml")
    assert str(a.scenario.shape) == str(explicit.shape)
    assert _figures(a) == _figures(b)
    assert a.records.columns().keys() == b.records.columns().keys()
    for k, v in a.records.columns().items():
        assert np.array_equal(np.asarray(v), np.asarray(b.records.columns()[k]), equal_nan=True), k


def test_trace_cover_is_the_column_rank_histogram():
    from simspec.sim.budget_tree import scenario_cover
    from simspec.trace.oracle import cached_trace

    sc = parse_scenario(scenario({"name": "budget_tree", "budget": 8}), "x.toml")
    ranks = cached_trace(TRACE).ranks["exit28"]
    c = scenario_cover(sc, "x.toml", 8)
    assert c[1] == pytest.approx(float((ranks == 0).mean()))
    assert c[4] == pytest.approx(float((ranks < 4).mean()))
    # the resolved tree is the DP's tree for that histogram
    assert resolved(sc, "x.toml").shape.branching == best_tree(c, 8, 8)[0]


def test_rank_probs_budget_tree():
    acc = {"rank_probs": [0.3, 0.25, 0.2, 0.1]}
    sc = parse_scenario(scenario({"name": "budget_tree", "budget": 6, "max_depth": 4}, acceptance=acc), "x.toml")
    want = best_tree(cover_from_rank_probs(acc["rank_probs"], 6), 6, 4)[0]
    assert resolved(sc).shape.branching == want and max(want) > 1


def test_unresolved_static_policy_has_no_gamma():
    sc = parse_scenario(scenario({"name": "budget_tree"}), "x.toml")
    with pytest.raises(RuntimeError, match="resolved before its shape is read"):
        sc.gamma


def test_simulate_json_says_the_tree(tmp_path):
    f = tmp_path / "bt.toml"
    f.write_text(_toml(scenario({"name": "budget_tree", "budget": 12, "max_depth": 6})))
    r = cli("simulate", str(f), "--json", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    want = resolved(load_scenario(f), str(f)).shape
    assert out["policy"] == "budget_tree" and out["tree"] == str(want)
    ran = json.loads((tmp_path / "run" / "scenario.json").read_text())
    assert ran["speculation"]["policy"] is None


def _toml(d: dict) -> str:
    from fuzzhelpers import toml_value

    return "".join(f"[{sec}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in body.items()) for sec, body in d.items())


@pytest.mark.parametrize("change, line", [
    (dict(policy={"name": "budget_tree", "budget": 0}), "speculation.policy.budget: 0 outside 1..64"),
    (dict(policy={"name": "budget_tree", "budget": 65}), "speculation.policy.budget: 65 outside 1..64"),
    (dict(policy={"name": "budget_tree", "max_depth": 17}), "speculation.policy.max_depth: 17 outside 1..16"),
    (dict(policy={"name": "budget_tree", "budget": 2.5}), "speculation.policy.budget: 2.5 is not an integer"),
    (dict(policy={"name": "budget_tree"}, draft_len=3), "speculation.policy: policy 'budget_tree' chooses the shape itself"),
    (dict(policy={"name": "budget_tree"}, acceptance={"iid": 0.6}), "acceptance: policy 'budget_tree' picks a tree from per-rank acceptance"),
    (dict(policy={"name": "budget_tree"}, kind="ngram", drafter="ngram"), "speculation.policy.name: policy 'budget_tree' applies to [draft] kind"),
    (dict(policy={"name": "budget_tree"}, drafter="exit28@1"), "acceptance.drafter: policy 'budget_tree' needs a greedy rank column"),
])
def test_bad_budget_tree_is_one_line_exit_2(tmp_path, change, line):
    f = tmp_path / "bad.toml"
    f.write_text(_toml(scenario(**change)))
    r = cli("simulate", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith(f"error: {f}: {line}"), err


def cost_scenario(per_token_ms: float, draft_ms: float, budget: int = 12, depth: int = 5, batch: int = 1):
    return parse_scenario({
        "target": {"cost": {"step_ms": 10.0, "per_token_ms": per_token_ms}},
        "draft": {"kind": "model", "cost": {"step_ms": draft_ms}},
        "acceptance": {"rank_probs": [0.45, 0.2, 0.1, 0.06, 0.04]},
        "speculation": {"policy": {"name": "budget_tree_cost", "budget": budget, "max_depth": depth}},
        "workload": {"requests": 4, "prompt_len": 16, "output_len": 32},
        "serving": {"max_batch": batch}}, "c.toml")


@pytest.mark.parametrize("per_token_ms, draft_ms, batch", [(0.0, 0.0, 1), (0.5, 1.0, 1), (2.0, 1.0, 4), (8.0, 0.5, 2)])
def test_cost_aware_tree_is_the_brute_force_fastest(per_token_ms, draft_ms, batch):
    from simspec.sim.budget_tree import rate

    sc = cost_scenario(per_token_ms, draft_ms, batch=batch)
    tree = resolved(sc, "c.toml").shape.branching
    cover = cover_from_rank_probs([0.45, 0.2, 0.1, 0.06, 0.04], 12)
    rates = {t: rate(sc, "c.toml", t, cover, batch, 512) for t in all_trees(12, 5)}
    assert rates[tree] == pytest.approx(max(rates.values()), rel=1e-12)
    if per_token_ms == 0 and draft_ms == 0:  # a round costs the same whatever its shape: most tokens wins
        assert value(tree, cover) == pytest.approx(best_tree(cover, 12, 5)[1])


def test_costly_verify_tokens_shrink_the_tree():
    cover = cover_from_rank_probs([0.45, 0.2, 0.1, 0.06, 0.04], 12)
    cheap = resolved(cost_scenario(0.0, 0.0), "c.toml").shape.branching
    dear = resolved(cost_scenario(20.0, 0.0), "c.toml").shape.branching
    assert nodes(dear) < nodes(cheap) and value(dear, cover) < value(cheap, cover)
