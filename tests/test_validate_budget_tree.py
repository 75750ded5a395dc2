"""A budget tree in a validation plan: the policy resolves once from the config's trace, the live
engine runs that tree, and the replayed tokens per round equal the live ones exactly (tiny fp32
models at batch 1, whose live outputs are the traced ones); the row equals the same explicit
tree's row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")

from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402

PROMPTS = ["def add(a, b):\n    return a + b\n", "hello hello hello", "The quick brown fox jumps",
           "1, 2, 3, 4, 5,"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tracehelpers import capture_tiny

    d = tmp_path_factory.mktemp("valbt")
    capture_tiny(d, PROMPTS, target="tiny:llama:4", prompts=4, max_new_tokens=20, drafters=["tiny:qwen2:2"],
                 exit_layers=[2], vocabs=[None], temperatures=[], batch=1, dtype="fp32")
    for model, name in (("tiny:llama:4", "t"), ("tiny:qwen2:2", "q")):
        res = run_cli("profile", "--model", model, "--dtype", "fp32", "--threads", "1", "--quick",
                      "--out", str(d / f"{name}.parquet"), cache=d)
        assert res.returncode == 0, res.stderr
    return d


def write_plan(d: Path, body: str) -> Path:
    head = {"name": "bt", "target": "tiny:llama:4", "trace": "tiny.parquet", "prompts": 4,
            "max_new_tokens": 20, "threads": 1}
    lines = [f"{k} = {json.dumps(v)}" for k, v in head.items()]
    lines += ["[profiles]", '"tiny:llama:4" = { fp32 = "t.parquet" }', '"tiny:qwen2:2" = { fp32 = "q.parquet" }']
    p = d / "plan.toml"
    p.write_text("\n".join(lines) + "\n" + body)
    return p


def resolved_tree(d: Path, plan: Path, index: int) -> list[int]:
    from simspec.validation.run import load_inputs

    inp = load_inputs(plan, str(index))
    return list(inp.scenarios[0].shape.branching)


def test_budget_tree_replays_the_live_run_exactly(setup):
    budget = """
[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
policy = { name = "budget_tree", budget = 10, max_depth = 4 }

[[config]]
dtype = "fp32"
draft = "early_exit:2"
policy = { name = "budget_tree", budget = 6 }
"""
    plan = write_plan(setup, budget)
    trees = [resolved_tree(setup, plan, i) for i in (1, 2)]
    assert any(max(t) > 1 for t in trees), trees  # a real tree, not only chains
    explicit = "".join(f'\n[[config]]\ndtype = "fp32"\ndraft = "{d}"\n{col}{shape}\n'
                       for (d, col), t in zip((("model:tiny:qwen2:2", 'column = "tiny-qwen2-2l"\n'), ("early_exit:2", "")), trees)
                       for shape in [f"tree = {t}" if max(t) > 1 else f"gamma = {len(t)}"])
    plan = write_plan(setup, budget + explicit)
    out = setup / "out"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "bt.csv")
    assert len(df) == 4 and (df["outputs_equal_trace"] == 4).all(), df
    assert df["measured_tokens_per_round"].to_numpy() == pytest.approx(df["predicted_tokens_per_round"].to_numpy(), rel=1e-9)
    assert df["config"][0].endswith("budget_tree-budget10-max_depth4")
    for i in (0, 1):  # the budget tree's row is the explicit tree's row
        assert df["measured_tokens_per_round"][i] == df["measured_tokens_per_round"][i + 2]
        assert df["predicted_tokens_per_round"][i] == df["predicted_tokens_per_round"][i + 2]


@pytest.mark.parametrize("config, needle", [
    ('policy = { name = "budget_tree", budget = 0 }', "policy.budget: 0 outside 1..64"),
    ('policy = { name = "budget_tree" }\ngamma = 2', "chooses the shape itself"),
    ('policy = { name = "nope" }', "unknown policy 'nope'"),
])
def test_bad_plan_policy_is_one_line(setup, config, needle):
    plan = write_plan(setup, f'[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\n{config}\n')
    assert_one_line_exit_2(run_cli("validate", str(plan), "--predict-only", cache=setup), needle)


def test_ngram_budget_tree_is_refused(setup):
    plan = write_plan(setup, '[[config]]\ndtype = "fp32"\ndraft = "ngram"\npolicy = { name = "budget_tree" }\n')
    assert_one_line_exit_2(run_cli("validate", str(plan), "--predict-only", cache=setup), "applies to draft kind")
