"""Jumping between batch changes: many speculative rounds of an unchanged batch at once.

Between two changes of a replica's running batch (an admission or a retirement) every round has
the same sequences: their contexts grow by what they accept, their costs follow from the cost
model's context axis, and the first retirement follows from their acceptance draws. `plan`
computes such a run of rounds without SimPy; the replica then waits once (one timeout to the
last round's end) and `apply`s it. Results are the same as round by round, bit for bit, for the
same seed (the draw order is kept, not just the distribution):
  draws   SurvivalOracle (i.i.d., per position, tree survival): vectorised over rounds, reading
          the same uniforms in the same order (`peek_rounds` reads the oracle's stream ahead with
          its block-refill rule, `consume_rounds` keeps only the rounds used). Any other oracle
          (trace replay) is drawn round by round, as the loop draws it, but without SimPy events.
  costs   each round's context bucket is computed as the loop computes it, the costs come from
          the same RoundCost lookups; plain decoding (no oracle) is one token per round.
  time    round ends are summed one by one from the clock (as SimPy adds each timeout), device
          busy time and phase seconds in the loop's order (np.add.accumulate is sequential);
          the one event is queued at exactly that float (`wake_at`).
A jump ends at the first round that retires a sequence; at the first round ending at or after
the next arrival when that arrival could be admitted (queue empty and room in the batch: an
arrival during a jump ends it at the next round boundary); before a round whose depth the
policy clips to the remaining budget (those few rounds go round by round). Ending early is
always safe: the loop decides again at the boundary, as it would have.
Not jumped (the replica goes round by round): overlap (PEARL), several replicas (a finish on one
replica can send a request to another mid-jump), and detail records (which name the queue each
round saw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from heapq import heappush
from typing import NamedTuple, Protocol

import numpy as np
import simpy
from simpy.events import NORMAL

from simspec.sim.acceptance import AcceptanceOracle, ShortDrafts, SurvivalOracle, short_depth
from simspec.sim.batch import RunningBatch
from simspec.sim.devices import Device
from simspec.sim.iteration import Iteration
from simspec.sim.policy import ServingPolicy
from simspec.sim.round_cost import RoundCost


class Replica(Protocol):
    """What a jump reads and writes of simspec.sim.replica.Replica (not imported: it imports this)."""

    env: simpy.Environment
    batch: RunningBatch
    cost: RoundCost
    oracle: AcceptanceOracle | None
    short: ShortDrafts | None  # the oracle, when its drafter may find fewer tokens than depth
    policy: ServingPolicy
    depth: int
    phase_s: dict[str, float]
    target_dev: Device
    draft_dev: Device
    log: list


@dataclass
class Jump:
    """n rounds of one batch: their starts and walls, the busy seconds they charge, and the
    batch's columns after them."""

    starts: list[float]
    walls: np.ndarray
    end: float
    t_verify: np.ndarray
    t_draft: np.ndarray
    gen: np.ndarray
    acc: np.ndarray
    behind: np.ndarray

    @property
    def n(self) -> int:
        return len(self.starts)


def plan(rep: Replica, arrival: float) -> Jump | None:
    """The rounds from now to the next batch change (or the first round ending at or after
    `arrival`); None when the next round must go round by round (its depth is clipped)."""
    if rep.oracle is None or (isinstance(rep.oracle, SurvivalOracle) and rep.oracle.can_peek(len(rep.batch))):
        return _vectorised(rep, arrival)
    return _stepwise(rep, arrival)


def wake_at(env: simpy.Environment, t: float) -> simpy.Event:
    """An event that fires at exactly time t (t >= env.now), ordered as a timeout made now.

    A timeout fires at now + delay, and for some (now, t) no float delay lands on t (when the
    exact sum is a tie, it rounds to even): the event goes on SimPy's queue at t itself, as
    Environment.schedule(event, NORMAL, delay) would put it at now + delay (simpy 4's queue)."""
    if t < env.now:
        raise ValueError(f"cannot wake at {t} before now ({env.now})")
    event = simpy.Event(env)
    event._ok = True
    event._value = None
    heappush(env._queue, (t, NORMAL, next(env._eid), event))
    return event


