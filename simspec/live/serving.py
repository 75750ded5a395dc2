"""Continuous batching, live: requests arrive, join the running batch, decode speculatively and
leave. Every token is the target's own: greedy output equals `engine.plain_greedy`, token for
token, whatever joins or leaves the batch meanwhile.

The policy is the simulator's (simspec.sim.replica + simspec.sim.scheduler), so a live run and
a simulation of the same workload can be compared iteration by iteration:

  admission  between iterations, first come first served: at most `max_batch` sequences and,
             with `kv_capacity_tokens`, a request joins only if prompt + max_new_tokens + the
             round's tree size (its verify queries: the simulator's kv_reserve) fit in what
             admitted requests do not hold. The head of the queue waits rather than being
             overtaken; space is held from admission to retirement.
  iteration  prefill-first: if any request was admitted, a prefill of all of them together
             (one target forward over their prompts; a separate draft model prefills them
             too), whose last logits give each its first token, at the end of the iteration
             (TTFT); else one speculative round over the whole running batch
             (engine.speculative_round: draft -> verify -> accept -> commit, ragged
             acceptance); else, nothing running, wait for the next arrival.
  retirement after every iteration, sequences that met a stop token or their budget leave;
             their rows leave the target's KV cache and the drafter's. Closed loop: the next
             request arrives at that moment.

Arrivals during an iteration are seen at its end; every token is stamped with the end of the
iteration that produced it.

Differences from the simulator, all deliberate:
  * a request ends at a stop token or at max_new_tokens (the simulator knows each output
    length in advance); KV space is held for max_new_tokens, which is the simulator's output
    length when no stop token comes first;
  * rounds never draft deeper than the batch's largest remaining budget minus one, as
    `engine.generate` (the simulator's `clip_to_budget = true`; `clip_to_budget=False` here
    drafts the full tree, as its default);
  * only first_round = "after_prefill" (no prefill that is also a first round), no overlap;
  * the KV capacity is accounting, as in the simulator: the cache itself grows, and its slot
    width also holds the left padding of ragged rows;
  * a prefill batch is left-padded to its longest prompt (the simulator prices the mean
    prompt): a matter of time, not of policy;
  * `poisson_times` draws from its own generator: the simulator's distribution, other draws.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from simspec.live.drafters import Drafter, Mode
from simspec.live.engine import Batch, Shape, extend, speculative_round, stop_set
from simspec.live.kv import KV
from simspec.live.sampling import probs
from simspec.live.stats import PHASES, Stats
from simspec.live.tree import Tree
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


# -- clocks -------------------------------------------------------------------------------

class Clock(Protocol):
    def now(self) -> float: ...
    def sleep_until(self, t: float) -> None: ...


class WallClock:
    """Real time: seconds since the clock was made (time.perf_counter); waiting sleeps."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sleep_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            time.sleep(dt)


class FakeClock:
    """Deterministic time for tests: each reading returns the time, then advances it by `step`
    (the loop reads the clock once per iteration, so every iteration lasts `step`); waiting
    jumps ahead to the time waited for."""

    def __init__(self, step: float = 1.0, start: float = 0.0) -> None:
        self.t, self.step = float(start), float(step)

    def now(self) -> float:
        t = self.t
        self.t += self.step
        return t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


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


@dataclass(frozen=True)
class Iteration:
    kind: str                  # "prefill" or "round"
    start: float
    seconds: float             # by the loop's clock
    rids: tuple[int, ...]      # requests in the batch during it, in row order
    admitted: tuple[int, ...]  # prefill: the requests it admitted (the last rows of rids)
    queued: tuple[int, ...]    # requests waiting meanwhile, in queue order
    kv_held: int               # KV tokens held by the requests in the batch
    tokens: int                # output tokens it produced

    @property
    def batch(self) -> int:
        """Sequences this iteration's forward ran: the new ones for a prefill, all for a round."""
        return len(self.admitted) if self.kind == "prefill" else len(self.rids)


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
) -> ServeResult:
    """Serve `requests` to the end with continuous batching (greedy when temperature == 0).

    `concurrency`: a closed loop of that many users (requests 0..N-1 arrive at 0, each later
    one when a request finishes); None: each request arrives at its own `arrival`.
    `kv`: the target's (empty) KV that an early-exit drafter shares: make both with KV(target, 0).
    `clock`: WallClock() by default; FakeClock for deterministic times.
    """
    return _Server(target, list(requests), drafter or Drafter(), tree or Tree.chain(0), max_batch,
                   kv_capacity_tokens, concurrency, stop_set(eos), temperature, seed, kv,
                   clock or WallClock(), clip_to_budget).run()


