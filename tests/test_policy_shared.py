"""One serving policy, two drivers: the simulator's SimPy replica and the live serving loop run the
same simspec.sim.policy objects over the same scripted workload, the same scripted acceptance
and the same scripted iteration durations, and must agree exactly: admission order, every
iteration (kind, start, duration, batch rows, admitted, queue, KV held, tokens) and every
request's arrival / admission / first-token / finish times. Closed loop and Poisson arrivals,
with KV capacities small enough that the head of the queue waits for memory.

The live side is the real loop (simspec.live.serving.ServingLoop) with scripted forwards and a
fake clock that moves only when a forward "runs"; the simulator side is the real Replica with a
scripted round cost and acceptance oracle. No torch model, no wall clock.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

pytest.importorskip("torch")

from simspec.live.clocks import FakeClock  # noqa: E402
from simspec.live.serving import Request, ServingLoop  # noqa: E402
from simspec.sim.devices import Device  # noqa: E402
from simspec.sim.policy import ClosedLoop, ServingPolicy  # noqa: E402
from simspec.sim.records import Records  # noqa: E402
from simspec.sim.replica import Replica, ReplicaDevices, ReplicaOptions  # noqa: E402
from simspec.sim.workload import poisson_times  # noqa: E402


# -- the script both drivers follow -----------------------------------------------------------

def accepted(rid: int, gen: int, depth: int) -> int:
    """Draft tokens a row accepts in a round, from its request and its tokens so far."""
    return min((rid * 7 + gen * 3) % (depth + 2), depth)


# Durations and arrival times are multiples of 2**-10 (exact in binary), so that the live loop's
# `end - start` and the simulator's scripted duration are the same float.
def prefill_seconds(n: int) -> float:
    return 0.375 + 0.125 * n


def round_seconds(b: int, depth: int) -> float:
    return 0.25 + 0.0625 * b + 0.015625 * depth


def on_grid(times) -> np.ndarray:
    return np.round(np.asarray(times) * 1024) / 1024


class ScriptedCost:
    """The part of RoundCost the replica reads; every cost but verification is zero, so an
    iteration's simulated duration is exactly the scripted one."""

    context_dependent = False

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def bucket(self, context: float) -> int:
        return 0

    def verify_s(self, b: int, ctx: int, depth: int | None = None) -> float:
        return round_seconds(b, self.depth if depth is None else depth)

    def draft_s(self, b: int, ctx: int, depth: int | None = None, behind: bool = False) -> float:
        return 0.0

    def transfer_s(self, b: int) -> float:
        return 0.0

    def prefill_s(self, prompts) -> tuple[float, float, float]:
        return prefill_seconds(len(prompts)), 0.0, 0.0


