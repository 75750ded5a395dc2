"""Jumping between batch changes (simspec.sim.jump) gives exactly what round by round gives:
the same per-request records, the same summary, the same iteration timeline, for trace replay
(rank chains, trees, sampled beta, prompt lookup) and for i.i.d. / per-position / tree survival
with the same seed; closed loop, Poisson and burst arrivals, KV capacities that make the head of
the queue wait, clip to budget, the prefill as first round, context-dependent costs, a drafter on
another device, overlap and several replicas (those two go round by round)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simspec.config import parse_scenario
from simspec.sim.acceptance import SurvivalOracle
from simspec.sim.jump import wake_at
from simspec.sim.run import simulate
from simspec.trace.schema import write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("jump") / "t.parquet"
    rng = np.random.default_rng(3)
    rows = []
    for s in range(12):
        t, p = int(rng.integers(20, 160)), int(rng.integers(5, 300))
        r = np.minimum(rng.geometric(0.45, size=t) - 1, 127)
        rows.append({"seq": s, "prompt_len": p, "output_len": t,
                     "prompt_ids": rng.integers(0, 50, size=p), "tokens": rng.integers(0, 50, size=t),
                     "rank:m": r, "beta:m@1": rng.uniform(0.2, 1.0, size=t)})
    write_trace(path, rows, ["m"], [1.0], {"vocab": 1000, "target": "synthetic"})
    return str(path)


ACCEPTANCE = ["iid", "per_position", "rank_probs", "rank", "tree", "beta", "ngram"]


@st.composite
def scenarios(draw):
    acc = draw(st.sampled_from(ACCEPTANCE))
    gamma = draw(st.integers(1, 5))
    batch = draw(st.integers(1, 8))
    arrival = draw(st.sampled_from(["closed", "poisson", "burst"]))
    requests = draw(st.integers(1, 30))
    on_trace = acc in ("rank", "tree", "beta", "ngram")
    d: dict = {
        "target": {"cost": {"step_ms": 10.0, "per_seq_ms": draw(st.sampled_from([0.0, 0.3])),
                            "per_kv_token_ms": draw(st.sampled_from([0.0, 0.001, 0.0137]))}},
        "draft": {"kind": "ngram" if acc == "ngram" else "model",
                  "cost": {"step_ms": draw(st.sampled_from([0.0, 1.0, 2.3])),
                           "per_kv_token_ms": draw(st.sampled_from([0.0, 0.0007]))}},
        "speculation": {"draft_len": gamma, "clip_to_budget": draw(st.booleans()),
                        "first_round": draw(st.sampled_from(["after_prefill", "with_prefill"]))},
        "workload": {"requests": requests, "arrival": arrival},
        "serving": {"max_batch": batch, "seed": draw(st.integers(0, 3)),
                    "batch_layout": draw(st.sampled_from(["packed", "padded"]))},
    }
    if acc == "ngram":
        d["draft"].pop("cost")
    if arrival == "poisson":
        d["workload"]["rate"] = draw(st.sampled_from([0.5, 3.0, 40.0]))
    elif arrival == "closed":
        d["workload"]["concurrency"] = draw(st.integers(1, max(1, requests)))
    if on_trace:
        d["workload"]["dataset"] = "trace"
    else:
        d["workload"]["prompt_len"] = draw(st.integers(1, 400))
        d["workload"]["output_len"] = draw(st.integers(1, 400))
    if acc == "iid":
        d["acceptance"] = {"iid": draw(st.sampled_from([0.0, 0.5, 0.8, 0.97]))}
    elif acc == "per_position":
        d["acceptance"] = {"per_position": draw(st.lists(st.sampled_from([0.3, 0.7, 0.9, 1.0]), min_size=1, max_size=4))}
    elif acc == "rank_probs":
        d["speculation"] = {**d["speculation"], "draft_len": 0, "tree": [3, 2, 1][:min(gamma, 3)]}
        d["acceptance"] = {"rank_probs": [0.6, 0.2, 0.1]}
    elif acc == "tree":
        d["speculation"] = {**d["speculation"], "draft_len": 0, "tree": [2, 2, 1][:min(gamma, 3)]}
        d["acceptance"] = {"trace": "TRACE", "drafter": "m"}
    else:
        d["acceptance"] = {"trace": "TRACE", "drafter": {"rank": "m", "beta": "m@1", "ngram": "ngram"}[acc]}
    if draw(st.booleans()):  # KV capacity: small enough that the head of the queue waits
        d["serving"]["kv_capacity_tokens"] = draw(st.integers(900, 2000))
    if draw(st.integers(0, 5)) == 0:
        d["placement"] = {"devices": {"gpu": {}, "edge": {}}, "target": "gpu", "draft": "edge"}
    elif draw(st.integers(0, 5)) == 0 and not d["speculation"]["clip_to_budget"] \
            and d["speculation"]["first_round"] == "after_prefill":
        d["placement"] = {"devices": {"gpu": {}, "edge": {}}, "target": "gpu", "draft": "edge", "overlap": True}
    elif draw(st.integers(0, 5)) == 0:
        d["placement"] = {"replicas": 2}
    return d


def _fill(d: dict, trace: str) -> dict:
    if d.get("acceptance", {}).get("trace") == "TRACE":
        d["acceptance"]["trace"] = trace
    return d


def same_run(d: dict):
    sc = parse_scenario(d, "jump.toml")
    try:
        ref = simulate(sc, jump=False)
    except Exception as exc:  # an input the simulator refuses (e.g. a KV capacity too small)
        with pytest.raises(type(exc)):
            simulate(sc)
        return None
    new = simulate(sc)
    for name, col in ref.records.columns().items():
        assert np.array_equal(col, new.records.columns()[name], equal_nan=True), name
    assert ref.summary.keys() == new.summary.keys()
    for k, v in ref.summary.items():  # all but the wall clock, exactly (NaN equal to NaN)
        assert k == "wall_s" or v == new.summary[k] or (v != v and new.summary[k] != new.summary[k]), k
    assert ref.iterations == new.iterations
    return new


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=scenarios())
def test_jump_equals_round_by_round(d, trace):
    kind = str(d["acceptance"].get("drafter", next(iter(d["acceptance"]))))
    try:
        parse_scenario(_fill(d, trace), "jump.toml")
    except Exception as exc:
        event(f"refused {kind}: {str(exc)[:60]}")
        return  # a combination the scenario rules refuse: nothing to simulate
    event(f"simulated {kind}" if same_run(d) is not None else f"simulator refused {kind}")


def test_jumps_happen_and_save_events(trace):
    """Not a tautology: the jump path really takes fewer SimPy events (one per batch change)."""
    d = {"target": {"cost": {"step_ms": 10.0, "per_kv_token_ms": 0.001}},
         "draft": {"kind": "model", "cost": {"step_ms": 1.0}},
         "acceptance": {"trace": trace, "drafter": "m"}, "speculation": {"draft_len": 4},
         "workload": {"requests": 12, "arrival": "closed", "concurrency": 1, "dataset": "trace"},
         "serving": {"max_batch": 1}}
    sc = parse_scenario(d, "jump.toml")
    import simspec.sim.jump as jump

    calls = []
    real = jump.apply
    jump.apply = lambda rep, j: (calls.append(j.n), real(rep, j))[1]
    try:
        new = same_run(d)
    finally:
        jump.apply = real
    rounds = int(new.records.rounds.sum())
    assert len(calls) == 12 and sum(calls) == rounds > 100  # one jump per request at batch 1
    assert len(simulate(sc).iterations[0]) == 12 + rounds    # and every round still in the log


def test_poisson_arrival_ends_a_jump_at_the_next_round_boundary():
    """A request arriving mid-batch is admitted at the first round end after it, as round by
    round: admission times are round ends, and equal to the reference."""
    d = {"target": {"cost": {"step_ms": 10.0}}, "draft": {"kind": "model", "cost": {"step_ms": 1.0}},
         "acceptance": {"iid": 0.8}, "speculation": {"draft_len": 4},
         "workload": {"requests": 40, "arrival": "poisson", "rate": 2.0, "prompt_len": 64, "output_len": 300},
         "serving": {"max_batch": 4, "seed": 1}}
    new = same_run(d)
    late = new.records.admitted > new.records.arrival  # admitted at a round boundary after arriving
    assert late.sum() > 5


def test_survival_read_ahead_is_the_same_stream():
    """peek/consume across block refills read exactly what draw() round by round reads."""
    for b in (1, 3, 7, 8192):
        a = SurvivalOracle([0.8, 0.6, 0.3], np.random.default_rng(5))
        r = SurvivalOracle([0.8, 0.6, 0.3], np.random.default_rng(5))
        h = np.zeros(b, dtype=np.int64)
        for n in (1, 5000, 3, 2731, 1, 9000):
            n = max(1, n // b) if b > 1 else n
            ks = a.accepted(a.peek_rounds(b, n + 7))[:n]
            a.consume_rounds(b, n)
            ref = np.stack([r.draw(h, h) for _ in range(n)])
            assert np.array_equal(ks, ref)
        assert np.array_equal(a.draw(h, h), r.draw(h, h))


def test_wake_at_lands_on_the_exact_time():
    """Where no timeout delay can land (now + d rounds to even on a tie), wake_at still does."""
    now, end = 0.4257792362807399, 1.43277923628074
    d = end - now
    assert all(now + x != end for x in (d, math.nextafter(d, 0), math.nextafter(d, 2)))
    env = simpy.Environment()
    seen = []

    def proc():
        yield env.timeout(now)
        yield wake_at(env, end)
        seen.append(env.now)
    env.process(proc())
    env.run()
    assert seen == [end]
