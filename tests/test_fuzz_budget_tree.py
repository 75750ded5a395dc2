"""Fuzz cases for the budget_tree policy and the study's policy knobs (fixed seed, a deadline per
case): every generated scenario or study either runs or ends in ONE line naming the file and
the key, with exit code 2; a budget tree that runs stays inside its budget and depth."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from deadline import within
from fuzzhelpers import REPO, dumps, run_main
from simspec.sim.budget_tree import best_tree, cover_from_rank_probs, nodes, value

TRACE = str(REPO / "traces" / "smollm2-135m__sharegpt.parquet")
ODD = [0, 1, 2, 7, 16, 64, 65, -1, 2.5, 1e30, float("nan"), True, "8", None, [4], {"a": 1}]


def _value(rng: random.Random, high: int):
    return rng.choice(ODD) if rng.random() < 0.2 else rng.randint(1, high)


def _scenario(rng: random.Random) -> dict:
    policy: dict = {"name": rng.choice(["budget_tree"] * 15 + ["budget_trees", "", 3])}
    for key, high in (("budget", 40), ("max_depth", 17)):
        if rng.random() < 0.8:
            policy[key] = _value(rng, high)
    if rng.random() < 0.1:
        policy[rng.choice(["width", "budget ", "Budget"])] = 4
    kind = rng.choice(["early_exit"] * 4 + ["ngram", "model"])
    draft: dict = {"kind": kind}
    if kind == "early_exit":
        draft["exit_layer"] = rng.choice([10, 28, 28, 29, 30])
    if kind == "model":
        draft["cost"] = {"step_ms": 1.0}
    col = {10: "exit10", 28: "exit28", 29: "exit29"}.get(draft.get("exit_layer"), "exit28")
    acc = rng.choice([{"trace": TRACE, "drafter": rng.choice([col] * 4 + ["exit28@1", "ngram", "exit99"])}] * 2 + [
                      {"rank_probs": [rng.random() / 3 for _ in range(rng.randint(1, 5))]},
                      {"iid": 0.5}, {"per_position": [0.7, 0.5]}])
    speculation: dict = {"policy": policy}
    if rng.random() < 0.15:
        speculation[rng.choice(["draft_len", "tree"])] = rng.choice([2, [2, 1]])
    wl = {"requests": 6, "arrival": "closed", "concurrency": 2, "prompt_len": 32, "output_len": 24}
    if "trace" in acc and rng.random() < 0.5:
        wl = {"requests": 6, "arrival": "closed", "concurrency": 2, "dataset": "trace"}
    return {"target": {"name": "smollm2-135m", "layers": 30, "cost": {"step_ms": 5.0, "per_token_ms": 0.1}},
            "draft": draft, "acceptance": acc, "speculation": speculation, "workload": wl,
            "serving": {"max_batch": 2, "seed": rng.randint(0, 5)}}


def _toml(doc: dict) -> str:
    return "".join(f"[{sec}]\n" + dumps(body) for sec, body in doc.items())


def test_fuzz_budget_tree_scenarios(tmp_path):
    rng = random.Random(3131)
    ran = refused = 0
    for i in range(80):
        doc = _scenario(rng)
        f = tmp_path / f"case{i}.toml"
        f.write_text(_toml(doc))
        with within(20, f"case {i}: {doc['speculation']}"):
            code, out, err = run_main("simulate", str(f), "--json")
        if code == 0:
            got = json.loads(out)
            pol = doc["speculation"]["policy"]
            tree = [int(x) for x in got["tree"].split(",")]
            budget, depth = (pol.get(k) if pol.get(k) is not None else 8 for k in ("budget", "max_depth"))
            assert nodes(tree) <= budget and len(tree) <= depth, (doc, got)
            ran += 1
            continue
        assert code == 2, (doc, err)
        line = err.strip()
        assert "\n" not in line and line.startswith(f"error: {f}: "), (doc, err)
        key = line[len(f"error: {f}: "):].split(":")[0]
        assert key.split(".")[0] in doc, (doc, line)  # a key of the file, then the reason
        refused += 1
    assert ran >= 10 and refused >= 20, (ran, refused)


def test_fuzz_dp_against_brute_force():
    rng = np.random.default_rng(31)
    from test_budget_tree import all_trees

    for _ in range(40):
        k = int(rng.integers(1, 8))
        p = rng.dirichlet(np.ones(k)) * rng.uniform(0.05, 1.0)
        cover = cover_from_rank_probs(p.tolist(), 12)
        budget, depth = int(rng.integers(1, 11)), int(rng.integers(1, 7))
        with within(10, "dp case"):
            tree, v = best_tree(cover, budget, depth)
        assert v == pytest.approx(max(value(t, cover) for t in all_trees(budget, depth)), rel=1e-12, abs=1e-15)


STUDY = """
name = "fz"
trials = 3
[scenario.target]
cost = {{ step_ms = 5.0 }}
[workload]
requests = 4
arrival = "closed"
concurrency = 1
prompt_len = 16
output_len = 16
[search]
gamma = {{ low = 1, high = 3 }}
drafter = ["model"]
policy = {policy}
{params}
[drafters.model]
cost = {{ step_ms = 1.0 }}
acceptance = {acc}
"""


def test_fuzz_policy_search(tmp_path):
    rng = random.Random(31)
    ran = 0
    for i in range(25):
        policy = rng.choice(['["fixed", "budget_tree"]'] * 4 + ['["budget_tree"]', '["nope"]', '[]', '"budget_tree"', '[3]'])
        params = ""
        if rng.random() < 0.7:
            name = rng.choice(["budget_tree"] * 4 + ["fixed", "x"])
            param = rng.choice(["budget", "max_depth"] * 2 + ["depth"])
            val = rng.choice(["[2, 4]"] * 3 + ["{ low = 2, high = 8 }"] * 3 + ["[0]", "[70]", "{ low = 8, high = 2 }",
                              "[2.5]", '"a"', "{ low = 1.5, high = 3.0 }", "[]"])
            params = f"[search.policy_params.{name}]\n{param} = {val}"
        acc = rng.choice(["{ rank_probs = [0.6, 0.2] }"] * 3 + ["{ iid = 0.6 }"])
        f = tmp_path / f"s{i}.toml"
        f.write_text(STUDY.format(policy=policy, params=params, acc=acc))
        with within(30, f"study case {i}"):
            code, out, err = run_main("study", str(f), "--out", str(tmp_path / f"run{i}"), "--no-progress")
        ran += code == 0
        if code != 0:
            assert code == 2, (f.read_text(), err)
            line = err.strip()
            assert "\n" not in line and line.startswith(f"error: {f}: "), (f.read_text(), err)
    assert 3 <= ran <= 22, ran  # both ways taken
