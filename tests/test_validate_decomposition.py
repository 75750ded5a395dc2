"""The decomposed error report's parts on scripted live runs (the real ServingLoop, scripted
forwards, a fake clock; no model):
  (b) the serving policy replayed on a live run's own iteration times reproduces that run's
      figures exactly (closed loop and Poisson, KV waits included), and a wrong time shows;
  (c) cost per iteration grouped by phase and by (phase, batch, query tokens, context bucket)
      equals a brute-force recomputation from what the forwards saw;
  (a) the acceptance error is the ratio of the counts (decode tokens per row-round).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("torch")

from test_policy_shared import CASES, ScriptedForwards, accepted, on_grid, workload  # noqa: E402

from simspec.live.clocks import FakeClock  # noqa: E402
from simspec.live.serving import Request, ServingLoop, summarize  # noqa: E402
from simspec.sim.workload import poisson_times  # noqa: E402
from simspec.tree_shape import TreeShape  # noqa: E402
from simspec.validation.decompose import context_bucket, cost, decompose  # noqa: E402
from simspec.validation.replay import ReplayError, Workload, kept_per_request, replay  # noqa: E402
from simspec.validation.rows import ServingFigures, ServingMeasured, ServingPredicted, ServingRow, Timeline  # noqa: E402
from simspec.validation.plan import LiveConfig  # noqa: E402

FIGS = ("throughput_tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s",
        "mean_tokens_per_round", "requests", "output_tokens")


class ShapeForwards(ScriptedForwards):
    """Scripted forwards that also note what each forward saw: rows, tokens so far, depth."""

    def __init__(self, clock, depth, prompt_len, scale=1.0):
        super().__init__(clock, depth)
        self.prompt_len, self.scale, self.seen = prompt_len, scale, []

    def _spend(self, seconds: float) -> None:
        self.clock.sleep_until(self.clock.t + seconds * self.scale)

    def prefill(self, prompts):
        lens = [len(p) for p in prompts]
        self.seen.append(("prefill", len(prompts), sum(lens), sum(lens) / len(lens)))
        return super().prefill(prompts)

    def round(self, depth):
        ctx = [self.prompt_len[rid] + gen for rid, gen in self.rows]
        self.seen.append(("round", len(self.rows), len(self.rows) * (depth + 1), sum(ctx) / len(ctx)))
        return super().round(depth)


def live_run(seed, n, depth, max_batch, capacity, concurrency, scale=1.0):
    prompt, budget = workload(seed, n)
    arrival = np.zeros(n) if concurrency else on_grid(poisson_times(n, 1.5, seed))
    clock = FakeClock(step=0.0)
    reqs = [Request([rid] + [5] * (int(p) - 1), int(b), float(t))
            for rid, (p, b, t) in enumerate(zip(prompt, budget, arrival))]
    fw = ShapeForwards(clock, depth, [int(p) for p in prompt], scale)
    res = ServingLoop(fw, reqs, depth, depth + 1, max_batch=max_batch, kv_capacity_tokens=capacity,
                      concurrency=concurrency, eos=None, clock=clock).run()
    kept = kept_per_request(res.iterations, res.stats.per_round, n)
    w = Workload([int(p) for p in prompt], [int(b) for b in budget], kept, TreeShape.chain(depth), max_batch,
                 capacity, arrivals=None if concurrency else arrival.tolist(), concurrency=concurrency)
    return res, w, fw


@pytest.mark.parametrize("seed,n,depth,max_batch,capacity,concurrency", CASES)
def test_policy_on_live_times_reproduces_the_live_run_exactly(seed, n, depth, max_batch, capacity, concurrency):
    res, w, _ = live_run(seed, n, depth, max_batch, capacity, concurrency)
    live = summarize(res)
    r = replay(w, [it.seconds for it in res.iterations], [it.start for it in res.iterations])
    assert {k: r.figures[k] for k in FIGS} == {k: live[k] for k in FIGS}  # exactly: (b) is 0
    assert [s.row() for s in r.steps] == [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    assert r.first_token == [x.first_token for x in res.requests]
    assert r.finish == [x.finish for x in res.requests]
    # the kept tokens are the script's, row by row (the bookkeeping the replay rests on)
    for rid, ks in enumerate(w.kept):
        gen = 1
        for k in ks:
            assert k == min(accepted(rid, gen, depth), depth) + 1 or k == w.budget[rid] - gen
            gen += k
        assert gen == w.budget[rid]
    # a wrong time shows: the replay prices what it is given, not the live record
    secs = [it.seconds for it in res.iterations]
    secs[len(secs) // 2] += 0.5
    bad = replay(w, secs, [it.start for it in res.iterations] if not concurrency else None)
    assert bad.figures["throughput_tok_s"] < live["throughput_tok_s"]


def test_replay_refuses_a_record_that_does_not_fit():
    res, w, _ = live_run(0, 12, 3, 4, 90, 3)
    secs = [it.seconds for it in res.iterations]
    with pytest.raises(ReplayError, match="recorded"):
        replay(w, secs[:-1])
    with pytest.raises(ReplayError, match="recorded"):
        replay(w, secs + [1.0])
    short = Workload(w.prompt_len, w.budget, [k[:-1] if k else k for k in w.kept], w.shape, w.max_batch,
                     w.kv_capacity, concurrency=3)
    with pytest.raises(ReplayError):
        replay(short, secs)


def test_dynamics_on_a_noisy_clock_is_zero_to_rounding():
    """Durations off the binary grid (a real clock's): the replay's figures agree to ~1e-12."""
    res, w, _ = live_run(1, 16, 4, 3, 80, 5, scale=1.0 / 3.0)
    live = summarize(res)
    r = replay(w, [it.seconds for it in res.iterations], [it.start for it in res.iterations])
    for k in FIGS:
        assert r.figures[k] == pytest.approx(live[k], rel=1e-12), k


def _row(res, w, concurrency, predicted_tpr, sim_rows, rounds=None):
    cfg = LiveConfig(dtype="fp32", draft="early_exit:2", gamma=w.shape.max_depth, max_batch=w.max_batch,
                     arrival="closed", concurrency=concurrency, requests=len(w.prompt_len))
    s = summarize(res)
    its = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    figs = ServingFigures.summary(s, its)
    pred = ServingPredicted(**(figs | {"tokens_per_round": predicted_tpr}), prefill_s=1.0, draft_s=0.5, verify_s=2.0)
    meas = ServingMeasured(**figs, requests=s["requests"], output_tokens=s["output_tokens"], elapsed_s=s["elapsed_s"],
                           prefill_s=1.2, draft_s=0.4, verify_s=2.5, other_s=0.1, wall_s=1.0, cpu_s=1.0,
                           outputs_equal_trace=0)
    return ServingRow(cfg, pred, meas, rounds=rounds, sim=Timeline([0.0] * len(w.prompt_len), sim_rows),
                      live=Timeline([r.arrival for r in res.requests], its, w.kept))


def test_acceptance_error_is_the_ratio_of_counts():
    res, w, _ = live_run(0, 12, 3, 4, 90, 3)
    decode = sum(len(r.output) - 1 for r in res.requests)
    row_rounds = sum(r.rounds for r in res.requests)
    assert decode == sum(map(sum, w.kept)) and row_rounds == sum(map(len, w.kept))
    d = decompose(_row(res, w, 3, 2.5, [it.row() for it in res.iterations]), w)
    a = d["acceptance"]
    assert (a["live_decode_tokens"], a["live_row_rounds"]) == (decode, row_rounds)
    assert a["error_pct"] == pytest.approx((2.5 / (decode / row_rounds) - 1) * 100, rel=1e-12)
    assert a["measured_tokens_per_round"] == pytest.approx(decode / row_rounds, rel=1e-12)


def _brute(items):
    """items: (key, predicted, measured, noise) -> {key: (n, mean pred, mean meas, median noise, ratios)}."""
    g = defaultdict(list)
    for key, p, m, x in items:
        g[key].append((p, m, x))
    out = {}
    for key, v in g.items():
        p = sum(a for a, _, _ in v) / len(v)
        m = sum(b for _, b, _ in v) / len(v)
        xs = sorted(c for _, _, c in v)
        med = xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
        out[key] = (len(v), p, m, med, sorted(b / a for a, b, _ in v))
    return out


@pytest.mark.parametrize("seed,n,depth,max_batch,capacity,concurrency", [CASES[0], CASES[1], CASES[3]])
def test_cost_groups_by_phase_and_bucket_as_brute_force(seed, n, depth, max_batch, capacity, concurrency):
    res, w, fw = live_run(seed, n, depth, max_batch, capacity, concurrency)
    live = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    # a "simulator" pricing rounds 20% low and prefills by a per-batch factor, on the same sequence
    sim = [[k, s, sec * (0.8 if k == "round" else 1.0 + 0.1 * b), b] for k, s, sec, b in live]
    noise = [float(i % 7) for i in range(len(live))]
    steps = replay(w, [it[2] for it in live], [it[1] for it in live]).steps
    c = cost(sim, live, steps, noise)
    assert c["matched"]
    assert len(fw.seen) == len(live)
    by_phase = _brute([(s[0], p[2], m[2], x) for s, p, m, x in zip(fw.seen, sim, live, noise)])
    by_bucket = _brute([((s[0], s[1], s[2], context_bucket(s[3])), p[2], m[2], x)
                        for s, p, m, x in zip(fw.seen, sim, live, noise)])
    assert set(c["phase"]) == set(by_phase) == {"prefill", "round"}
    for k, (cnt, p, m, med, ratios) in by_phase.items():
        got = c["phase"][k]
        assert (got["n"], got["noise_pct"]) == (cnt, med)
        assert got["predicted_s"] == pytest.approx(p) and got["measured_s"] == pytest.approx(m)
        assert got["error_pct"] == pytest.approx((p - m) / m * 100)
        assert got["ratio_p50"] == pytest.approx(float(np.median(ratios)))
    assert c["phase"]["round"]["ratio_p50"] == pytest.approx(1.25)
    assert {(b["phase"], b["batch"], b["query"], b["context"]) for b in c["buckets"]} == set(by_bucket)
    assert len(by_bucket) > 3  # the workload spans several buckets
    for b in c["buckets"]:
        cnt, p, m, med, _ = by_bucket[(b["phase"], b["batch"], b["query"], b["context"])]
        assert (b["n"], b["noise_pct"]) == (cnt, med)
        assert b["predicted_s"] == pytest.approx(p) and b["measured_s"] == pytest.approx(m)


def test_cost_without_a_matching_sequence_groups_each_side_by_phase_and_batch():
    res, w, _ = live_run(0, 12, 3, 4, 90, 3)
    live = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    sim = live[:-1]  # one iteration fewer: no one-to-one pairing
    c = cost(sim, live, None, None)
    assert not c["matched"]
    want = _brute([((k, b), sec, sec, math.nan) for k, _, sec, b in live])
    for b in c["buckets"]:
        n_live = sum(1 for k, _, _, bb in live if (k, bb) == (b["phase"], b["batch"]))
        n_sim = sum(1 for k, _, _, bb in sim if (k, bb) == (b["phase"], b["batch"]))
        assert (b["n"], b["n_predicted"]) == (n_live, n_sim)
        assert b["measured_s"] == pytest.approx(want[(b["phase"], b["batch"])][2])
        assert b["query"] is None and "ratio_p50" not in b


def test_decompose_reports_every_part():
    res, w, _ = live_run(1, 16, 4, 3, 80, 5)
    live = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    rounds = {"rounds": 2, "method": "fastest-state", "note": None,
              "dynamics_error_pct": {k: [0.0, 1e-13] for k in ("tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                                                                "tpot_p99_s", "e2e_p50_s", "e2e_p99_s")},
              "split_half_pct": {k: 2.0 for k in ("tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
                                                  "e2e_p50_s", "e2e_p99_s")},
              "iteration_spread_pct": [3.0] * len(live)}
    row = _row(res, w, 5, 2.0, [[k, s, sec * 1.1, b] for k, s, sec, b in live], rounds)
    d = decompose(row, w)
    assert d["dynamics"]["tok_s"] == pytest.approx(5e-14)
    assert d["cost"]["phase"]["round"]["error_pct"] == pytest.approx(10.0)
    assert d["cost"]["phase"]["round"]["noise_pct"] == 3.0
    assert d["cost"]["phase_totals"]["verify"]["error_pct"] == pytest.approx((2.0 - 2.5) / 2.5 * 100)
    assert d["end_to_end"]["tok_s"]["noise_pct"] == 2.0 and d["end_to_end"]["tok_s"]["error_pct"] == 0.0
    assert (d["rounds"], d["method"]) == (2, "fastest-state")