class ScriptedOracle:
    def __init__(self, depth: int) -> None:
        self.depth = depth

    def bind(self, rid: int) -> int:
        return rid

    def draw(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.array([accepted(int(r), int(g), self.depth) for r, g in zip(handles, positions)],
                        dtype=np.int64)


class ScriptedForwards:
    """The live loop's forwards: rows follow the loop's rows, tokens and durations the script."""

    def __init__(self, clock: FakeClock, depth: int) -> None:
        self.clock, self.depth = clock, depth
        self.rows: list[list[int]] = []  # [rid, tokens so far]

    def _spend(self, seconds: float) -> None:
        self.clock.sleep_until(self.clock.t + seconds)

    def prefill(self, prompts: list[list[int]]) -> list[int]:
        self._spend(prefill_seconds(len(prompts)))
        self.rows += [[p[0], 1] for p in prompts]  # a prompt's first token is its request id
        return [1_000 * p[0] for p in prompts]

    def round(self, depth: int) -> list[list[int]]:
        self._spend(round_seconds(len(self.rows), depth))
        out = []
        for row in self.rows:
            rid, gen = row
            k = accepted(rid, gen, self.depth) if self.depth else 0
            k = min(k, depth)
            out.append([1_000 * rid + gen + j for j in range(k + 1)])
            row[1] = gen + k + 1
        return out

    def keep_rows(self, keep: list[int]) -> None:
        self.rows = [self.rows[b] for b in keep]


# -- the two drivers ------------------------------------------------------------------------------

def workload(seed: int, n: int):
    rng = np.random.default_rng(seed)
    prompt = rng.integers(3, 40, n)
    budget = rng.integers(1, 25, n)
    return prompt, budget


def run_sim(prompt, budget, arrival, depth, max_batch, capacity, concurrency):
    """One Replica under SimPy, arrivals as simspec.sim.run drives them."""
    env = simpy.Environment()
    rec = Records(prompt, budget, arrival)
    closed = ClosedLoop(len(prompt), concurrency) if concurrency else None
    replica: list[Replica] = []

    def on_finish(rid: int) -> None:
        nxt = closed.on_finish() if closed else None
        if nxt is not None:
            rec.arrival[nxt] = env.now
            replica[0].submit(nxt)

    dev = Device("dev", None)
    options = ReplicaOptions(max_batch=max_batch, kv_capacity=capacity, kv_reserve=depth + 1,
                             overlap=False, clip_to_budget=True, detail=True)
    oracle = ScriptedOracle(depth) if depth else None
    replica.append(Replica(env, 0, options, ScriptedCost(depth), oracle, ReplicaDevices(dev, dev), rec, on_finish))
    if closed:
        for rid in closed.first():
            replica[0].submit(rid)
    else:
        def source():
            for rid in range(len(prompt)):
                if arrival[rid] > env.now:
                    yield env.timeout(arrival[rid] - env.now)
                replica[0].submit(rid)
        env.process(source())
    env.run()
    return rec, replica[0].log


def run_live(prompt, budget, arrival, depth, max_batch, capacity, concurrency):
    clock = FakeClock(step=0.0)
    reqs = [Request([rid] + [5] * (int(p) - 1), int(b), float(t))
            for rid, (p, b, t) in enumerate(zip(prompt, budget, arrival))]
    loop = ServingLoop(ScriptedForwards(clock, depth), reqs, depth, depth + 1, max_batch=max_batch,
                       kv_capacity_tokens=capacity, concurrency=concurrency, eos=None, clock=clock)
    return loop.run()


CASES = [  # (seed, requests, depth, max_batch, capacity, concurrency or None for Poisson at rate)
    (0, 12, 3, 4, 90, 3),
    (1, 16, 4, 3, 80, 5),
    (2, 10, 0, 4, 70, 4),      # plain decoding
    (3, 14, 3, 4, 90, None),
    (4, 18, 2, 8, 100, None),
    (5, 12, 5, 2, None, None),  # no KV limit
]


@pytest.mark.parametrize("seed,n,depth,max_batch,capacity,concurrency", CASES)
def test_sim_and_live_drive_one_policy_identically(seed, n, depth, max_batch, capacity, concurrency):
    prompt, budget = workload(seed, n)
    arrival = np.zeros(n) if concurrency else on_grid(poisson_times(n, 1.5, seed))
    rec, sim_log = run_sim(prompt, budget, arrival, depth, max_batch, capacity, concurrency)
    res = run_live(prompt, budget, arrival, depth, max_batch, capacity, concurrency)

    assert [it.admitted for it in res.iterations] == [it.admitted for it in sim_log]
    assert res.iterations == sim_log  # every field of every iteration, exactly
    live = res.requests
    for name in ("arrival", "admitted", "first_token", "finish"):
        assert [getattr(r, name) for r in live] == getattr(rec, name).tolist(), name
    assert [len(r.output) for r in live] == rec.tokens.tolist() == budget.tolist()
    assert [r.rounds for r in live] == rec.rounds.tolist()
    assert [r.accepted for r in live] == rec.accepted.tolist()

    # the workload exercises what it claims: waits for memory, ragged retirements, rounds
    if capacity is not None:
        assert any(it.queued and len(it.rids) < max_batch for it in sim_log), "no KV wait happened"
    assert sum(it.kind == "round" for it in sim_log) > n


def test_summaries_are_one_formula():
    """The live summary's serving figures are the simulator's, from the same records."""
    from simspec.live.serving import summarize as live_summary
    from simspec.sim.metrics import summarize as sim_summary

    prompt, budget = workload(0, 12)
    arrival = np.zeros(12)
    rec, log = run_sim(prompt, budget, arrival, 3, 4, 90, 3)
    res = run_live(prompt, budget, arrival, 3, 4, 90, 3)
    end = log[-1].start + log[-1].seconds
    s, live = sim_summary(rec, end, {}, 0.0, 0.0), live_summary(res)
    shared = [k for k in live if k in s]
    assert len(shared) >= 12
    assert {k: s[k] for k in shared} == {k: live[k] for k in shared}


def test_policy_admits_fcfs_without_overtaking():
    """A small request behind a large one waits: the head is never overtaken."""
    p = ServingPolicy(max_batch=4, kv_capacity=100, kv_reserve=2, prompt_len=[50, 50, 1], budget=[10, 10, 1])
    for rid in range(3):
        p.arrive(rid)
    assert p.next_step(0) == ("prefill", [0])  # 62 held; request 1 needs 62, request 2 only 4
    assert p.next_step(1) == ("round", [])
    assert p.waiting() == (1, 2)
    p.release([0])
    assert p.held == 0
    assert p.next_step(0) == ("prefill", [1, 2])
    assert p.held == 62 + 4
    assert p.next_step(0) == ("wait", [])


def test_policy_clips_depth_only_when_asked():
    clip = ServingPolicy(2, None, 0, [1], [1], clip_to_budget=True)
    free = ServingPolicy(2, None, 0, [1], [1], clip_to_budget=False)
    assert clip.depth(5, 3) == 2 and clip.depth(5, 10) == 5
    assert free.depth(5, 3) == 5


def test_closed_loop_sends_each_request_once():
    loop = ClosedLoop(requests=4, concurrency=2)
    assert list(loop.first()) == [0, 1]
    assert [loop.on_finish() for _ in range(3)] == [2, 3, None]
