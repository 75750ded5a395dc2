"""The dynamic policies (adaptive draft length, dynamic exit layer) live and replayed, on tiny fp32
models: a trace captured here with simspec's own capture, then for every policy
  * the live engine's greedy output equals plain greedy decoding, token for token (batch 1, a
    static batch, and the continuous-batching loop where rows join and leave);
  * the simulator replaying the trace with the same policy emits, round by round, the tokens the
    live run emitted (batch 1, the prefill carrying the first round, rounds clipped to the budget).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simspec.config import parse_scenario  # noqa: E402
from simspec.drafters import DraftSpec  # noqa: E402
from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.serving import FakeClock, requests_at, serve  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.models import load_model  # noqa: E402
from simspec.policies import get as policy  # noqa: E402
from simspec.sim.run import simulate  # noqa: E402

TEXTS = ["def add(a, b):\n    return a + b\n", "hello hello hello hello", "1, 2, 3, 4, 5, 6,",
         "the cat sat on the mat. the cat sat"]
TARGET, DRAFT = "tiny:llama:4", "tiny:qwen2:2"
EXITS = [1, 2, 3]
NEW = 24
GAMMA = 4

# (policy, its parameters, drafter spec, trace column); step_cost small so DEL drafts on tiny models
CASES = [
    ("adaptive", {"ema": 0.5, "start": 2, "margin": 1.0}, "early_exit:3", "exit3"),
    ("adaptive", {"ema": 0.7, "start": 4, "margin": 0.5, "tiers": 2}, f"model:{DRAFT}", "tiny-qwen2-2l"),
    ("adaptive", {"ema": 0.5, "start": 1, "margin": 1.5}, "ngram", "ngram"),
    ("dynamic_exit", {"prior": 1.0, "step_cost": 0.2}, "early_exit:3", "exit3"),
    ("dynamic_exit", {"prior": 4.0, "decay": 0.8, "step_cost": 0.5, "min_layer": 2}, "early_exit:2", "exit2"),
]
IDS = [f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    from tracehelpers import capture_tiny

    d = tmp_path_factory.mktemp("pol")
    capture_tiny(d, TEXTS, target=TARGET, prompts=len(TEXTS), max_new_tokens=NEW, drafters=[DRAFT],
                 exit_layers=EXITS, batch=1, dtype="fp32")
    from simspec.trace.schema import load_trace

    trace = load_trace(d / "tiny.parquet")
    return d, trace, load_model(TARGET, dtype="fp32"), load_model(DRAFT, dtype="fp32")


def live_drafter(name, values, spec_text, tgt, dm, kv, trace):
    spec = DraftSpec.parse(spec_text)
    full = policy(name).values(values, None, "policy")
    return policy(name).fn("live")(full, tgt, spec, kv, dm if spec.kind == "model" else None, None, GAMMA, trace)


def scenario(d, name, values, spec_text, column, n):
    spec = DraftSpec.parse(spec_text)
    draft = {"kind": spec.kind}
    if spec.kind == "early_exit":
        draft["exit_layer"] = spec.layers
    if spec.kind == "model":
        draft |= {"name": DRAFT, "cost": {"step_ms": 1.0}}
    return parse_scenario({
        "target": {"cost": {"step_ms": 10.0, "per_token_ms": 0.1}, "layers": 4},
        "draft": draft,
        "acceptance": {"trace": str(d / "tiny.parquet"), "drafter": column, "sequences": list(range(n))},
        "speculation": {"draft_len": GAMMA, "first_round": "with_prefill", "clip_to_budget": True,
                        "policy": {"name": name, **values}},
        "workload": {"requests": n, "arrival": "closed", "concurrency": 1, "dataset": "trace"},
        "serving": {"max_batch": 1, "seed": 0},
    }, str(d / "s.toml"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_replayed_rounds_equal_live_rounds(traced, case):
    name, values, spec_text, column = case
    d, trace, tgt, dm = traced
    n = trace.n_seq
    prompts = [trace.seq_prompt(i).tolist() for i in range(n)]
    lengths = [len(trace.seq_tokens(i)) for i in range(n)]
    live_rounds, outputs = [], []
    for p, m in zip(prompts, lengths):  # batch 1, each prompt its traced length
        kv = KV(tgt.model, 1)
        res = generate(tgt.model, [p], m, live_drafter(name, values, spec_text, tgt, dm, kv, trace),
                       Tree.chain(GAMMA), target_kv=kv)
        live_rounds += res.stats.per_round
        outputs.append(res.outputs[0])
    assert outputs == [trace.seq_tokens(i).tolist() for i in range(n)]  # the traced greedy path
    sim = simulate(scenario(d, name, values, spec_text, column, n), str(d / "s.toml"), detail=True)
    sim_rounds = [it.tokens for it in sim.iterations[0]]
    assert sim_rounds == live_rounds
    assert sum(live_rounds) == sum(lengths)
    if spec_text != f"model:{DRAFT}":  # (two unrelated random models agree on nothing)
        assert max(live_rounds) > 1  # it drafted and something was accepted


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_live_greedy_equals_plain_greedy(traced, case):
    name, values, spec_text, _ = case
    _, trace, tgt, dm = traced
    prompts = [trace.seq_prompt(i).tolist() for i in range(trace.n_seq)]
    ref = [plain_greedy(tgt.model, p, NEW) for p in prompts]
    kv = KV(tgt.model, len(prompts))  # one static batch: rows of different lengths
    res = generate(tgt.model, prompts, NEW, live_drafter(name, values, spec_text, tgt, dm, kv, trace),
                   Tree.chain(GAMMA), target_kv=kv)
    assert res.outputs == ref
    kv = KV(tgt.model, 0)  # continuous batching: rows join and leave, controller states follow them
    budgets = [NEW, 9, 17, 13, NEW, 5]
    reqs = requests_at([prompts[i % len(prompts)] for i in range(6)], budgets)
    served = serve(tgt.model, reqs, live_drafter(name, values, spec_text, tgt, dm, kv, trace), Tree.chain(GAMMA),
                   max_batch=3, kv=kv, clock=FakeClock(), concurrency=3)
    assert served.outputs == [ref[i % len(prompts)][:m] for i, m in enumerate(budgets)]


def test_dynamic_exit_drafts_at_several_layers(traced):
    """The DEL drafter really switches layers: over a run it drafts at more than one of them."""
    _, trace, tgt, dm = traced
    name, values, spec_text, _ = CASES[3]
    seen = set()
    for i in range(trace.n_seq):
        kv = KV(tgt.model, 1)
        dr = live_drafter(name, values, spec_text, tgt, dm, kv, trace)
        orig = dr.draft

        def spy(*a, _orig=orig, _dr=dr, **k):
            out = _orig(*a, **k)
            seen.update(layer for layer, _ in _dr.passes)
            return out
        dr.draft = spy
        generate(tgt.model, [trace.seq_prompt(i).tolist()], NEW, dr, Tree.chain(GAMMA), target_kv=kv)
    assert len(seen) >= 2, seen
    assert np.all(np.isin(sorted(seen), EXITS))
