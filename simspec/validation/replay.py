"""The serving policy replayed on a live run's own iteration times (the decomposed error report's
part (b), and the way repeated rounds' fastest-state times become figures).

The live loop (simspec.live.serving) and the simulator share simspec.sim.policy.ServingPolicy;
this drives that same object once more, with no cost model: every iteration lasts what the live
run measured (in order), every row keeps the tokens the live run kept in that round, requests
arrive when they arrived live (Poisson) or as a closed loop sends them. The figures then come
from simspec.sim.metrics.serving_figures, the one summariser. If the replay's figures differ from
the live ones, the policy or the accounting differs, not the cost model: that is what it isolates.

Torch-free: a validation's JSON can be replayed again without loading a model.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from simspec.sim.metrics import serving_figures
from simspec.sim.policy import ClosedLoop, ServingPolicy
from simspec.tree_shape import TreeShape


class ReplayError(ValueError):
    """The live record cannot be replayed (its iterations or tokens run out, or do not fit)."""


@dataclass(frozen=True)
class Workload:
    """What the live run served: per request its prompt length, output budget, the tokens it
    produced, and the tokens it kept in each of its rounds (in order); the arrival process and
    the policy's settings."""

    prompt_len: list[int]
    budget: list[int]
    kept: list[list[int]]            # per request, tokens kept per round it took part in
    shape: TreeShape                 # the round's tree (depth and verify queries)
    max_batch: int
    kv_capacity: int | None = None
    arrivals: list[float] | None = None  # Poisson: each request's arrival; None with concurrency
    concurrency: int | None = None       # closed loop
    clip_to_budget: bool = True

    @property
    def outputs(self) -> list[int]:
        """Output tokens per request: the prefill's one, then what its rounds kept."""
        return [1 + sum(k) for k in self.kept]


@dataclass(frozen=True)
class ReplayStep:
    """One replayed iteration, with the shape a cost model prices it by."""

    kind: str       # "prefill" or "round"
    start: float
    seconds: float
    batch: int
    query: int      # query tokens of its forward: prompt tokens (prefill), rows x verify queries (round)
    context: float  # mean context per row at its start (prefill: mean prompt length)

    def row(self) -> list:
        """[kind, start, seconds, batch] at full precision (a live timeline's; see live.serve_measure)."""
        return [self.kind, self.start, self.seconds, self.batch]


@dataclass(frozen=True)
class Replay:
    figures: dict          # serving_figures' keys, plus elapsed_s
    steps: list[ReplayStep]
    arrival: list[float]
    first_token: list[float]
    finish: list[float]


def replay(w: Workload, seconds: Sequence[float], starts: Sequence[float] | None = None) -> Replay:
    """Drive the serving policy over `w` with iteration i lasting seconds[i]. `starts`: the live
    iterations' start times, read only after a wait (the moment the live loop woke up; without
    them the replay resumes at the arrival it waited for) and starts[0], when the live loop first
read its clock."""
    n = len(w.prompt_len)
    out_len = w.outputs
    policy = ServingPolicy(w.max_batch, w.kv_capacity, w.shape.size, w.prompt_len, w.budget, w.clip_to_budget)
    closed = ClosedLoop(n, w.concurrency) if w.concurrency is not None else None
    if closed is None and (w.arrivals is None or len(w.arrivals) != n):
        raise ReplayError(f"{n} requests need {n} arrival times or a concurrency")
    first = closed.first() if closed is not None else range(n)
    upcoming = sorted((0.0 if closed else float(w.arrivals[i]), i, i) for i in first)
    order = n
    arrival, first_tok, finish = [float("nan")] * n, [float("nan")] * n, [float("nan")] * n
    got, used = [0] * n, [0] * n  # tokens so far; rounds of kept[rid] consumed
    rows: list[int] = []
    steps: list[ReplayStep] = []
    t, done = (float(starts[0]) if starts else 0.0), 0  # the live loop's first reading of its clock
    while done < n:
        while upcoming and upcoming[0][0] <= t:
            at, _, rid = heapq.heappop(upcoming)
            arrival[rid] = at
            policy.arrive(rid)
        step, new = policy.next_step(len(rows))
        if step == "wait":
            if not upcoming:
                raise ReplayError("requests left but none queued, running or to come")
            t = max(t, upcoming[0][0])
            if starts is not None and len(steps) < len(starts):
                t = max(t, float(starts[len(steps)]))
            continue
        i = len(steps)
        if i >= len(seconds):
            raise ReplayError(f"the policy asks for iteration {i + 1}, the live run recorded {len(seconds)}")
        dt = float(seconds[i])
        end = t + dt
        if step == "prefill":
            lens = [w.prompt_len[r] for r in new]
            steps.append(ReplayStep("prefill", t, dt, len(new), sum(lens), sum(lens) / len(lens)))
            rows += new
            for r in new:
                got[r] = 1
                first_tok[r] = end
        else:
            left = max(w.budget[r] - got[r] for r in rows)
            depth = policy.depth(w.shape.max_depth, left)
            ctx = sum(w.prompt_len[r] + got[r] for r in rows) / len(rows)
            steps.append(ReplayStep("round", t, dt, len(rows), len(rows) * w.shape.cut(depth).size, ctx))
            for r in rows:
                if used[r] >= len(w.kept[r]):
                    raise ReplayError(f"request {r} runs a round more than the live run recorded")
                got[r] += w.kept[r][used[r]]
                used[r] += 1
        gone = [r for r in rows if got[r] >= out_len[r]]
        for r in gone:
            finish[r] = end
            done += 1
            nxt = closed.on_finish() if closed is not None else None
            if nxt is not None:
                heapq.heappush(upcoming, (end, order, nxt))
                order += 1
        if gone:
            policy.release(gone)
            rows = [r for r in rows if r not in gone]
        t = end
    if len(steps) != len(seconds):
        raise ReplayError(f"the replay ran {len(steps)} iterations, the live run recorded {len(seconds)}")
    elapsed = steps[-1].start + steps[-1].seconds if steps else 0.0
    rounds = [len(k) for k in w.kept]
    accepted = [sum(k) - len(k) for k in w.kept]
    figures = serving_figures(arrival, first_tok, finish, out_len, rounds, accepted, elapsed)
    return Replay(figures | {"elapsed_s": elapsed}, steps, arrival, first_tok, finish)


def kept_per_request(iterations: Sequence, per_round: Sequence[int], n: int) -> list[list[int]]:
    """Per request, the tokens it kept in each of its rounds, from a live run's iterations
    (simspec.sim.iteration.Iteration, with their rids) and its Stats.per_round (one entry per
    row per round, in iteration order then row order, as the live loop appends them)."""
    out: list[list[int]] = [[] for _ in range(n)]
    pos = 0
    for it in iterations:
        if it.kind != "round":
            continue
        for rid in it.rids:
            if pos >= len(per_round):
                raise ReplayError("the live per-round record is shorter than its rounds' rows")
            out[rid].append(int(per_round[pos]))
            pos += 1
    if pos != len(per_round):
        raise ReplayError(f"the live per-round record has {len(per_round)} entries, its rounds' rows {pos}")
    return out
