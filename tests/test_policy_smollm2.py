"""The dynamic policies on the shipped SmolLM2-135M fp32 HumanEval trace (batch 1; exit layers
10, 20, 25, 28): the simulator's replay of the trace under each policy emits, round by round, the
tokens the live engine emits on the same prompts, and the live output is the traced greedy one.
The first prompts and tokens only (the test's time); skipped when the trace or the weights are
absent."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from simspec.config import parse_scenario  # noqa: E402
from simspec.drafters import DraftSpec  # noqa: E402
from simspec.live.engine import generate  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.policies import get as policy  # noqa: E402
from simspec.sim.run import simulate  # noqa: E402

pytestmark = pytest.mark.realmodel

TRACE = Path(__file__).resolve().parents[1] / "traces" / "smollm2-135m__humaneval-b1-fp32.parquet"
PROMPTS, NEW, GAMMA = 1, 24, 5
CASES = [("adaptive", {"ema": 0.5, "start": 3}, "early_exit:25"),
         ("dynamic_exit", {"step_cost": 0.3}, "early_exit:25")]


@pytest.fixture(scope="module")
def smol():
    if not TRACE.exists():
        pytest.skip(f"{TRACE.name} is not shipped in this checkout")
    from simspec.models import load_model
    from simspec.trace.schema import load_trace

    try:
        target = load_model("smollm2-135m", dtype="fp32")
    except Exception as exc:  # weight package missing
        pytest.skip(f"SmolLM2-135M unavailable: {exc}")
    return target, load_trace(TRACE)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_smollm2_replayed_rounds_equal_live(smol, case):
    tgt, trace = smol
    name, values, spec_text = case
    spec = DraftSpec.parse(spec_text)
    full = policy(name).values(values, None, "policy")
    live = []
    for i in range(PROMPTS):
        traced = trace.seq_tokens(i).tolist()[:NEW]
        kv = KV(tgt.model, 1)
        res = generate(tgt.model, [trace.seq_prompt(i).tolist()], len(traced),
                       policy(name).fn("live")(full, tgt, spec, kv, None, None, GAMMA, trace), Tree.chain(GAMMA),
                       target_kv=kv)
        assert res.outputs[0] == traced
        live += res.stats.per_round
    sc = parse_scenario({
        "target": {"cost": {"step_ms": 10.0}, "layers": 30},
        "draft": {"kind": spec.kind, "exit_layer": spec.layers},
        "acceptance": {"trace": str(TRACE), "drafter": f"exit{spec.layers}", "sequences": list(range(PROMPTS))},
        "speculation": {"draft_len": GAMMA, "first_round": "with_prefill", "clip_to_budget": True,
                        "policy": {"name": name, **values}},
        "workload": {"requests": PROMPTS, "arrival": "closed", "concurrency": 1, "dataset": "trace",
                     "max_output_len": NEW},
        "serving": {"max_batch": 1, "seed": 0},
    }, str(TRACE.parent / "s.toml"))
    sim = simulate(sc, str(TRACE.parent / "s.toml"), detail=True)
    assert [it.tokens for it in sim.iterations[0]] == live
    assert max(live) > 1
