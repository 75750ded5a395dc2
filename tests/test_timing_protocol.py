"""The timing protocol on fake clocks: no test here sleeps or depends on this machine's speed.

A fake host runs each point at its fast-state time, times 2 while a scripted slow phase holds
(the shared hosts' GEMM flipped between ~44 and ~88 ms in phases of seconds to minutes), plus a
small deterministic jitter; the clock moves only by what the fake measurements take."""

from __future__ import annotations

import random
import statistics

import pytest

from simspec.timing import estimate
from simspec.timing.protocol import Protocol, pass_order, run

FAST = {"gemm": 0.044, "gemv": 0.054, "prefill": 0.30, "verify": 0.12}


class Host:
    """A fake machine: `slow(t)` says whether time t is in a slow phase (x `factor`)."""

    def __init__(self, slow=lambda t: False, factor: float = 2.0, jitter: float = 0.01, seed: int = 1):
        self.now, self.slow, self.factor = 0.0, slow, factor
        self.rng, self.jitter = random.Random(seed), jitter
        self.log: list[str] = []

    def clock(self) -> float:
        return self.now

    def measure(self, point: str) -> float:
        t = FAST[point] * (self.factor if self.slow(self.now) else 1.0) * (1 + self.jitter * self.rng.random())
        self.now += t
        self.log.append(point)
        return t


def phases(fast_s: float, slow_s: float):
    """Alternating phases: slow for slow_s seconds, then fast for fast_s, and so on."""
    return lambda t: (t % (fast_s + slow_s)) < slow_s


def test_estimate_recovers_the_fast_state_under_2x_phases():
    """Fast only 30% of the time, in 1.5 s phases: the median reads the slow state, the minimum
    over interleaved passes the fast one (within the 1% jitter)."""
    host = Host(phases(1.5, 3.5))
    res = run(list(FAST), host.measure, Protocol(max_passes=40, budget_s=1e9), clock=host.clock)
    for p, fast in FAST.items():
        assert res.estimate(p) == pytest.approx(fast, rel=0.011)
        assert statistics.median(res.samples[p]) > 1.5 * fast  # a median estimator would fail here
        assert res.noise(p) > 0.3  # the slow phases show in the noise figure
    assert res.stop == "agreed" and 4 <= res.passes < 40


def test_a_quiet_host_stops_as_soon_as_the_halves_may_agree():
    host = Host(jitter=0.005)
    res = run(list(FAST), host.measure, Protocol(min_passes=4), clock=host.clock)
    assert res.stop == "agreed" and res.passes == 4
    med, mx = res.halves()
    assert med <= 0.02 and mx <= 0.05
    assert all(res.noise(p) < 0.006 for p in FAST)


