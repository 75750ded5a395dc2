"""`simspec validate` with policy configs (adaptive draft length, dynamic exit layer) on tiny fp32
models: the plan's `policy` table becomes the scenario's [speculation.policy] and the live run's
policy drafter, and the live tokens per round equal the replay's exactly; bad policy keys in a
plan are one-line errors naming the config."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("torch")

from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402
from test_validate import setup, write_plan  # noqa: E402,F401  (the module's traced tiny models)

CONFIGS = """
[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 4
policy = { name = "adaptive", ema = 0.6, start = 2 }

[[config]]
dtype = "fp32"
draft = "ngram"
gamma = 4
policy = { name = "adaptive" }

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 4
policy = { name = "dynamic_exit", step_cost = 0.3, prior = 1.0 }

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 3
policy = { name = "dynamic_exit", step_cost = 0.3 }
max_batch = 2
arrival = "closed"
requests = 4
"""


def test_policy_configs_replay_exactly(setup):  # noqa: F811
    out = setup / "pol-out"
    res = run_cli("validate", str(write_plan(setup, CONFIGS)), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "tiny.csv")
    df = df[~df["config"].str.contains(" serve ")]
    assert list(df["config"]) == ["fp32 exit:2 g4 adaptive(ema=0.6,start=2)", "fp32 ngram g4 adaptive",
                                  "fp32 exit:3 g4 dynamic_exit(prior=1,step_cost=0.3)"]
    assert (df["outputs_equal_trace"] == 3).all(), df[["config", "outputs_equal_trace"]]
    assert df["measured_tokens_per_round"].to_numpy() == pytest.approx(
        df["predicted_tokens_per_round"].to_numpy(), rel=1e-12)
    assert df["measured_tokens_per_round"].min() > 1.0
    (row,) = json.loads((out / "tiny.json").read_text())["serving"]["rows"]
    assert row["config"].startswith("fp32 exit:3 g3 dynamic_exit(step_cost=0.3) serve b2")
    assert row["measured_tokens_per_round"] > 1.0


@pytest.mark.parametrize("policy, needles", [
    ('{ name = "adaptive", ema = 3 }', ("config[0]", "policy.ema", "outside 0.05..1")),
    ('{ name = "adaptive", nope = 1 }', ("config[0]", "policy.nope", "has no parameter")),
    ('{ ema = 0.5 }', ("config[0]", "policy.name", "required")),
    ('{ name = "nope" }', ("config[0]", "policy.name", "unknown policy 'nope'")),
    ('{ name = "dynamic_exit", min_layer = 9 }', ("min_layer", "traced early-exit")),
])
def test_bad_policy_in_plan_is_one_line(setup, policy, needles):  # noqa: F811
    body = f'[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ngamma = 3\npolicy = {policy}\n'
    assert_one_line_exit_2(run_cli("validate", str(write_plan(setup, body)), "--predict-only", cache=setup), *needles)


def test_policy_on_a_tree_or_a_wrong_kind_is_refused(setup):  # noqa: F811
    body = '[[config]]\ndtype = "fp32"\ndraft = "ngram"\ngamma = 3\npolicy = { name = "dynamic_exit" }\n'
    assert_one_line_exit_2(run_cli("validate", str(write_plan(setup, body)), "--predict-only", cache=setup),
                           "config[0]", "applies to draft kind 'early_exit'")
    body = '[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ntree = [2, 1]\npolicy = { name = "adaptive" }\n'
    assert_one_line_exit_2(run_cli("validate", str(write_plan(setup, body)), "--predict-only", cache=setup),
                           "config[0]", "sizes chains")
