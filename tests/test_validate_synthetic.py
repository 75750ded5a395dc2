"""`simspec validate` with `synthetic = "trace"` configs, end to end on tiny fp32 models: the
target is random weights of the traced model's dims (not the traced model), so its own logits
would accept something else; forced to the simulator's replay, the live run's tokens per round
(batch 1) and iteration sequence (a closed serving loop) equal the prediction exactly. Bad
synthetic keys are one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("torch")

from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402
from test_validate import setup  # noqa: E402,F401  (the module's traced tiny models)

# tiny:llama:4's dims with another MLP width: other random weights, the trace's vocabulary
RANDOM = {"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}

CONFIGS = """
[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 3

[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 3
synthetic = "trace"

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 2
synthetic = "trace"
max_batch = 2
arrival = "closed"
requests = 4
"""


def plan_file(d, body: str = CONFIGS):
    cfg = d / "tiny-llama-4l"
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(json.dumps(RANDOM))
    p = d / "synthetic.toml"
    p.write_text(f'name = "syn"\ntarget = "random:{cfg}"\ntrace = "tiny.parquet"\nprompts = 3\n'
                 'max_new_tokens = 20\nthreads = 1\n[profiles]\n"tiny-llama-4l" = { fp32 = "t.parquet" }\n' + body)
    return p


def test_synthetic_live_equals_replay_on_random_weights(setup):  # noqa: F811
    out = setup / "syn-out"
    res = run_cli("validate", str(plan_file(setup)), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "syn.csv")
    assert list(df["config"])[:2] == ["fp32 exit:2 g3", "fp32 exit:2 g3 synthetic"]  # then the serving row
    free, forced = df.iloc[0], df.iloc[1]
    # the random target's own logits accept otherwise: its outputs are not the trace's
    assert free["outputs_equal_trace"] < 3
    assert free["measured_tokens_per_round"] != pytest.approx(free["predicted_tokens_per_round"], rel=1e-9)
    # forced: exactly the simulator's replay, round for round
    assert forced["measured_tokens_per_round"] == pytest.approx(forced["predicted_tokens_per_round"], rel=1e-12)
    assert forced["measured_tokens_per_round"] > 1.0
    block = json.loads((out / "syn.json").read_text())["serving"]
    (row,) = block["rows"]
    assert row["config"].startswith("fp32 exit:3 g2 synthetic serve b2")
    tl = block["timelines"][row["config"]]
    assert [(k, b) for k, _, _, b in tl["live_iterations"]] == [(k, b) for k, _, _, b in tl["sim_iterations"]]
    assert row["measured_tokens_per_round"] == pytest.approx(row["predicted_tokens_per_round"], rel=1e-12)
    assert row["measured_mean_batch"] == pytest.approx(row["predicted_mean_batch"], rel=1e-12) and \
        row["measured_mean_batch"] > 1.0


@pytest.mark.parametrize("body, needle", [
    ('[[config]]\ndtype = "fp32"\nsynthetic = "trace"\n', "give a draft"),
    ('[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ngamma = 2\nsynthetic = "per_position"\n', "synthetic"),
    ('[[config]]\ndtype = "fp32"\ndraft = "model:tiny:qwen2:2"\ngamma = 2\nsynthetic = "trace"\n'
     'pipeline = "sequential"\n', "not with `pipeline`"),
])
def test_bad_synthetic_keys_one_line(setup, body, needle):  # noqa: F811
    res = run_cli("validate", str(plan_file(setup, body)), "--predict-only", cache=setup)
    assert_one_line_exit_2(res, "synthetic.toml", needle)


def test_shipped_cpu_validation_is_forced_exactly():
    """studies/validation/smollm2-synthetic.json (SmolLM2-135M bf16 on this CPU, written by the
    command it records): every synthetic row's tokens per round and mean batch are the
    simulator's; the configs are the plan's."""
    from pathlib import Path

    from simspec.validation.plan import load_plan

    root = Path(__file__).resolve().parents[1] / "studies" / "validation"
    meta = json.loads((root / "smollm2-synthetic.json").read_text())
    assert meta["command"] == "simspec validate studies/validation/smollm2-synthetic.toml"
    plan = load_plan(root / "smollm2-synthetic.toml")
    rows = meta["rows"] + meta["serving"]["rows"]
    assert sorted(r["config"] for r in rows) == sorted(c.label() for c in plan.config)
    forced = [r for r in rows if "synthetic" in r["config"]]
    assert len(forced) == 3 and sum("serve" in r["config"] for r in forced) == 2
    for r in forced:
        assert r["measured_tokens_per_round"] == pytest.approx(r["predicted_tokens_per_round"], rel=1e-12)
    for r in meta["serving"]["rows"]:
        assert r["measured_mean_batch"] == pytest.approx(r["predicted_mean_batch"], rel=1e-12)
    assert pd.read_csv(root / "smollm2-synthetic.csv")["config"].str.contains("synthetic").sum() == 3