def test_halves_that_never_agree_stop_at_the_budget_and_say_so():
    """Odd passes fast, even passes 20% slow, forever: the halves disagree by 20%. Each pass takes
    about 0.52-0.62 s; a 6 s budget stops before a pass that would end past it."""
    host = Host(jitter=0.0)
    n = {"i": 0}

    def measure(p):
        t = host.measure(p) * (1.2 if (n["i"] // len(FAST)) % 2 else 1.0)
        n["i"] += 1
        return t

    res = run(list(FAST), measure, Protocol(budget_s=6.0, max_passes=100), clock=host.clock)
    assert res.stop == "budget" and res.halves()[0] == pytest.approx(0.2)
    assert res.seconds <= 6.0 and res.seconds + res.seconds / res.passes > 6.0
    assert "time budget 6 s" in res.line()
    res = run(list(FAST), measure, Protocol(budget_s=1e9, max_passes=7), clock=Host().clock)
    assert res.stop == "max_passes" and res.passes == 7


def test_a_run_inside_one_slow_phase_agrees_on_it_unless_it_spans_longer():
    """Slow from 0 to 5 s, then fast; a pass takes ~1.03 s while slow. Four slow passes agree on
    the slow state (the halves interleave inside the phase); with min_seconds past the phase,
    the run goes on until both halves met the fast state, and the estimate is the fast time."""
    host = Host(lambda t: t < 5.0, jitter=0.002)
    res = run(list(FAST), host.measure, Protocol(budget_s=1e9, max_passes=50), clock=host.clock)
    assert res.stop == "agreed" and res.passes == 4
    assert all(res.estimate(p) > 1.9 * f for p, f in FAST.items())  # the limit min_seconds is for
    host = Host(lambda t: t < 5.0, jitter=0.002)
    res = run(list(FAST), host.measure, Protocol(budget_s=1e9, max_passes=50, min_seconds=6.0), clock=host.clock)
    assert res.stop == "agreed" and res.seconds >= 6.0
    assert all(res.samples[p][i] > 1.9 * FAST[p] for p in FAST for i in range(4))
    assert all(res.estimate(p) == pytest.approx(f, rel=0.003) for p, f in FAST.items())
    assert max(res.halves()) <= 0.003


def test_passes_are_interleaved_never_back_to_back():
    host = Host()
    res = run(list(FAST), host.measure, Protocol(max_passes=10, tolerance=0.0, tolerance_max=0.0),
              clock=host.clock)
    assert res.passes == 10 and all(sorted(o) == sorted(FAST) for o in res.orders)
    assert all(a != b for a, b in zip(host.log, host.log[1:]))  # pass boundaries included
    assert len({tuple(o) for o in res.orders}) > 3  # a new random order per pass


def test_groups_run_together_inside_a_pass_in_random_order():
    pts = [(b, q) for b in (1, 4, 16) for q in (1, 2, 4)]
    rng, prev, firsts = random.Random(0), None, set()
    for _ in range(20):
        order = pass_order(pts, rng, lambda p: p[0], prev)
        blocks = [order[i:i + 3] for i in (0, 3, 6)]
        assert all(len({p[0] for p in b}) == 1 for b in blocks)  # contiguous groups
        assert order[0] != prev
        firsts.add(order[0][0])
        prev = order[-1]
    assert firsts == {1, 4, 16}


def test_same_seed_same_orders_and_figures():
    def once(seed):
        host = Host(phases(0.7, 0.9))
        return run(list(FAST), host.measure, Protocol(seed=seed, budget_s=1e9), clock=host.clock)

    a, b, c = once(3), once(3), once(4)
    assert a.orders == b.orders and a.samples == b.samples and a.summary() == b.summary()
    assert a.orders != c.orders


def test_estimate_noise_and_halves_arithmetic():
    s = [2.0, 1.0, 1.5, 1.1, 4.0]  # odd passes: 2.0, 1.5, 4.0; even: 1.0, 1.1
    assert estimate.fastest(s) == 1.0 and estimate.noise(s) == pytest.approx(0.5)
    assert estimate.halves(s) == (1.5, 1.0) and estimate.disagreement(s) == pytest.approx(0.5)
    assert estimate.halves([1.0]) is None and estimate.disagreement([1.0]) is None


def test_settings_are_checked_and_round_trip_through_a_sidecar():
    assert Protocol().problems() == []
    bad = dict(Protocol(min_passes=0, max_passes=0, tolerance=0.1, tolerance_max=0.05, budget_s=0,
                        min_seconds=1).problems())
    assert set(bad) == {"tolerance", "min_passes", "max_passes", "budget_s", "min_seconds"}
    with pytest.raises(ValueError, match="min_passes"):
        run(["a"], lambda p: 1.0, Protocol(min_passes=0))
    host = Host()
    res = run(list(FAST), host.measure, Protocol(seed=9, budget_s=30.0), clock=host.clock)
    s = res.summary()
    assert Protocol.from_dict(s) == res.protocol
    assert s["passes"] == res.passes and s["stop"] == "agreed" and s["points"] == len(FAST)
    assert s["halves_disagreement"]["median"] <= 0.02 and s["noise"]["max"] >= s["noise"]["median"]


def test_within_is_the_rule_agreed_applies():
    """`Protocol.within` meets the tolerance at its bounds, misses past either, and has no verdict
    without both figures; a run's `agreed()` is that rule on its halves."""
    from simspec.timing.protocol import Protocol, Result

    p = Protocol(tolerance=0.02, tolerance_max=0.05)
    assert p.within(0.02, 0.05) and not p.within(0.021, 0.05) and not p.within(0.02, 0.051)
    assert not p.within(None, None) and not p.within(0.01, None)
    r = Result(p, ["a", "b"], {"a": [1.0, 1.01, 1.0, 1.01], "b": [2.0, 2.0, 2.0, 2.0]}, [["a", "b"]] * 4)
    assert r.agreed() == p.within(*r.halves())
