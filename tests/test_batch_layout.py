"""serving.batch_layout: a padded batch (simspec's live loop, HF batched generation) prices a
round at its longest row's context and a prefill at its longest prompt; a packed one (paged
attention) at their means. Checked against the closed form of a linear cost, iteration by
iteration, for both the jump and the round-by-round simulation."""

from __future__ import annotations

import numpy as np
import pytest

from simspec.config import parse_scenario
from simspec.sim.round_cost import CONTEXT_BUCKET
from simspec.sim.run import simulate

STEP, PER_TOKEN, PER_KV = 10.0, 0.05, 0.01  # ms
OUT = 12


def scenario(layout: str, prefill_per_token: bool = True) -> dict:
    return {
        "target": {"cost": {"step_ms": STEP, "per_token_ms": PER_TOKEN, "per_kv_token_ms": PER_KV}},
        "workload": {"requests": 4, "arrival": "closed", "concurrency": 4,
                     "prompt_len": {"dist": "uniform", "min": 20, "max": 900}, "output_len": OUT},
        "serving": {"max_batch": 4, "seed": 3, "batch_layout": layout},
    }


def bucket(x: float) -> int:
    return max(1, int(round(x / CONTEXT_BUCKET))) * CONTEXT_BUCKET


def ms(b: int, q: int, ctx: int) -> float:
    return STEP + PER_TOKEN * b * q + PER_KV * b * ctx


@pytest.mark.parametrize("jump", [True, False])
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_rounds_and_prefill_priced_at_the_longest_or_the_mean(layout, jump):
    res = simulate(parse_scenario(scenario(layout), "layout.toml"), detail=True, jump=jump)
    prompts = res.records.columns()["prompt_len"]
    assert len(set(prompts.tolist())) >= 3  # ragged: the layouts differ
    its = res.iterations[0]
    assert [it.kind for it in its] == ["prefill"] + ["round"] * (OUT - 1)
    pick = max if layout == "padded" else (lambda xs: sum(xs) / len(xs))
    q = max(prompts) if layout == "padded" else max(1, int(round(sum(prompts) / 4)))
    assert its[0].seconds == pytest.approx(ms(4, q, 0) / 1e3, rel=1e-12)
    for j, it in enumerate(its[1:]):  # every row has 1 + j generated tokens before round j
        ctx = bucket(pick([int(p) + 1 + j for p in prompts]))
        assert it.seconds == pytest.approx(ms(4, 1, ctx) / 1e3, rel=1e-12), j


def test_padded_costs_more_and_batch_one_is_the_same():
    packed = simulate(parse_scenario(scenario("packed"), "layout.toml"))
    padded = simulate(parse_scenario(scenario("padded"), "layout.toml"))
    assert padded.summary["throughput_tok_s"] < packed.summary["throughput_tok_s"]
    one = [scenario(x) for x in ("packed", "padded")]
    for d in one:
        d["serving"]["max_batch"] = 1
        d["workload"]["concurrency"] = 1
    a, b = (simulate(parse_scenario(d, "layout.toml")) for d in one)
    assert a.summary == {**b.summary, "wall_s": a.summary["wall_s"]}


def test_unknown_layout_is_refused():
    d = scenario("paged")
    with pytest.raises(Exception, match="batch_layout"):
        parse_scenario(d, "layout.toml")
