"""One target replica's serving loop: continuous batching with speculative rounds.

Each iteration is either a prefill of newly admitted requests (prefill-first) or one
speculative round over the whole running batch: draft, verify, accept per sequence (one
numpy draw for the batch), emit accepted tokens plus the bonus token, retire finished
requests. A request stops at exactly its output length; tokens accepted past it are
dropped. One SimPy timeout per iteration, never one per token; and between two changes of the
batch, one timeout for all its rounds (simspec.sim.jump: the same results, computed without an
event per round), which is what lets a study afford thousands of simulations. Who may join the
batch, which iteration comes next and how deep a round drafts is the ServingPolicy's business
(simspec.sim.policy, which the live engine runs too), the batch's columns are the
RunningBatch's; this module owns time and device busy time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import numpy as np
import simpy

from simspec.sim import jump
from simspec.sim.acceptance import AcceptanceOracle, MultiPass, is_dynamic, short_depth, short_drafts
from simspec.sim.batch import RunningBatch
from simspec.sim.devices import Device
from simspec.sim.iteration import Iteration
from simspec.sim.policy import ServingPolicy
from simspec.sim.records import Records
from simspec.sim.round_cost import RoundCost


@dataclass(frozen=True)
class ReplicaOptions:
    """How a replica serves; the same for every replica of a scenario."""

    max_batch: int
    kv_capacity: int | None     # KV tokens per replica; None: unlimited
    kv_reserve: int             # KV tokens held per sequence beyond prompt + output
    overlap: bool               # PEARL-style: pre-draft the next round during verification
    with_prefill: bool = False  # the prefill is also each request's first round
    clip_to_budget: bool = False  # never draft deeper than the batch's remaining budget - 1
    detail: bool = False        # iteration records with their requests (rids, queue, KV held)
    jump: bool = True           # jump between batch changes (simspec.sim.jump); False: round by round


class ReplicaDevices(NamedTuple):
    target: Device
    draft: Device  # the target's own Device when both run on one device


class Replica:
    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        options: ReplicaOptions,
        cost: RoundCost,
        oracle: AcceptanceOracle | None,
        devices: ReplicaDevices,
        records: Records,
        on_finish: Callable[[int], None],
        arrivals: Callable[[], float] | None = None,
    ) -> None:
        """`arrivals`: when the next request not yet submitted could reach this replica
        (math.inf: none will); None, unknown: never jump, every round is its own event."""
        self.env = env
        self.index = index
        self.cost = cost
        self.oracle = oracle
        self.overlap = options.overlap
        self.with_prefill = options.with_prefill
        self.depth = oracle.depth - (1 if self.overlap else 0) if oracle is not None else 0
        # a dynamic oracle (simspec.policies) chooses each round's shape: propose, then draw
        self.dynamic = is_dynamic(oracle)
        self.short = short_drafts(oracle)  # prompt lookup: a round verifies what its lookup found
        if self.dynamic and self.overlap:
            raise ValueError("a dynamic oracle chooses each round after the last verdict: no overlap")
        self.detail = options.detail
        self.target_dev = devices.target
        self.draft_dev = devices.draft
        self.rec = records
        self.on_finish = on_finish
        self.policy = ServingPolicy(options.max_batch, options.kv_capacity, options.kv_reserve,
                                    records.prompt_len, records.output_len,
                                    clip_to_budget=options.clip_to_budget and oracle is not None)
        self._wake: simpy.Event | None = None
        self.batch = RunningBatch()
        self._lag = 0.0                       # overlap: drafter still busy pre-drafting
        self._prefilling = 0                  # admitted, prefill in flight
        # wall seconds by phase (drafting: only the part not hidden behind verification)
        self.phase_s = {"prefill": 0.0, "draft": 0.0, "verify": 0.0}
        # one record per iteration, the type a live run records (simspec.sim.iteration); a
        # jump's rounds are one jump.Rounds entry (jump.expand gives their records)
        self.log: list[Iteration | jump.Rounds] = []
        self.arrivals = arrivals
        # a dynamic oracle's rounds depend on the verdicts before them: simulated round by round
        self._jumps = (options.jump and arrivals is not None and not self.overlap and not self.detail
                       and not self.dynamic)
        self.process = env.process(self._loop())

    # -- dispatcher interface ----------------------------------------------------------
    @property
    def load(self) -> int:
        """Requests queued, prefilling or running here (what a dispatcher balances)."""
        return self.policy.queued + self._prefilling + len(self.batch)

    def submit(self, rid: int) -> None:
        """Queue a request, waking the serving loop if it sleeps on an empty replica."""
        self.policy.arrive(rid)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # -- the loop --------------------------------------------------------------------
    def _loop(self) -> Iterator[simpy.Event]:
        policy = self.policy
        while True:
            step, new = policy.next_step(len(self.batch))
            if step == "prefill":
                yield from self._prefill(new)
            elif step == "round":
                yield from (self._jump() if self._jumps else self._round())
            else:
                self._wake = self.env.event()
                yield self._wake

    def _prefill(self, new: list[int]) -> Iterator[simpy.Event]:
        rec = self.rec
        ids = np.asarray(new, dtype=np.int64)
        prompts = rec.prompt_len[ids]
        outs = rec.output_len[ids]
        depth = self.policy.depth(self.depth, int(outs.max())) if self.with_prefill else self.depth
        queued = self.policy.waiting() if self.detail else ()
        handles = np.fromiter((self.oracle.bind(int(r)) for r in new), dtype=np.int64, count=len(ids)) \
            if self.oracle is not None else 0
        first = np.zeros(len(ids), dtype=np.int64) if self.with_prefill else None
        proposed = None  # a dynamic oracle's first-round proposals (with_prefill)
        if self.with_prefill and self.dynamic:
            proposed = self._propose(handles, first, depth)
            wall, t_target, t_draft = self.cost.first_round_s(
                prompts.tolist(), int(proposed.max()), self._groups(proposed))
            depth = int(proposed.max())
        elif self.with_prefill:
            short = short_depth(self.short, handles, first, depth)
            wall, t_target, t_draft = self.cost.first_round_s(prompts.tolist(), depth if short is None else short)
        else:
            wall, t_target, t_draft = self.cost.prefill_s(prompts.tolist())
        start = self.env.now
        rec.admitted[ids] = start
        self._prefilling = len(ids)
        yield self.env.timeout(wall)
        self.phase_s["prefill"] += wall
        self._prefilling = 0
        self.target_dev.charge(t_target)
        self.draft_dev.charge(t_draft)
        rec.first_token[ids] = self.env.now
        rec.replica[ids] = self.index
        gen, acc, behind = 1, 0, 0
        if self.with_prefill and self.oracle is not None:  # the first round's acceptance
            k = np.minimum(self.oracle.draw(handles, first), depth if proposed is None else proposed)
            gen = np.minimum(k + 1, outs)
            acc = np.minimum(k, gen)
            behind = (k >= depth) & (depth > 0) if proposed is not None else k >= depth
        rounds = 1 if self.with_prefill else 0
        self.batch.append(rid=ids, gen=gen, out=outs, prompt=prompts, rounds=rounds,
                          acc=acc, handle=handles, behind=behind)
        if self.detail:
            emitted = int(gen.sum()) if np.ndim(gen) else gen * len(ids)
            self.log.append(Iteration("prefill", start, wall, len(ids), emitted,
                                      tuple(self.batch.rid.tolist()), tuple(new), queued, self.policy.held))
        else:
            self.log.append(Iteration("prefill", start, wall, len(ids)))
        if self.with_prefill or outs.min() <= 1:  # else none is done: each has emitted one token
            self._retire()

    def _round(self) -> Iterator[simpy.Event]:
        cost = self.cost
        batch = self.batch
        b = len(batch)
        ctx = cost.round_context(batch.prompt, batch.gen) if cost.context_dependent else 0
        depth = None  # None: the full tree; else the policy's clip to the remaining budget
        if self.policy.clip_to_budget:
            clipped = self.policy.depth(self.depth, int((batch.out - batch.gen).max()))
            depth = clipped if clipped < self.depth else None
        t_v = cost.verify_s(b, ctx, depth)
        if self.dynamic:
            cap = self.depth if depth is None else depth
            d = self._propose(batch.handle, batch.gen, cap)
            top = int(d.max()) if b else 0
            t_v = cost.verify_s(b, ctx, top)
            k = np.minimum(self.oracle.draw(batch.handle, batch.gen), d)
            behind = bool(batch.behind.any())
            groups = self._groups(d)
            if groups is None:
                t_d_busy = cost.draft_s(b, ctx, top, behind=behind) if top else 0.0
            else:
                t_d_busy = sum(cost.draft_s(b, ctx, g_depth, behind=behind, model=g) for g, g_depth in groups)
            wall = t_d_busy + (cost.transfer_s(b) if top else 0.0) + t_v
            if top:  # a round that drafted nothing leaves every drafter cache as it was
                batch.behind = k >= top
        elif self.oracle is None:
            k = None
            t_d_busy = 0.0
            wall = t_v
        elif not self.overlap:
            k = self.oracle.draw(batch.handle, batch.gen)
            if depth is not None:
                k = np.minimum(k, depth)
            short = short_depth(self.short, batch.handle, batch.gen, self.depth if depth is None else depth)
            if short is not None:  # prompt lookup found fewer tokens: a shorter verify
                t_v = cost.verify_s(b, ctx, short)
            t_d_busy = cost.draft_s(b, ctx, depth, behind=bool(batch.behind.any()))
            wall = t_d_busy + cost.transfer_s(b) + t_v
            batch.behind = k >= (self.depth if depth is None else depth)
        else:
            # PEARL-style: the drafter pre-drafts round i+1 during verification of round i.
            # A pre-draft survives only if the whole draft was accepted and the target's
            # bonus token equals the drafter's next token (one more acceptance event).
            n_ready = int(batch.ready.sum())
            n_need = b - n_ready
            t_need = cost.draft_s(n_need, ctx)
            lag = self._lag if n_ready else 0.0
            t_pre = cost.pre_draft_s(b, ctx)
            t_x = cost.transfer_s(b)  # the draft there before verifying, the verdict back after
            wall = lag + t_need + t_x + t_v
            self._lag = max(0.0, t_pre - t_v - t_x)
            t_d_busy = t_need + t_pre
            k_ext = self.oracle.draw(batch.handle, batch.gen)
            batch.ready = k_ext > self.depth
            k = np.minimum(k_ext, self.depth)
        start = self.env.now
        detail = (tuple(batch.rid.tolist()), (), self.policy.waiting(), self.policy.held) if self.detail else None
        yield self.env.timeout(wall)
        self.phase_s["verify"] += t_v
        self.phase_s["draft"] += wall - t_v
        self.target_dev.charge(t_v)
        self.draft_dev.charge(t_d_busy)
        if k is None:
            emitted = b
            batch.gen += 1
        else:
            emit = np.minimum(k + 1, batch.out - batch.gen)
            emitted = int(emit.sum()) if detail else 0
            batch.gen += emit
            batch.acc += np.minimum(k, emit)
        batch.rounds += 1
        self.log.append(Iteration("round", start, wall, b, emitted, *detail) if detail
                        else Iteration("round", start, wall, b))
        self._retire()

    def _propose(self, handles: np.ndarray, positions: np.ndarray, cap: int) -> np.ndarray:
        """A dynamic oracle's draft lengths for this round, checked against the contract."""
        d = np.asarray(self.oracle.propose(handles, positions, cap), dtype=np.int64)
        if d.shape != (len(handles),) or (len(d) and (d.min() < 0 or d.max() > cap)):
            raise ValueError(f"a dynamic oracle proposed {d.tolist()} for {len(handles)} sequences, cap {cap}")
        return d

    def _groups(self, proposed: np.ndarray) -> list[tuple[int, int]] | None:
        """(draft cost model, depth) of each drafting pass the round runs, when the oracle runs
        several (a dynamic exit layer: one early-exit pass per layer chosen); None: one pass."""
        if not isinstance(self.oracle, MultiPass):
            return None
        return [(g, dd) for g, dd in self.oracle.passes(proposed) if dd > 0]

    def _jump(self) -> Iterator[simpy.Event]:
        """All rounds up to the next batch change, one timeout (simspec.sim.jump)."""
        policy = self.policy
        # An arrival matters only if it could be admitted at a round boundary: with a waiting
        # head (no room, or no memory) nothing is admitted before a retirement.
        can_join = policy.queued == 0 and len(self.batch) < policy.max_batch
        plan = jump.plan(self, self.arrivals() if can_join else math.inf)
        if plan is None:
            yield from self._round()
            return
        yield jump.wake_at(self.env, plan.end)
        jump.apply(self, plan)
        self._retire()

    def _retire(self) -> None:
        finished = self.batch.take_finished()
        if finished is None:
            return
        rec = self.rec
        ids = finished.rid
        rec.finish[ids] = self.env.now
        rec.tokens[ids] = finished.gen
        rec.rounds[ids] = finished.rounds
        rec.accepted[ids] = finished.acc
        self.policy.release(ids)
        for rid in ids.tolist():
            self.on_finish(rid)