def apply(rep: Replica, j: Jump) -> None:
    """What the n rounds did to the batch, the phase seconds, the devices and the log."""
    batch = rep.batch
    batch.gen, batch.acc, batch.behind = j.gen, j.acc, j.behind
    batch.rounds += j.n
    rep.phase_s["verify"] = _sum_after(rep.phase_s["verify"], j.t_verify)
    rep.phase_s["draft"] = _sum_after(rep.phase_s["draft"], j.walls - j.t_verify)
    if rep.target_dev is rep.draft_dev:  # one device: charged verify, draft, verify, draft, ...
        rep.target_dev.busy_s = _sum_pairs_after(rep.target_dev.busy_s, j.t_verify, j.t_draft)
    else:
        rep.target_dev.busy_s = _sum_after(rep.target_dev.busy_s, j.t_verify)
        rep.draft_dev.busy_s = _sum_after(rep.draft_dev.busy_s, j.t_draft)
    rep.log.append(Rounds(j.starts, j.walls, len(batch)))


class Rounds(NamedTuple):
    """A jump's rounds in a replica's log, expanded to one Iteration each only when read
    (`expand`): a study never reads them, and building one record per round was most of
    what a jump still cost."""

    starts: list[float]
    walls: np.ndarray
    batch: int


def expand(log: list) -> list[Iteration]:
    """A replica's log with every Rounds entry replaced by its rounds' Iteration records."""
    out: list[Iteration] = []
    for entry in log:
        if isinstance(entry, Rounds):
            out.extend([Iteration("round", s, w, entry.batch) for s, w in zip(entry.starts, entry.walls.tolist())])
        else:
            out.append(entry)
    return out


def _sum_after(x0: float, values: np.ndarray) -> float:
    """x0 + v0 + v1 + ... added left to right, as a loop of += would."""
    if len(values) <= 64:  # a few rounds: Python's loop is quicker than numpy's call overhead
        for v in values.tolist():
            x0 += v
        return x0
    return float(np.add.accumulate(np.concatenate([[x0], values]))[-1])


def _sum_pairs_after(x0: float, a: np.ndarray, b: np.ndarray) -> float:
    """x0 + a0 + b0 + a1 + b1 + ... added left to right."""
    if len(a) <= 32:
        for u, v in zip(a.tolist(), b.tolist()):
            x0 += u
            x0 += v
        return x0
    return _sum_after(x0, np.stack([a, b], axis=1).ravel())


def _lookup(keys: np.ndarray, price) -> np.ndarray:
    """price(key) for each key, called once per distinct key (a dict for a few rounds,
    np.unique for many, whichever has less overhead); a price that is a tuple gives one
    column per element."""
    if len(keys) <= 64:
        klist = keys.tolist()
        seen = {key: price(key) for key in set(klist)}
        return np.array([seen[key] for key in klist])
    uniq, inv = np.unique(keys, return_inverse=True)
    return np.array([price(int(key)) for key in uniq])[inv]


def _times(now: float, walls: np.ndarray, arrival: float) -> tuple[np.ndarray, int]:
    """Round ends summed one by one from now, and how many rounds run before the arrival is seen."""
    ends = np.add.accumulate(np.concatenate([[now], walls]))
    n = len(walls)
    if arrival < math.inf:
        seen = np.flatnonzero(ends[1:] >= arrival)
        if len(seen):
            n = int(seen[0]) + 1
    return ends, n


