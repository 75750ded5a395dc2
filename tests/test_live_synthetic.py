"""Synthetic acceptance, live: every round of the real engine (batch 1, a static batch, and the
continuous-batching loop with batch > 1) yields exactly the forced accepted count + 1 tokens
(cut only by the round's depth clip and the budget), whatever the logits say.

The expected counts are recomputed here from a fresh oracle of the same seed, replayed over the
engine's own batch composition (static rows, or the serving iterations' request ids), so the
engine's emitted tokens are checked against an independent replay. Tiny random models (fp32)
and, marked realmodel, SmolLM2-135M.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simspec.errors import InputError  # noqa: E402
from simspec.live.drafters import ModelDrafter, NgramDrafter  # noqa: E402
from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.serving import FakeClock, requests_at, serve  # noqa: E402
from simspec.live.synthetic import SyntheticAcceptance, parse_rates  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.models import load_model, tiny_model  # noqa: E402
from simspec.sim.acceptance import SurvivalOracle, chain_survival  # noqa: E402

PROMPTS = [list(range(10, 30)), [40, 41, 42, 43, 44], [1, 2, 3, 1, 2, 3, 1, 2], list(range(100, 133))]
BUDGETS = [17, 9, 13, 20]
RATES = [0.8, 0.6, 0.5]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", layers=3).model, tiny_model("llama", layers=2, seed=7).model


def expected_static(rates, depth, seed, budgets):
    """Per live row and round, the tokens a static batch must emit: a fresh oracle drawn for every
    row each round (finished rows too), capped by the round's clip (largest remaining - 1)."""
    oracle = SurvivalOracle(chain_survival(rates, depth), np.random.default_rng(seed))
    got = [0] * len(budgets)
    per_round = []
    while any(g < m for g, m in zip(got, budgets)):
        clip = min(depth, max(m - g for g, m in zip(got, budgets) if g < m) - 1)
        k = oracle.draw(np.zeros(len(budgets), dtype=np.int64), np.array(got))
        for b, m in enumerate(budgets):
            if got[b] < m:
                n = min(int(k[b]), clip) + 1
                n = min(n, m - got[b])
                per_round.append(n)
                got[b] += n
            else:
                got[b] += min(int(k[b]), clip) + 1  # a finished row still advances
    return per_round


@pytest.mark.parametrize("batch", [1, 4])
def test_static_batch_tokens_per_round_equal_forced(tiny, batch):
    target, dm = tiny
    depth, seed = 4, 3
    prompts, budgets = PROMPTS[:batch], BUDGETS[:batch]
    syn = SyntheticAcceptance.per_position(RATES, depth, seed)
    res = generate(target, prompts, budgets, ModelDrafter(dm), Tree.chain(depth), synthetic=syn)
    assert res.stats.per_round == expected_static(RATES, depth, seed, budgets)
    assert [len(o) for o in res.outputs] == budgets
    assert len(syn.forced) == res.stats.rounds


def test_forced_all_and_none(tiny):
    """Rates 1,1,0: exactly 3 tokens a round (2 drafted + the target's), the last round cut by the
    budget, although the drafter (another random model) never agrees with the target; rate 0: one."""
    target, dm = tiny
    p, m = PROMPTS[0], 14
    res = generate(target, [p], m, ModelDrafter(dm), Tree.chain(4),
                   synthetic=SyntheticAcceptance.per_position([1, 1, 0], 4))
    assert res.stats.per_round == [3, 3, 3, 3, 2]
    assert res.outputs[0] != plain_greedy(target, p, m)  # forced tokens: not the target's greedy output
    res0 = generate(target, [p], 6, ModelDrafter(dm), Tree.chain(4),
                    synthetic=SyntheticAcceptance.per_position([0.0], 4))
    assert res0.stats.per_round == [1] * 6
    assert res0.outputs[0] == plain_greedy(target, p, 6)  # nothing accepted: the target's own tokens


def test_tree_takes_first_child_path(tiny):
    target, dm = tiny
    res = generate(target, [PROMPTS[1]], 10, ModelDrafter(dm), Tree((2, 2, 1)),
                   synthetic=SyntheticAcceptance.per_position([1.0], 3))
    assert res.stats.per_round == [4, 4, 2]


def test_ngram_short_drafts_cap_the_forced_count(tiny):
    """A lookup that proposes nothing cannot have anything accepted: the cap is what was drafted."""
    target, _ = tiny
    res = generate(target, [[5, 6, 7, 8]], 6, NgramDrafter(3), Tree.chain(3),
                   synthetic=SyntheticAcceptance.per_position([1.0], 3))
    assert sum(res.stats.per_round) == 6
    assert len(res.stats.per_round) > 6 // 4