class _Server:
    def __init__(self, target, requests, drafter, tree, max_batch, capacity, concurrency, stops,
                 temperature, seed, kv, clock, clip) -> None:
        self.mode = Mode(vocab=target.config.vocab_size, temperature=temperature,
                         gen=torch.Generator().manual_seed(seed))
        if not self.mode.greedy and not tree.is_chain:
            raise ValueError("sampling mode supports chains only (trees are verified greedily)")
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch} must be >= 1")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be >= 1")
        self.need = [len(r.prompt) + r.max_new_tokens + tree.size for r in requests]
        for i, r in enumerate(requests):
            if not r.prompt or r.max_new_tokens < 1:
                raise ValueError(f"request {i}: needs a prompt token and max_new_tokens >= 1")
            if capacity is not None and self.need[i] > capacity:
                raise ValueError(f"request {i} needs {self.need[i]} KV tokens "
                                 f"(prompt + max_new_tokens + {tree.size}) but the capacity is {capacity}")
        if kv is not None and kv.batch != 0:
            raise ValueError("serve() starts from an empty KV: KV(target, 0)")
        self.target, self.requests, self.drafter, self.tree = target, requests, drafter, tree
        self.max_batch, self.capacity, self.stops, self.clock, self.clip = max_batch, capacity, stops, clock, clip
        self.kv = kv if kv is not None else KV(target, 0)
        self.drafter.start(0)
        self.stats = Stats(device=str(next(target.parameters()).device))
        self.recs = [RequestRecord(len(r.prompt), r.max_new_tokens) for r in requests]
        self.iterations: list[Iteration] = []
        self.shapes: dict[int, Shape] = {}
        self.rows: list[int] = []  # request ids of the batch's rows
        self.batch = Batch([], [])
        self.queue: deque[int] = deque()
        self.held = 0
        self.ending: set[int] = set()
        self.finished = 0
        # arrivals to come: (time, order, request id)
        n = len(requests)
        self.closed = concurrency is not None
        first = range(min(concurrency, n)) if self.closed else range(n)
        self.upcoming = sorted((0.0 if self.closed else float(requests[i].arrival), i, i) for i in first)
        self.next_rid = len(first)
        self.order = n

    def run(self) -> ServeResult:
        t = self.clock.now()
        while self.finished < len(self.requests):
            self._arrive(t)
            new = self._admit()
            if new:
                kind, made = "prefill", self._prefill(new, t)
            elif self.rows:
                kind, made = "round", self._round()
            elif self.upcoming:
                self.clock.sleep_until(self.upcoming[0][0])
                t = self.clock.now()
                continue
            else:
                raise RuntimeError("requests left but none queued, running or to come")
            end = self.clock.now()
            tokens = self._emit(made, end, kind == "round")
            self.iterations.append(Iteration(kind, t, end - t, tuple(self.rows), tuple(new),
                                             tuple(self.queue), self.held, tokens))
            self._retire(end)
            t = end
        self.stats.new_tokens = sum(len(r.output) for r in self.recs)
        last = self.iterations[-1] if self.iterations else None
        return ServeResult(self.recs, self.iterations, self.stats, last.start + last.seconds if last else 0.0)

    def _arrive(self, t: float) -> None:
        while self.upcoming and self.upcoming[0][0] <= t:
            at, _, rid = heapq.heappop(self.upcoming)
            self.recs[rid].arrival = at
            self.queue.append(rid)

    def _admit(self) -> list[int]:
        """FCFS: the head of the queue joins while the batch has room and its KV tokens fit."""
        new: list[int] = []
        while self.queue and len(self.rows) + len(new) < self.max_batch:
            rid = self.queue[0]
            if self.capacity is not None and self.held + self.need[rid] > self.capacity:
                break  # wait for memory rather than overtake
            self.held += self.need[rid]
            new.append(self.queue.popleft())
        return new

    def _prefill(self, new: list[int], t: float) -> dict[int, list[int]]:
        """One target forward over the new prompts (left-padded): each row's first token."""
        prompts = [self.requests[r].prompt for r in new]
        with self.stats.phase("prefill"):
            fresh = KV(self.target, len(new))
            none = torch.zeros(len(new), 0, dtype=torch.long)
            ids, kind, m = fresh.with_context(prompts, none, none)
            logits = fresh.forward(self.target, ids, kind, keep=[m - 1])[:, 0, :self.mode.vocab]
            self.kv.extend(fresh)
            self.drafter.admit(prompts)
            if self.mode.greedy:
                first = logits.argmax(-1).tolist()
            else:
                p = probs(logits, self.mode.temperature).cpu()
                first = torch.multinomial(p, 1, generator=self.mode.gen)[:, 0].tolist()
        for rid, prompt, tok in zip(new, prompts, first):
            self.rows.append(rid)
            self.batch.seqs.append(list(prompt))
            self.batch.pending.append(tok)
            self.recs[rid].admitted = t
        self.stats.prefill_tokens += len(new)
        return {rid: [tok] for rid, tok in zip(new, first)}

    def _round(self) -> dict[int, list[int]]:
        depth = self.tree.max_depth
        if self.clip:  # no deeper than the largest remaining budget minus the bonus token
            left = max(self.recs[r].max_new_tokens - len(self.recs[r].output) for r in self.rows)
            depth = min(depth, left - 1)
        if depth not in self.shapes:
            self.shapes[depth] = Shape.cut(self.tree, depth)
        # rounds=1: speculative_round times a Stats' round 0 as prefill; this is no prefill
        st = Stats(device=self.stats.device, rounds=1)
        new = speculative_round(self.target, self.kv, self.drafter, self.mode, self.shapes[depth],
                                self.batch, st)
        for k in PHASES:
            self.stats.seconds[k] += st.seconds[k]
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
        for rid in self.rows:
            if rid in self.ending:
                self.recs[rid].finish = end
                self.held -= self.need[rid]
                self.finished += 1
                if self.closed and self.next_rid < len(self.requests):
                    heapq.heappush(self.upcoming, (end, self.order, self.next_rid))
                    self.order += 1
                    self.next_rid += 1
        self.kv.keep_rows(keep)
        self.drafter.retire(keep)
        self.rows = [self.rows[b] for b in keep]
        self.batch.seqs = [self.batch.seqs[b] for b in keep]
        self.batch.pending = [self.batch.pending[b] for b in keep]
        self.ending.clear()


