"""Continuous batching, live: requests arrive, join the running batch, decode speculatively and
leave. Every token is the target's own: greedy output equals `engine.plain_greedy`, token for
token, whatever joins or leaves the batch meanwhile.

The policy is the simulator's own object, simspec.sim.policy.ServingPolicy (admission under
max_batch and KV capacity, FCFS without overtaking, prefill-first, clip-to-budget depth, KV
release) with simspec.sim.policy.ClosedLoop for closed-loop arrivals; this loop calls it
between real forwards (simspec.live.forwards), the simulator's replica between SimPy events.
Iterations are recorded as simspec.sim.iteration.Iteration and summarised by
simspec.sim.metrics.serving_figures in both, so a live run and a simulation of the same
workload compare iteration by iteration (tests/test_policy_shared.py drives both).

Arrivals during an iteration are seen at its end; every token is stamped with the end of the
iteration that produced it. A request's KV need counts the round's tree size (its verify
queries: the simulator's kv_reserve).

What differs from the simulator is a driver's business, not the policy's:
  * a request ends at a stop token or at max_new_tokens (the simulator knows each output
    length in advance); KV space is held for max_new_tokens, which is the simulator's output
    length when no stop token comes first;
  * rounds clip to the budget by default (`clip_to_budget=True`, as engine.generate; the
    simulator's `clip_to_budget = true`);
  * only first_round = "after_prefill" (no prefill that is also a first round), no overlap;
  * the KV capacity is accounting, as in the simulator: the cache itself grows, and its slot
    width also holds the left padding of ragged rows;
  * a prefill batch is left-padded to its longest prompt and a round's cache to its longest
    row: a matter of time, not of policy, which the simulator prices with
    serving.batch_layout = "padded" (validation scenarios do).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from simspec.live.clocks import Clock, FakeClock, WallClock  # noqa: F401  (re-exported)
from simspec.live.drafters import Drafter, Mode
from simspec.live.engine import extend, stop_set
from simspec.live.forwards import Forwards, ModelForwards
from simspec.live.kv import KV
from simspec.live.stats import Stats
from simspec.live.synthetic import SyntheticAcceptance
from simspec.live.tree import Tree
from simspec.sim.iteration import Iteration
from simspec.sim.metrics import serving_figures
from simspec.sim.policy import ClosedLoop, ServingPolicy
from simspec.sim.workload import poisson_times  # noqa: F401  (re-exported: arrivals of a live run)


# -- requests and arrivals ------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    prompt: list[int]
    max_new_tokens: int
    arrival: float = 0.0  # seconds from the start; a closed loop ignores it


def requests_at(prompts: Sequence[list[int]], max_new_tokens: int | Sequence[int],
                times: Sequence[float] | None = None) -> list[Request]:
    """Requests of these prompts arriving at `times` (all at 0 when None)."""
    n = len(prompts)
    budgets = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    times = [0.0] * n if times is None else list(times)
    if len(budgets) != n or len(times) != n:
        raise ValueError(f"{n} prompts, {len(budgets)} budgets, {len(times)} arrival times")
    return [Request(list(p), int(b), float(t)) for p, b, t in zip(prompts, budgets, times)]


# -- what a run records -------------------------------------------------------------------

@dataclass
class RequestRecord:
    prompt_len: int
    max_new_tokens: int
    arrival: float = math.nan
    admitted: float = math.nan     # start of the prefill that admitted it
    first_token: float = math.nan  # end of that prefill
    finish: float = math.nan
    token_times: list[float] = field(default_factory=list)  # one per output token
    output: list[int] = field(default_factory=list)  # stop token included when it stopped there
    rounds: int = 0    # speculative rounds it took part in
    accepted: int = 0  # draft tokens accepted and kept (bonus tokens not counted)


@dataclass
class ServeResult:
    requests: list[RequestRecord]
    iterations: list[Iteration]
    stats: Stats     # time per phase (perf_counter), rounds, tokens per round
    elapsed: float   # clock time from the start to the last finish

    @property
    def outputs(self) -> list[list[int]]:
        return [r.output for r in self.requests]


# -- the loop -------------------------------------------------------------------------------

@torch.inference_mode()
def serve(
    target: nn.Module,
    requests: Sequence[Request],
    drafter: Drafter | None = None,
    tree: Tree | None = None,
    *,
    max_batch: int = 8,
    kv_capacity_tokens: int | None = None,
    concurrency: int | None = None,
    eos: int | Collection[int] | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    kv: KV | None = None,
    clock: Clock | None = None,
    clip_to_budget: bool = True,
    synthetic: SyntheticAcceptance | None = None,
) -> ServeResult:
    """Serve `requests` to the end with continuous batching (greedy when temperature == 0).

    `concurrency`: a closed loop of that many users (requests 0..N-1 arrive at 0, each later
    one when a request finishes); None: each request arrives at its own `arrival`.
    `kv`: the target's (empty) KV that an early-exit drafter shares: make both with KV(target, 0).
    `clock`: WallClock() by default; FakeClock for deterministic times.
    `synthetic`: forced acceptance (simspec.live.synthetic; greedy only): request i is the
    oracle's request i (FCFS admits in arrival order); the output is then not the target's.
    """
    tree = tree or Tree.chain(0)
    mode = Mode(vocab=target.config.vocab_size, temperature=temperature,
                gen=torch.Generator().manual_seed(seed), synthetic=synthetic)
    if synthetic is not None and not mode.greedy:
        raise ValueError("synthetic acceptance forces greedy verification: temperature must be 0")
    arrivals = [r.arrival for r in requests]
    if synthetic is not None and concurrency is None and any(b < a for a, b in zip(arrivals, arrivals[1:])):
        raise ValueError("synthetic acceptance binds requests in admission order: arrivals must not decrease")
    if not mode.greedy and not tree.is_chain:
        raise ValueError("sampling mode supports chains only (trees are verified greedily)")
    if kv is not None and kv.batch != 0:
        raise ValueError("serve() starts from an empty KV: KV(target, 0)")
    stats = Stats(device=str(next(target.parameters()).device))
    forwards = ModelForwards(target, drafter or Drafter(), tree, mode,
                             kv if kv is not None else KV(target, 0), stats)
    return ServingLoop(forwards, list(requests), tree.max_depth, tree.size, max_batch=max_batch,
                       kv_capacity_tokens=kv_capacity_tokens, concurrency=concurrency, eos=eos,
                       clock=clock or WallClock(), clip_to_budget=clip_to_budget, stats=stats).run()


class ServingLoop:
    """The live serving loop: the shared ServingPolicy between calls to `forwards`, timed by
    `clock`. `depth`: the tree's draft depth; `kv_reserve`: its size (verify queries)."""

    def __init__(self, forwards: Forwards, requests: list[Request], depth: int, kv_reserve: int, *,
                 max_batch: int, kv_capacity_tokens: int | None, concurrency: int | None,
                 eos: int | Collection[int] | None, clock: Clock, clip_to_budget: bool = True,
                 stats: Stats | None = None) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be >= 1")
        self.policy = ServingPolicy(max_batch, kv_capacity_tokens, kv_reserve,
                                    [len(r.prompt) for r in requests],
                                    [r.max_new_tokens for r in requests], clip_to_budget)
        for i, r in enumerate(requests):
            if not r.prompt or r.max_new_tokens < 1:
                raise ValueError(f"request {i}: needs a prompt token and max_new_tokens >= 1")
            need = self.policy.need(i)
            if kv_capacity_tokens is not None and need > kv_capacity_tokens:
                raise ValueError(f"request {i} needs {need} KV tokens "
                                 f"(prompt + max_new_tokens + {kv_reserve}) but the capacity is {kv_capacity_tokens}")
        self.forwards, self.requests, self.depth = forwards, requests, depth
        self.stops, self.clock = stop_set(eos), clock
        self.stats = stats if stats is not None else Stats()
        self.recs = [RequestRecord(len(r.prompt), r.max_new_tokens) for r in requests]
        self.iterations: list[Iteration] = []
        self.rows: list[int] = []  # request ids of the batch's rows
        self.ending: set[int] = set()
        self.finished = 0
        # arrivals to come: (time, order, request id)
        n = len(requests)
        self.closed = ClosedLoop(n, concurrency) if concurrency is not None else None
        first = self.closed.first() if self.closed is not None else range(n)
        self.upcoming = sorted((0.0 if self.closed else float(requests[i].arrival), i, i) for i in first)
        self.order = n

    def run(self) -> ServeResult:
        t = self.clock.now()
        policy = self.policy
        while self.finished < len(self.requests):
            self._arrive(t)
            step, new = policy.next_step(len(self.rows))
            if step == "wait":
                if not self.upcoming:
                    raise RuntimeError("requests left but none queued, running or to come")
                self.clock.sleep_until(self.upcoming[0][0])
                t = self.clock.now()
                continue
            queued, held = policy.waiting(), policy.held
            made = self._prefill(new, t) if step == "prefill" else self._round()
            end = self.clock.now()
            tokens = self._emit(made, end, step == "round")
            self.iterations.append(Iteration(step, t, end - t, len(new) if new else len(self.rows), tokens,
                                             tuple(self.rows), tuple(new), queued, held))
            self._retire(end)
            t = end
        self.stats.new_tokens = sum(len(r.output) for r in self.recs)
        last = self.iterations[-1] if self.iterations else None
        return ServeResult(self.recs, self.iterations, self.stats, last.start + last.seconds if last else 0.0)

    def _arrive(self, t: float) -> None:
        while self.upcoming and self.upcoming[0][0] <= t:
            at, _, rid = heapq.heappop(self.upcoming)
            self.recs[rid].arrival = at
            self.policy.arrive(rid)

    def _prefill(self, new: list[int], t: float) -> dict[int, list[int]]:
        first = self.forwards.prefill([self.requests[r].prompt for r in new])
        for rid in new:
            self.rows.append(rid)
            self.recs[rid].admitted = t
        self.stats.prefill_tokens += len(new)
        return {rid: [tok] for rid, tok in zip(new, first)}

    def _round(self) -> dict[int, list[int]]:
        left = max(self.recs[r].max_new_tokens - len(self.recs[r].output) for r in self.rows)
        new = self.forwards.round(self.policy.depth(self.depth, left))
        self.stats.rounds += 1
        self.stats.ragged_rounds += len({len(x) for x in new}) > 1
        return dict(zip(self.rows, new))

    def _emit(self, made: dict[int, list[int]], end: float, in_round: bool) -> int:
        """Append each row's new tokens to its output (cut at a stop token and the budget)."""
        total = 0
        for rid, toks in made.items():
            rec = self.recs[rid]
            before = len(rec.output)
            if extend(rec.output, toks, self.stops, rec.max_new_tokens):
                self.ending.add(rid)
            kept = len(rec.output) - before
            rec.token_times += [end] * kept
            total += kept
            if in_round:
                rec.rounds += 1
                rec.accepted += min(len(toks) - 1, kept)
                self.stats.row_rounds += 1
                self.stats.per_round.append(kept)
            else:
                rec.first_token = end
        return total

    def _retire(self, end: float) -> None:
        if not self.ending:
            return
        keep = [b for b, rid in enumerate(self.rows) if rid not in self.ending]
        gone = [rid for rid in self.rows if rid in self.ending]
        for rid in gone:
            self.recs[rid].finish = end
            self.finished += 1
            nxt = self.closed.on_finish() if self.closed is not None else None
            if nxt is not None:
                heapq.heappush(self.upcoming, (end, self.order, nxt))
                self.order += 1
        self.policy.release(gone)
        self.forwards.keep_rows(keep)
        self.rows = [self.rows[b] for b in keep]
        self.ending.clear()


# -- the figures a user reads -----------------------------------------------------------------

def summarize(result: ServeResult) -> dict:
    """TTFT, TPOT, end-to-end latency (p50, p99) and throughput, defined as
    simspec.sim.metrics.summarize defines them (same keys), over finished requests."""
    recs = result.requests
    figures = serving_figures([r.arrival for r in recs], [r.first_token for r in recs],
                              [r.finish for r in recs], [len(r.output) for r in recs],
                              [r.rounds for r in recs], [r.accepted for r in recs], result.elapsed)
    return figures | {
        "elapsed_s": result.elapsed,
        "prefills": sum(it.kind == "prefill" for it in result.iterations),
        "rounds": sum(it.kind == "round" for it in result.iterations),
    }
