"""`speculation.first_round`, `clip_to_budget` and the drafter's catch-up against
hand-computed timelines.

Linear costs (step + per query token), every draft token accepted, one 16-token prompt and
23 output tokens: every round's price and output is known, so the simulated time must equal the
sum exactly. After a fully accepted round the draft model's cache lacks the last draft token
(never fed), so the next round's first draft step feeds two tokens: BEHIND more.
"""

import pytest

from simspec.config import parse_scenario
from tests.simhelpers import run, single_stream

T_STEP, T_TOK, D_STEP, D_TOK = 10.0, 1.0, 2.0, 0.5  # ms
P, L, G = 16, 23, 4


def scenario(**spec) -> dict:
    d = single_stream(alpha=1.0, gamma=G, tokens=L)
    d["target"]["cost"] = {"step_ms": T_STEP, "per_token_ms": T_TOK}
    d["draft"]["cost"] = {"step_ms": D_STEP, "per_token_ms": D_TOK}
    d["speculation"] |= spec
    return d


def t(q: int) -> float:
    return T_STEP + T_TOK * q


def dr(q: int) -> float:
    return D_STEP + D_TOK * q


FULL = G * dr(1) + t(G + 1)  # a full round: 4 one-token draft steps, a 5-token verify
BEHIND = dr(2) - dr(1)  # catch-up: the first draft step of a round after a fully accepted one


def test_after_prefill_default():
    # prefill: target and drafter read the prompt (1 token); rounds of 5: 6, 11, 16, 21, then 2 left
    res = run(scenario())
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(t(P) + dr(P) + 5 * FULL + 4 * BEHIND)
    assert res.summary["mean_tokens_per_round"] == pytest.approx((L - 1) / 5)


def test_with_prefill_is_the_first_round():
    # first round: the drafter reads the prompt (its last token = root) and drafts 3 more;
    # the target verifies 15 prompt tokens + root + 4 drafts in one pass: 5 tokens
    first = dr(P) + 3 * dr(1) + t(P - 1 + G + 1)
    res = run(scenario(first_round="with_prefill"))
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(first + 4 * (FULL + BEHIND))  # 5, 10, 15, 20, 23
    assert res.summary["mean_tokens_per_round"] == pytest.approx(L / 5)
    assert res.summary["phase_prefill_s"] * 1000 == pytest.approx(first)
    assert res.summary["ttft_p50_s"] * 1000 == pytest.approx(first)


def test_clip_to_budget_shortens_the_last_round():
    first = dr(P) + 3 * dr(1) + t(P - 1 + G + 1)
    last = dr(2) + dr(1) + t(3)  # 3 tokens left: draft 2 (catching up first), verify root + 2
    res = run(scenario(first_round="with_prefill", clip_to_budget=True))
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(first + 3 * (FULL + BEHIND) + last)
    assert res.summary["output_tokens"] == L


def test_clip_applies_to_the_first_round_too():
    d = scenario(first_round="with_prefill", clip_to_budget=True)
    d["workload"]["output_len"] = 3
    res = run(d)
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(dr(P) + dr(1) + t(P - 1 + 3))
    assert res.summary["mean_tokens_per_round"] == pytest.approx(3.0)


def test_no_catch_up_when_a_round_rejects_or_the_drafter_shares_the_cache():
    d = scenario(first_round="with_prefill")
    d["acceptance"] = {"iid": 0.0}  # nothing accepted: one token per round, never behind
    res = run(d)
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(dr(P) + 3 * dr(1) + t(P - 1 + G + 1) + (L - 1) * FULL)
    d = scenario(first_round="with_prefill")  # early exit reads the target's cache: no catch-up
    d["draft"] = {"kind": "early_exit", "exit_layer": 2, "cost": {"step_ms": D_STEP, "per_token_ms": D_TOK}}
    d["target"]["layers"] = 4
    res = run(d)
    assert res.summary["sim_time_s"] * 1000 == pytest.approx(dr(P) + 3 * dr(1) + t(P - 1 + G + 1) + 4 * FULL)


def test_plain_decoding_same_either_way():
    d = single_stream(gamma=0, tokens=50)
    d["target"]["cost"] = {"step_ms": T_STEP, "per_token_ms": T_TOK}
    a = run(d).summary
    b = run(d, speculation__first_round="with_prefill", speculation__clip_to_budget=True).summary
    for key in ("sim_time_s", "ttft_p50_s", "output_tokens", "mean_tokens_per_round"):
        assert a[key] == pytest.approx(b[key]), key


def test_overlap_refuses_with_prefill():
    d = scenario(first_round="with_prefill")
    d["placement"] = {"devices": {"a": {}, "b": {}}, "target": "a", "draft": "b", "overlap": True}
    with pytest.raises(Exception, match="placement.overlap"):
        parse_scenario(d, "test.toml")