# -- the figures a user reads -----------------------------------------------------------------

def _pct(x: list[float], q: float) -> float:
    return float(np.percentile(x, q)) if x else math.nan


def summarize(result: ServeResult) -> dict:
    """TTFT, TPOT, end-to-end latency (p50, p99) and throughput, defined as
    simspec.sim.metrics.summarize defines them (same keys), over finished requests."""
    done = [r for r in result.requests if not math.isnan(r.finish)]
    ttft = [r.first_token - r.arrival for r in done]
    tpot = [(r.finish - r.first_token) / (len(r.output) - 1) for r in done if len(r.output) > 1]
    e2e = [r.finish - r.arrival for r in done]
    tokens = sum(len(r.output) for r in done)
    rounds = sum(r.rounds for r in done)
    t = result.elapsed
    return {
        "throughput_tok_s": tokens / t if t > 0 else math.nan,
        "request_throughput_req_s": len(done) / t if t > 0 else math.nan,
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50), "tpot_p99_s": _pct(tpot, 99),
        "e2e_p50_s": _pct(e2e, 50), "e2e_p99_s": _pct(e2e, 99),
        "mean_tokens_per_round": (tokens - len(done)) / rounds if rounds else math.nan,
        "mean_accepted_per_round": sum(r.accepted for r in done) / rounds if rounds else math.nan,
        "requests": len(done),
        "output_tokens": tokens,
        "elapsed_s": t,
        "prefills": sum(it.kind == "prefill" for it in result.iterations),
        "rounds": sum(it.kind == "round" for it in result.iterations),
    }