def serve_expected(rates, depth, seed, res, budgets):
    """Per request: the tokens each of its rounds must add, replayed over the run's own
    iterations (their request ids, in row order) with a fresh oracle of the same seed."""
    oracle = SurvivalOracle(chain_survival(rates, depth), np.random.default_rng(seed))
    got = {}
    want = {i: [] for i in range(len(budgets))}
    for it in res.iterations:
        if it.kind == "prefill":
            for rid in it.admitted:
                got[rid] = 1
            continue
        rows = list(it.rids)
        clip = min(depth, max(budgets[r] - got[r] for r in rows) - 1)
        k = oracle.draw(np.zeros(len(rows), dtype=np.int64), np.array([got[r] for r in rows]))
        for r, kk in zip(rows, k):
            n = min(min(int(kk), clip) + 1, budgets[r] - got[r])
            want[r].append(n)
            got[r] += n
    return want


def test_serving_batch_tokens_per_round_equal_forced(tiny):
    target, dm = tiny
    depth, seed = 3, 11
    prompts = PROMPTS * 2
    budgets = BUDGETS * 2
    reqs = requests_at(prompts, budgets, [0.0, 0.0, 0.5, 2.0, 3.0, 3.0, 9.0, 40.0])
    syn = SyntheticAcceptance.per_position(RATES, depth, seed)
    res = serve(target, reqs, ModelDrafter(dm), Tree.chain(depth), max_batch=3, clock=FakeClock(), synthetic=syn)
    assert max(it.batch for it in res.iterations if it.kind == "round") == 3
    want = serve_expected(RATES, depth, seed, res, budgets)
    # per round, per request: the tokens its round added (token_times: one stamp per token)
    for i, rec in enumerate(res.requests):
        stamps = rec.token_times[1:]  # the prefill's token first
        per = [stamps.count(t) for t in sorted(set(stamps))]
        assert per == want[i], i
        assert len(rec.output) == budgets[i]


def test_refusals(tiny):
    target, dm = tiny
    with pytest.raises(ValueError, match="temperature"):
        generate(target, [PROMPTS[0]], 4, ModelDrafter(dm), Tree.chain(2), temperature=0.7,
                 synthetic=SyntheticAcceptance.per_position([0.5], 2))
    with pytest.raises(ValueError, match="arrivals"):
        serve(target, requests_at(PROMPTS[:2], 4, [1.0, 0.0]), ModelDrafter(dm), Tree.chain(2),
              clock=FakeClock(), synthetic=SyntheticAcceptance.per_position([0.5], 2))
    for bad, why in (("", "rates"), ("0.5,x", "not a number"), ("1.5", "in \\[0, 1\\]"), ("nan", "in \\[0, 1\\]"),
                     ("0.5,,0.4", "rates")):
        with pytest.raises(InputError, match=why) as e:
            parse_rates(bad)
        assert e.value.key == "--synthetic" and "\n" not in str(e.value)
    assert parse_rates("0.8, 0.7,0.6") == [0.8, 0.7, 0.6]


@pytest.mark.realmodel
def test_smollm2_batch1_and_serving():
    try:
        lm = load_model("smollm2-135m", dtype="fp32")
    except Exception as exc:  # weight package missing: the Makefile's test target installs it
        pytest.skip(f"SmolLM2-135M unavailable: {exc}")
    t = lm.model
    prompts = [lm.tokenizer(x)["input_ids"] for x in ("def is_prime(n: int) -> bool:\n", "The capital of France is")]
    depth, seed, budgets = 3, 5, [12, 9]
    kv = KV(t, 1)
    syn = SyntheticAcceptance.per_position(RATES, depth, seed)
    res = generate(t, prompts[:1], budgets[:1], ModelDrafter(t, layers=20, shared=kv), Tree.chain(depth),
                   target_kv=kv, synthetic=syn)
    assert res.stats.per_round == expected_static(RATES, depth, seed, budgets[:1])
    kv = KV(t, 0)
    syn = SyntheticAcceptance.per_position(RATES, depth, seed)
    res = serve(t, requests_at(prompts, budgets), ModelDrafter(t, layers=20, shared=kv), Tree.chain(depth),
                max_batch=2, kv=kv, clock=FakeClock(), synthetic=syn)
    assert max(it.batch for it in res.iterations if it.kind == "round") == 2
    want = serve_expected(RATES, depth, seed, res, budgets)
    for i, rec in enumerate(res.requests):
        stamps = rec.token_times[1:]
        assert [stamps.count(x) for x in sorted(set(stamps))] == want[i]
