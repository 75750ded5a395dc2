"""The simulator against closed forms (Leviathan et al. 2023; per-position chains; trees)."""

import math

import pytest

from simspec import analytic
from simspec.tree_shape import TreeShape
from tests.simhelpers import run, single_stream


@pytest.mark.parametrize("alpha", [0.6, 0.8, 0.9])
@pytest.mark.parametrize("gamma", [1, 2, 5, 10])
def test_mean_tokens_per_round_iid(alpha, gamma):
    res = run(single_stream(alpha, gamma, tokens=120_000))
    assert res.summary["output_tokens"] == 120_000
    expected = analytic.chain_expected_tokens(alpha, gamma)
    assert res.summary["mean_tokens_per_round"] == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("c", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("alpha,gamma", [(0.6, 2), (0.8, 5), (0.9, 10), (0.7, 3)])
def test_speedup_over_plain(alpha, gamma, c):
    tokens = 150_000
    plain = run(single_stream(gamma=0, tokens=tokens)).summary["throughput_tok_s"]
    spec = run(single_stream(alpha, gamma, c, tokens=tokens)).summary["throughput_tok_s"]
    assert spec / plain == pytest.approx(analytic.speedup(alpha, gamma, c), rel=0.01)


def test_leviathan_table1_scenario():
    """The issue's scenario file, exactly: 3.69x over plain decoding."""
    from pathlib import Path

    from simspec.config import load_scenario
    from simspec.sim.run import simulate

    path = Path(__file__).parent.parent / "studies" / "leviathan.toml"
    res = simulate(load_scenario(path), str(path))
    plain_tok_s = 1 / 0.010
    assert res.summary["throughput_tok_s"] / plain_tok_s == pytest.approx(3.69, abs=0.02)
    assert res.summary["output_tokens"] == 200_000


@pytest.mark.parametrize("rates", [[0.9, 0.7, 0.5], [0.8, 0.6, 0.6, 0.3, 0.9], [0.95]])
def test_per_position(rates):
    res = run(single_stream(gamma=len(rates), tokens=150_000, per_position=rates))
    expected = analytic.per_position_expected_tokens(rates)
    assert res.summary["mean_tokens_per_round"] == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("tree,probs", [([2, 2, 1], [0.6, 0.2, 0.1]), ([3, 1], [0.5, 0.25, 0.15])])
def test_tree_value_matches_simulation(tree, probs):
    d = single_stream(gamma=len(tree), tokens=150_000, rank_probs=probs)
    d["speculation"]["tree"] = tree
    res = run(d)
    g = analytic.tree_value(TreeShape(tuple(tree)).nested(), probs)
    assert res.summary["mean_tokens_per_round"] == pytest.approx(g, rel=0.01)


def test_table1_closed_form_values():
    for a, g, want in [(0.6, 2, 1.96), (0.7, 3, 2.53), (0.8, 5, 3.69), (0.9, 10, 6.86)]:
        assert analytic.speedup(a, g, 0.0) == pytest.approx(want, abs=0.005)


def test_tree_value_of_chain_is_chain_formula():
    chain = TreeShape.chain(6).nested()
    assert analytic.tree_value(chain, [0.7]) == pytest.approx(analytic.chain_expected_tokens(0.7, 6))


def test_tree_value_brute_force():
    """G(T) by enumerating every root-to-node path of an irregular tree."""
    tree = [[[], [[]]], [[]], []]
    probs = [0.5, 0.3, 0.1]
    # nodes: root=1; depth1: .5, .3, .1; under rank0: .5*.5, .5*.3 and its child .5*.3*.5; under rank1: .3*.5
    brute = 1 + 0.5 + 0.3 + 0.1 + 0.25 + 0.15 + 0.075 + 0.15
    assert analytic.tree_value(tree, probs) == pytest.approx(brute)


def test_optimal_gamma_is_argmax():
    g, s = analytic.optimal_gamma(0.8, 0.1, 20)
    assert all(analytic.speedup(0.8, k, 0.1) <= s + 1e-12 for k in range(21))
    assert g == max(range(21), key=lambda k: analytic.speedup(0.8, k, 0.1))


def test_overlap_renewal_closed_form():
    """Drafter on another device, t_d <= t_v: a round costs t_v, plus t_d when the
    pre-draft is lost (prob 1 - a^(g+1)); tokens per round unchanged."""
    a, g, c = 0.8, 4, 0.2
    d = single_stream(a, g, c, tokens=150_000)
    d["placement"] = {"devices": {"gpu": {}, "cpu": {}}, "target": "gpu", "draft": "cpu", "overlap": True}
    res = run(d)
    e = analytic.chain_expected_tokens(a, g)
    t_v, t_d = 0.010, g * c * 0.010
    round_time = t_v + t_d * (1 - a ** (g + 1))
    assert res.summary["mean_tokens_per_round"] == pytest.approx(e, rel=0.01)
    assert res.summary["throughput_tok_s"] == pytest.approx(e / round_time, rel=0.01)


def test_analytic_prediction_in_summary_matches():
    from simspec.config import parse_scenario
    from simspec.sim.build import build_round_cost

    sc = parse_scenario(single_stream(0.8, 5, 0.1))
    pred = analytic.predict(sc, build_round_cost(sc, None))
    assert pred["mean_tokens_per_round"] == pytest.approx(analytic.chain_expected_tokens(0.8, 5))
    assert pred["speedup_vs_plain"] == pytest.approx(analytic.speedup(0.8, 5, 0.1))
    assert math.isfinite(pred["throughput_tok_s"])
