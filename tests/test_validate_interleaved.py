"""Repeated, interleaved live runs: the bookkeeping of simspec.validation.rounds on scripted live
runs (the real ServingLoop, scripted forwards, a fake clock whose every iteration is slowed by a
per-round "neighbour" factor), and `simspec validate --rounds 2` end to end on tiny models.

  * the order is interleaved and seeded: each round a permutation, rounds differ, same seed same;
  * a closed loop's protocol timeline takes each iteration's minimum across rounds, and its
    figures are exactly those of a live run at those fastest times;
  * a sequence that moved between rounds is said so and falls back to the raw median;
  * the split-half noise is the odd rounds' estimate against the even rounds';
  * a batch-1 config's figures are its calls' fastest-state times summed, when its rounds made the
    same calls (brute-force recomputation), else the raw median with the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from test_policy_shared import ScriptedForwards, on_grid, workload  # noqa: E402
from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402
from test_validate import setup, write_plan  # noqa: E402,F401  (the module's traced tiny models)

from simspec.live.clocks import FakeClock  # noqa: E402
from simspec.live.serving import Request, ServingLoop, summarize  # noqa: E402
from simspec.sim.workload import poisson_times  # noqa: E402
from simspec.tree_shape import TreeShape  # noqa: E402
from simspec.validation.replay import Workload, kept_per_request  # noqa: E402
from simspec.validation.rounds import (combine_batch1, combine_plain, combine_serving, disagreement_pct, fastest,  # noqa: E402
                                       interleaved, run_interleaved, same_sequence)
from simspec.validation.rows import Batch1Measured, ServingFigures, ServingMeasured, Timeline  # noqa: E402

TIMED = ("tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s")


def test_order_is_interleaved_and_seeded():
    a = interleaved(6, 5, seed=3)
    assert len(a) == 5 and all(sorted(p) == list(range(6)) for p in a)
    assert len({tuple(p) for p in a}) > 1  # rounds run in different orders
    assert a[0] != list(range(6)) or a[1] != list(range(6))
    assert interleaved(6, 5, seed=3) == a
    assert interleaved(6, 5, seed=4) != a
    with pytest.raises(ValueError):
        interleaved(3, 0)


@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_a_configs_runs_are_at_least_half_a_round_apart(n):
    """Brute force over the whole schedule: positions in one long sequence of runs."""
    for seed in range(20):
        order = interleaved(n, 4, seed)
        assert all(sorted(p) == list(range(n)) for p in order)
        flat = [c for p in order for c in p]
        for c in range(n):
            at = [i for i, x in enumerate(flat) if x == c]
            assert min(b - a for a, b in zip(at, at[1:])) >= n - n // 2
    assert len({tuple(interleaved(17, 2, s)[1]) for s in range(10)}) > 1  # later rounds still random


def test_run_interleaved_measures_each_config_once_per_round_in_that_order():
    clock = FakeClock(step=0.0)
    calls, seen = [], []

    def measure(i: int, r: int):
        clock.sleep_until(clock.t + 1.0)
        calls.append((r, i))
        return (i, r, clock.t)

    out = run_interleaved(4, 3, 9, measure, lambda r, pos, i, res: seen.append((r, pos, i, res is None)))
    order = interleaved(4, 3, 9)
    assert calls == [(r, i) for r, perm in enumerate(order, 1) for i in perm]
    assert [[x[1] for x in results] for results in out] == [[1, 2, 3]] * 4  # per config, round order
    assert all(results[0][0] == i for i, results in enumerate(out))
    assert seen[:2] == [(1, 1, order[0][0], True), (1, 1, order[0][0], False)] and len(seen) == 24
    # interleaved in time: a config's rounds are spread over the run, not back to back
    times = {i: [t for _, _, t in out[i]] for i in range(4)}
    assert all(np.diff(ts).min() >= 2.0 for ts in times.values())


# -- scripted live rounds ----------------------------------------------------------------------

class SlowedForwards(ScriptedForwards):
    """Iteration k lasts its scripted time x mult[k] (a neighbour's slow phase); `bump`
    changes the script's acceptance (a sequence that moves between rounds)."""

    def __init__(self, clock, depth, mult, bump=0):
        super().__init__(clock, depth)
        self.mult, self.calls, self.bump = mult, 0, bump

    def _spend(self, seconds: float) -> None:
        self.clock.sleep_until(self.clock.t + seconds * float(self.mult[self.calls]))
        self.calls += 1

    def round(self, depth):
        if self.bump and self.rows:
            self.rows[0][1] += self.bump  # shifts the scripted acceptance of the first row
        return super().round(depth)


N, DEPTH, MAX_BATCH, CAP = 12, 3, 4, 90


def one_round(mult, concurrency=3, bump=0, seed=0):
    prompt, budget = workload(seed, N)
    arrival = np.zeros(N) if concurrency else on_grid(poisson_times(N, 1.5, seed))
    clock = FakeClock(step=0.0)
    reqs = [Request([rid] + [5] * (int(p) - 1), int(b), float(t))
            for rid, (p, b, t) in enumerate(zip(prompt, budget, arrival))]
    res = ServingLoop(SlowedForwards(clock, DEPTH, mult, bump), reqs, DEPTH, DEPTH + 1, max_batch=MAX_BATCH,
                      kv_capacity_tokens=CAP, concurrency=concurrency, eos=None, clock=clock).run()
    s = summarize(res)
    its = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    m = ServingMeasured(**ServingFigures.summary(s, its), requests=s["requests"], output_tokens=s["output_tokens"],
                        elapsed_s=s["elapsed_s"], prefill_s=1.0, draft_s=0.0, verify_s=2.0, other_s=0.0,
                        wall_s=1.0, cpu_s=0.5, outputs_equal_trace=N)
    t = Timeline([r.arrival for r in res.requests], its, kept_per_request(res.iterations, res.stats.per_round, N))
    return m, t


def builder(concurrency=3, seed=0):
    prompt, budget = workload(seed, N)
    arrival = None if concurrency else on_grid(poisson_times(N, 1.5, seed)).tolist()

    def make(t: Timeline) -> Workload:
        return Workload([int(p) for p in prompt], [int(b) for b in budget], t.kept, TreeShape.chain(DEPTH),
                        MAX_BATCH, CAP, arrivals=arrival, concurrency=concurrency)
    return make


def slow_phases(rounds: int, n: int, seed: int = 0) -> np.ndarray:
    """Per round, per iteration: 1, or ~2 inside a slow phase of a random stretch."""
    rng = np.random.default_rng(seed)
    m = np.ones((rounds, n + 50))
    for r in range(rounds):
        a = int(rng.integers(0, n))
        m[r, a:a + int(rng.integers(5, 40))] = 2.0 + rng.random()
        m[r] *= 1.0 + 0.05 * rng.random(n + 50)
    return m


def test_closed_loop_takes_each_iterations_fastest_state():
    n_its = len(one_round(np.ones(999))[1].iterations)
    mult = slow_phases(4, n_its)
    per_round = [one_round(m) for m in mult]
    got, tl, info = combine_serving(per_round, builder(), closed=True)
    assert info["method"] == "fastest-state" and info["identical"] and info["note"] is None
    secs = np.array([[it[2] for it in t.iterations] for _, t in per_round])
    assert fastest([t for _, t in per_round]) == secs.min(axis=0).tolist()
    assert [it[2] for it in tl.iterations] == pytest.approx(secs.min(axis=0).tolist(), rel=1e-12)
    # its figures are a live run's at the fastest state (every iteration at its round-minimum)
    best, _ = one_round(mult.min(axis=0))
    for k in (*TIMED, "tokens_per_round", "mean_batch"):
        assert getattr(got, k) == pytest.approx(getattr(best, k), rel=1e-12), k
    assert all(got.tok_s > m.tok_s for m, _ in per_round)  # faster than every raw round
    assert (got.wall_s, got.cpu_s) == (4.0, 2.0)
    # split-half: the fastest state of rounds 1 and 3 against that of rounds 2 and 4
    odd, _ = one_round(mult[[0, 2]].min(axis=0))
    even, _ = one_round(mult[[1, 3]].min(axis=0))
    for k in TIMED:
        assert info["split_half_pct"][k] == pytest.approx(disagreement_pct(getattr(odd, k), getattr(even, k)),
                                                          rel=1e-9, abs=1e-9), k
    assert info["split_half_pct"]["tok_s"] > 0.1
    # (b) per round: the policy on each round's own times is that round, exactly
    assert all(abs(x) < 1e-9 for v in info["dynamics_error_pct"].values() for x in v)
    assert info["per_round"]["tok_s"] == [m.tok_s for m, _ in per_round]
    j = int(np.argmax(secs.max(axis=0) / secs.min(axis=0)))
    col = secs[:, j]
    assert info["iteration_spread_pct"][j] == pytest.approx(
        (np.percentile(col, 90) - np.percentile(col, 10)) / col.min() * 100, abs=1e-3)


def test_a_sequence_that_moved_is_said_and_falls_back_to_raw_figures():
    n_its = len(one_round(np.ones(999))[1].iterations)
    mult = slow_phases(3, n_its, seed=1)
    per_round = [one_round(mult[0]), one_round(mult[1]), one_round(mult[2], bump=1)]
    assert same_sequence([t for _, t in per_round[:2]]) is None
    # same kinds and batch sizes but other tokens kept per round: not the same run either
    t = per_round[0][1]
    rid = next(i for i, k in enumerate(t.kept) if len(set(k)) > 1)
    swapped = Timeline(t.arrivals, t.iterations, [k[::-1] if i == rid else k for i, k in enumerate(t.kept)])
    assert "kept other tokens" in same_sequence([t, swapped])
    why = same_sequence([t for _, t in per_round])
    assert why is not None and "round 3" in why
    got, tl, info = combine_serving(per_round, builder(), closed=True)
    assert info["method"] == "raw median" and info["identical"] is False and "round 3" in info["note"]
    for k in TIMED:
        assert getattr(got, k) == pytest.approx(float(np.median([getattr(m, k) for m, _ in per_round])), abs=1e-9), k
    k = info["timeline_round"] - 1
    assert per_round[k][0].tok_s == pytest.approx(got.tok_s, abs=1e-9) and tl == per_round[k][1]


def test_poisson_keeps_raw_figures_with_their_spread_and_split_half():
    n_its = len(one_round(np.ones(999), concurrency=None)[1].iterations)
    mult = slow_phases(4, n_its, seed=2)
    per_round = [one_round(m, concurrency=None) for m in mult]
    got, _, info = combine_serving(per_round, builder(concurrency=None), closed=False)
    assert info["method"] == "raw median"
    for k in TIMED:
        vals = [getattr(m, k) for m, _ in per_round]
        assert getattr(got, k) == pytest.approx(float(np.median(vals)), abs=1e-9)
        assert info["spread"][k]["p10"] == pytest.approx(np.percentile(vals, 10))
        assert info["spread"][k]["p90"] == pytest.approx(np.percentile(vals, 90))
        want = disagreement_pct(float(np.median(vals[0::2])), float(np.median(vals[1::2])))
        assert info["split_half_pct"][k] == pytest.approx(want), k
    assert info["spread"]["tok_s"]["p90"] > info["spread"]["tok_s"]["p10"]
    # (b) Poisson too: each round's own times through the policy give that round (waits included)
    assert all(abs(x) < 1e-9 for v in info["dynamics_error_pct"].values() for x in v)


def test_plain_configs_take_the_median_of_their_rounds():
    ms = [Batch1Measured(t, 2.0, new_tokens=60, prefill_s=p, draft_s=0.1, verify_s=1.0, other_s=0.1, wall_s=3.0,
                         cpu_s=2.0, outputs_equal_trace=e) for t, p, e in ((10.0, 1.0, 3), (14.0, 3.0, 2), (11.0, 2.0, 3))]
    got, info = combine_plain(ms)
    assert (got.tok_s, got.prefill_s, got.new_tokens) == (11.0, 2.0, 60)
    assert (got.wall_s, got.outputs_equal_trace) == (9.0, 2)
    assert info["split_half_pct"]["tok_s"] == pytest.approx(disagreement_pct(10.5, 14.0))
    one, info1 = combine_plain(ms[:1])
    assert one == ms[0] and info1["method"] == "single round"


def _batch1_round(calls, kept, slow):
    """One scripted batch-1 round: `calls` [(phase, seconds)] each slowed by its `slow` factor."""
    secs = [(name, sec * f) for (name, sec), f in zip(calls, slow)]
    phases = {k: sum(s for n, s in secs if n == k) for k in ("prefill", "draft", "verify", "other")}
    total = sum(phases.values())
    m = Batch1Measured(sum(kept) / total, float(np.mean(kept)), new_tokens=sum(kept),
                       **{f"{k}_s": round(v, 4) for k, v in phases.items()}, wall_s=total, cpu_s=total,
                       outputs_equal_trace=4)
    from simspec.validation.live import calls_timeline

    return m, calls_timeline(secs, kept)


def test_batch1_configs_take_each_calls_fastest_state():
    rng = np.random.default_rng(7)
    kept = [1, 3, 2, 4, 1, 2]
    calls = [("prefill", 0.5)] + [(k, float(rng.uniform(0.01, 0.2))) for _ in kept[1:]
                                  for k in ("draft", "verify", "other", "draft", "other")]
    slow = [np.where(rng.random(len(calls)) < 0.4, 2.0, 1.0) for _ in range(3)]  # a neighbour's phases
    per_round = [_batch1_round(calls, kept, f) for f in slow]
    got, info = combine_batch1(per_round)
    assert info["method"] == "fastest-state" and info["calls"] == len(calls)
    best = np.min(np.array([[s * f for (_, s), f in zip(calls, fs)] for fs in slow]), axis=0)  # brute force
    want = {k: sum(b for (n, _), b in zip(calls, best) if n == k) for k in ("prefill", "draft", "verify", "other")}
    assert got.tok_s == pytest.approx(sum(kept) / sum(want.values()), rel=1e-8)
    for k, v in want.items():
        assert getattr(got, f"{k}_s") == pytest.approx(v, abs=1e-4), k
    assert got.tok_s >= max(m.tok_s for m, _ in per_round)  # never slower than any one round
    assert got.new_tokens == sum(kept) and got.tokens_per_round == pytest.approx(np.mean(kept))
    assert got.wall_s == pytest.approx(sum(m.wall_s for m, _ in per_round), abs=0.01)
    raw = [m.tok_s for m, _ in per_round]
    assert info["raw_median"]["tok_s"] == pytest.approx(float(np.median(raw)))
    odd = np.min([[s * f for (_, s), f in zip(calls, fs)] for fs in (slow[0], slow[2])], axis=0)
    assert info["split_half_pct"]["tok_s"] == pytest.approx(disagreement_pct(sum(kept) / odd.sum(), raw[1]))
    # all calls slowed alike in every round: fastest-state is the fastest round itself
    even = [_batch1_round(calls, kept, np.full(len(calls), f)) for f in (1.3, 1.0)]
    assert combine_batch1(even)[0].tok_s == pytest.approx(even[1][0].tok_s, rel=1e-8)


def test_batch1_rounds_that_made_other_calls_keep_the_raw_median():
    kept = [1, 2, 2]
    calls = [("prefill", 0.5), ("draft", 0.1), ("verify", 0.2), ("draft", 0.1), ("verify", 0.2)]
    a = _batch1_round(calls, kept, np.ones(5))
    b = _batch1_round(calls, [1, 3, 1], np.full(5, 1.5))  # same calls, other tokens kept per round
    got, info = combine_batch1([a, b])
    assert info["method"] == "raw median" and "kept other tokens" in info["note"]
    assert got.tok_s == pytest.approx(float(np.median([a[0].tok_s, b[0].tok_s])))
    c = _batch1_round(calls[:3], [1, 2], np.ones(3))  # fewer calls
    assert combine_batch1([a, c])[1]["method"] == "raw median"
    one, info1 = combine_batch1([a])
    assert one == a[0] and info1["method"] == "single round"


# -- the command, end to end ---------------------------------------------------------------------

PLAN = """
[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 3
max_batch = 2
arrival = "closed"
concurrency = 2
requests = 4

[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2
max_batch = 3
arrival = "poisson"
rate = 40.0
seed = 7
requests = 4
"""


def test_validate_rounds_2_smoke(setup):  # noqa: F811
    plan = write_plan(setup, PLAN, order_seed=5)
    out = setup / "rounds"
    res = run_cli("validate", str(plan), "--rounds", "2", "--out", str(out), "--steadiness", "0.5", cache=setup)
    assert res.returncode == 0, res.stderr
    for r in (1, 2):  # progress per config per round
        for pos in (1, 2, 3):
            assert f"[round {r}/2, {pos}/3]" in res.stdout
    assert "decomposed error" in res.stdout
    meta = json.loads((out / "tiny.json").read_text())
    steady = meta["machine_steadiness"]  # probed just before and just after the live runs
    assert steady["before"]["windows"] and steady["after"]["windows"]
    assert steady["after"]["summary"]["gemm_gflop_s"]["spread"] >= 1.0
    proto = meta["protocol"]
    labels = [r["config"] for r in meta["rows"]] + [r["config"] for r in meta["serving"]["rows"]]
    assert proto["rounds"] == 2 and proto["order"] == [[labels[i] for i in p] for p in interleaved(3, 2, 5)]
    assert set(meta["rounds"]) == set(labels) and all(v["rounds"] == 2 for v in meta["rounds"].values())
    (closed,) = [c for c in labels if "closed" in c]
    (poisson,) = [c for c in labels if "poisson" in c]
    info = meta["rounds"][closed]
    # greedy, same prompts, same policy: the closed loop repeats, so its figures are fastest-state
    assert info["identical"] and info["method"] == "fastest-state", info["note"]
    assert meta["rounds"][poisson]["method"] == "raw median"
    (b1,) = [r["config"] for r in meta["rows"]]  # the batch-1 config: greedy, so its calls repeat
    assert meta["rounds"][b1]["method"] == "fastest-state", meta["rounds"][b1].get("note")
    assert meta["rounds"][b1]["calls"] > 10
    assert meta["rounds"][b1]["raw_median"]["tok_s"] <= [r for r in meta["rows"]][0]["measured_tok_s"]
    block = meta["serving"]["decomposition"]
    d = block["configs"][closed]
    for k in ("tok_s", "ttft_p50_s", "tpot_p50_s"):  # (b) on a real live run: ~0
        assert abs(d["dynamics"][k]) < 1e-6, (k, d["dynamics"])
        assert len(d["dynamics"]["per_round"][k]) == 2
    assert block["plan"]["dynamics"]["closed_loop"]["tok_s"]["median_abs_error_pct"] < 1e-6
    assert d["acceptance"]["error_pct"] == pytest.approx(0.0, abs=1e-9)  # tiny fp32: replay exact
    assert d["cost"]["matched"] and {"prefill", "round"} <= set(d["cost"]["phase"])
    assert all(b["n"] >= 1 for b in d["cost"]["buckets"])
    assert d["end_to_end"]["tok_s"]["noise_pct"] >= 0
    df = pd.read_csv(out / "tiny.csv")
    served = df[df["config"].isin([closed, poisson])]
    for col in ("rounds", "rounds_method", "noise_tok_s_pct", "acceptance_error_pct", "dynamics_tok_s_error_pct",
                "dynamics_ttft_p50_s_error_pct", "dynamics_tpot_p50_s_error_pct", "cost_prefill_error_pct",
                "cost_round_error_pct", "measured_tok_s_p10", "measured_tok_s_p90"):
        assert served[col].notna().all(), col
    assert (out / "tiny-decomposition.png").stat().st_size > 10_000
    assert "Decomposed error" in (out / "tiny.html").read_text()
    # --measured recomputes the same table, decomposition included, without serving
    again = setup / "rounds2"
    res = run_cli("validate", str(plan), "--measured", str(out / "tiny.json"), "--out", str(again), cache=setup)
    assert res.returncode == 0, res.stderr
    pd.testing.assert_frame_equal(df, pd.read_csv(again / "tiny.csv"))
    repriced = json.loads((again / "tiny.json").read_text())
    assert repriced["serving"]["decomposition"]["configs"][closed]["cost"] == d["cost"]
    assert repriced["machine_steadiness"] == steady  # what the live run saw of the machine is kept


def test_bad_rounds_is_a_one_line_error(setup):  # noqa: F811
    plan = write_plan(setup, PLAN)
    assert_one_line_exit_2(run_cli("validate", str(plan), "--rounds", "0", "--out", str(setup / "r0"), cache=setup),
                           "--rounds", "must be")
    plan = write_plan(setup, PLAN, rounds=0)
    assert_one_line_exit_2(run_cli("validate", str(plan), "--out", str(setup / "r0"), cache=setup),
                           str(plan), "rounds", "greater than 0")


def test_a_record_the_policy_cannot_replay_is_said_not_fatal():
    n_its = len(one_round(np.ones(999))[1].iterations)
    per_round = [one_round(m) for m in slow_phases(2, n_its, seed=3)]
    broken = [(m, Timeline(t.arrivals, t.iterations[:-1], t.kept)) for m, t in per_round]  # an iteration lost
    got, _, info = combine_serving(broken, builder(), closed=True)
    assert info["method"] == "raw median" and "could not replay" in info["note"]
    assert all(np.isnan(x) for x in info["dynamics_error_pct"]["tok_s"])
    assert got.tok_s == pytest.approx(float(np.median([m.tok_s for m, _ in per_round])), abs=1e-9)