def _vectorised(rep: Replica, arrival: float) -> Jump | None:
    batch, cost, oracle, policy = rep.batch, rep.cost, rep.oracle, rep.policy
    b = len(batch)
    depth = rep.depth
    gen, out = batch.gen, batch.out
    left = out - gen
    rounds = int(left.min())  # every round emits >= 1 token per sequence: a retirement by then
    if oracle is not None:
        # expected tokens per round: read ahead a quarter more rounds than expected, plus 16
        rounds = min(rounds, int(rounds / oracle.tokens_per_round * 1.25) + 16)
        k = oracle.accepted(oracle.peek_rounds(b, rounds))
        cum = np.cumsum(k, axis=0)
        cum += np.arange(1, rounds + 1)[:, None]  # emitted after rounds 0..j (k + 1 a round), none retired
    else:
        k = None
        cum = np.broadcast_to(np.arange(1, rounds + 1)[:, None], (rounds, b))
    hit = (cum >= left).any(axis=1)
    n = int(hit.argmax()) + 1 if hit[-1] else rounds  # a retirement, or the rounds read ahead
    before = None  # emitted before round j, when a per-round context or the clip needs it
    if policy.clip_to_budget or cost.context_dependent:
        before = cum[:n] - (k[:n] + 1) if k is not None else cum[:n] - 1
    if policy.clip_to_budget:  # a round whose depth the policy clips goes round by round
        clipped = np.flatnonzero((left - before).max(axis=1) - 1 < depth)
        if len(clipped):
            n = int(clipped[0])
            if n == 0:
                return None
            before = before[:n]
    if k is not None:
        full = k[:n] >= depth
        behind = np.empty(n, dtype=bool)
        behind[0] = bool(batch.behind.any())
        behind[1:] = full[:-1].any(axis=1)
    else:
        behind = np.zeros(n, dtype=bool)
    # the costs of each distinct (context, behind), looked up once
    if not cost.context_dependent:  # one context: a verify price, and a draft price for either flag
        v = cost.verify_s(b, 0, None)
        t_v = np.full(n, v)
        if oracle is not None:
            d0, d1, x = cost.draft_s(b, 0, None, behind=False), cost.draft_s(b, 0, None, behind=True), cost.transfer_s(b)
            t_d = np.where(behind, d1, d0)
            walls = np.where(behind, d1 + x + v, d0 + x + v)  # the sums the arrays' would give
        else:
            t_d = np.zeros(n)
            walls = t_v
    else:
        if cost.padded:  # the longest row before each round
            longest = ((batch.prompt + gen)[None, :] + before).max(axis=1)
            keys = cost.buckets(longest.astype(float)) * 2 + behind
        else:
            sums = int(batch.prompt.sum() + gen.sum()) + before.sum(axis=1)
            keys = cost.buckets(sums.astype(float) / b) * 2 + behind
        if oracle is not None:
            pair = _lookup(keys, lambda key: (cost.verify_s(b, key // 2, None),
                                              cost.draft_s(b, key // 2, None, behind=bool(key % 2))))
            t_v, t_d = pair[:, 0], pair[:, 1]
            walls = t_d + cost.transfer_s(b) + t_v
        else:
            t_v = _lookup(keys, lambda key: cost.verify_s(b, key // 2, None))
            t_d = np.zeros(n)
            walls = t_v
    ends, n = _times(rep.env.now, walls, arrival)
    if k is not None:
        oracle.consume_rounds(b, n)
        kl = k[n - 1]
        emitted = cum[n - 1] - kl - 1  # before the last round: sum of k over the others, + n - 1
        last = gen + emitted
        emit = np.minimum(kl + 1, out - last)
        acc = batch.acc + (emitted - (n - 1)) + np.minimum(kl, emit)
        behind_after = full[n - 1]
    else:
        last = gen + (n - 1)
        emit = np.ones(b, dtype=np.int64)
        acc, behind_after = batch.acc, batch.behind
    return Jump(ends[:n].tolist(), walls[:n], float(ends[n]), t_v[:n], t_d[:n], last + emit, acc, behind_after)


def _stepwise(rep: Replica, arrival: float) -> Jump | None:
    """Round by round without SimPy, for oracles whose draws depend on positions (trace replay)."""
    batch, cost, oracle, policy = rep.batch, rep.cost, rep.oracle, rep.policy
    b = len(batch)
    depth = rep.depth
    gen, acc, behind = batch.gen, batch.acc, batch.behind
    t = rep.env.now
    starts: list[float] = []
    walls: list[float] = []
    tvs: list[float] = []
    tds: list[float] = []
    t_x = cost.transfer_s(b)
    short = rep.short
    while True:
        if policy.clip_to_budget and policy.depth(depth, int((batch.out - gen).max())) < depth:
            break
        ctx = cost.round_context(batch.prompt, gen) if cost.context_dependent else 0
        k = oracle.draw(batch.handle, gen)
        t_v = cost.verify_s(b, ctx, short_depth(short, batch.handle, gen, depth))
        t_d = cost.draft_s(b, ctx, None, behind=bool(behind.any()))
        wall = t_d + t_x + t_v
        behind = k >= depth
        emit = np.minimum(k + 1, batch.out - gen)
        gen = gen + emit
        acc = acc + np.minimum(k, emit)
        starts.append(t)
        t = t + wall
        walls.append(wall)
        tvs.append(t_v)
        tds.append(t_d)
        if t >= arrival or (gen >= batch.out).any():
            break
    if not starts:
        return None
    return Jump(starts, np.array(walls), t, np.array(tvs), np.array(tds), gen, acc, behind)
