"""One target replica's serving loop: continuous batching with speculative rounds.

Each iteration is either a prefill of newly admitted requests (prefill-first) or one
speculative round over the whole running batch: draft, verify, accept per sequence (one
numpy draw for the batch), emit accepted tokens plus the bonus token, retire finished
requests. A request stops at exactly its output length; tokens accepted past it are
dropped. One SimPy timeout per iteration, never one per token.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import simpy

from simspec.sim.acceptance import AcceptanceOracle
from simspec.sim.devices import Device
from simspec.sim.records import Records
from simspec.sim.round_cost import RoundCost


class Replica:
    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        cost: RoundCost,
        oracle: AcceptanceOracle | None,
        target_dev: Device,
        draft_dev: Device,
        records: Records,
        max_batch: int,
        kv_capacity: int | None,
        kv_reserve: int,
        overlap: bool,
        on_finish: Callable[[int], None],
        with_prefill: bool = False,
        clip_to_budget: bool = False,
    ) -> None:
        self.env = env
        self.index = index
        self.cost = cost
        self.oracle = oracle
        self.depth = oracle.depth - (1 if overlap else 0) if oracle is not None else 0
        self.target_dev = target_dev
        self.draft_dev = draft_dev
        self.rec = records
        self.max_batch = max_batch
        self.kv_free = kv_capacity if kv_capacity is not None else None
        self.kv_reserve = kv_reserve
        self.overlap = overlap
        self.with_prefill = with_prefill  # the prefill is also each request's first round
        self.clip = clip_to_budget and oracle is not None
        self.on_finish = on_finish
        self.queue: deque[int] = deque()
        self._wake: simpy.Event | None = None
        # Running batch, one entry per sequence (kept compact).
        self.rid = np.empty(0, dtype=np.int64)
        self.gen = np.empty(0, dtype=np.int64)
        self.out = np.empty(0, dtype=np.int64)
        self.prompt = np.empty(0, dtype=np.int64)
        self.rounds = np.empty(0, dtype=np.int64)
        self.acc = np.empty(0, dtype=np.int64)
        self.handle = np.empty(0, dtype=np.int64)
        self.ready = np.empty(0, dtype=bool)  # overlap: next round's draft already valid
        self.behind = np.empty(0, dtype=bool)  # last round fully accepted: drafter cache 1 short
        self._lag = 0.0                       # overlap: drafter still busy pre-drafting
        self._prefilling = 0                  # admitted, prefill in flight
        # wall seconds by phase (drafting: only the part not hidden behind verification)
        self.phase_s = {"prefill": 0.0, "draft": 0.0, "verify": 0.0}
        self.process = env.process(self._loop())

    # -- scheduler interface ---------------------------------------------------------
    @property
    def load(self) -> int:
        return len(self.queue) + self._prefilling + len(self.rid)

    def submit(self, rid: int) -> None:
        self.queue.append(rid)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # -- the loop --------------------------------------------------------------------
    def _admit(self) -> list[int]:
        new: list[int] = []
        room = self.max_batch - len(self.rid)
        rec = self.rec
        while self.queue and len(new) < room:
            rid = self.queue[0]
            if self.kv_free is not None:
                need = int(rec.prompt_len[rid] + rec.output_len[rid]) + self.kv_reserve
                if need > self.kv_free:
                    break  # FCFS: wait for memory rather than overtake
                self.kv_free -= need
            self.queue.popleft()
            new.append(rid)
        return new

    def _loop(self):
        env = self.env
        while True:
            new = self._admit() if self.queue else []
            if new:
                yield from self._prefill(new)
                continue
            if len(self.rid) == 0:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            yield from self._round()

    def _prefill(self, new: list[int]):
        rec = self.rec
        ids = np.asarray(new, dtype=np.int64)
        prompts = rec.prompt_len[ids]
        depth = self.depth
        if self.clip:
            depth = min(depth, int(rec.output_len[ids].max()) - 1)
        if self.with_prefill:
            wall, t_target, t_draft = self.cost.first_round_s(prompts.tolist(), depth)
        else:
            wall, t_target, t_draft = self.cost.prefill_s(prompts.tolist())
        now = self.env.now
        rec.admitted[ids] = now
        self._prefilling = len(ids)
        yield self.env.timeout(wall)
        self.phase_s["prefill"] += wall
        self._prefilling = 0
        self.target_dev.charge(t_target)
        self.draft_dev.charge(t_draft)
        now = self.env.now
        rec.first_token[ids] = now
        rec.replica[ids] = self.index
        handles = np.fromiter((self.oracle.bind(int(r)) for r in ids), dtype=np.int64, count=len(ids)) \
            if self.oracle is not None else np.zeros(len(ids), dtype=np.int64)
        gen = np.ones(len(ids), dtype=np.int64)
        acc = np.zeros(len(ids), dtype=np.int64)
        behind = np.zeros(len(ids), dtype=bool)
        if self.with_prefill and self.oracle is not None:  # the first round's acceptance
            k = np.minimum(self.oracle.draw(handles, np.zeros(len(ids), dtype=np.int64)), depth)
            gen = np.minimum(k + 1, rec.output_len[ids])
            acc = np.minimum(k, gen)
            behind = k >= depth
        rounds = np.full(len(ids), 1 if self.with_prefill else 0, dtype=np.int64)
        self.rid = np.concatenate([self.rid, ids])
        self.gen = np.concatenate([self.gen, gen])
        self.out = np.concatenate([self.out, rec.output_len[ids]])
        self.prompt = np.concatenate([self.prompt, prompts])
        self.rounds = np.concatenate([self.rounds, rounds])
        self.acc = np.concatenate([self.acc, acc])
        self.handle = np.concatenate([self.handle, handles])
        self.ready = np.concatenate([self.ready, np.zeros(len(ids), dtype=bool)])
        self.behind = np.concatenate([self.behind, behind])
        self._retire()

    def _round(self):
        cost = self.cost
        b = len(self.rid)
        ctx = cost.bucket(float(self.prompt.sum() + self.gen.sum()) / b) if cost.context_dependent else 0
        depth = None  # clip_to_budget: no deeper than the batch's largest remaining budget - 1
        if self.clip:
            left = int((self.out - self.gen).max()) - 1
            depth = left if left < self.depth else None
        t_v = cost.verify_s(b, ctx, depth)
        if self.oracle is None:
            k = None
            t_d_busy = 0.0
            wall = t_v
        elif not self.overlap:
            k = self.oracle.draw(self.handle, self.gen)
            if depth is not None:
                k = np.minimum(k, depth)
            t_d_busy = cost.draft_s(b, ctx, depth, behind=bool(self.behind.any()))
            wall = t_d_busy + t_v
            self.behind = k >= (self.depth if depth is None else depth)
        else:
            # PEARL-style: the drafter pre-drafts round i+1 during verification of round i.
            # A pre-draft survives only if the whole draft was accepted and the target's
            # bonus token equals the drafter's next token (one more acceptance event).
            n_ready = int(self.ready.sum())
            n_need = b - n_ready
            t_need = cost.draft_s(n_need, ctx)
            lag = self._lag if n_ready else 0.0
            t_pre = cost.draft_s(b, ctx)
            wall = lag + t_need + t_v
            self._lag = max(0.0, t_pre - t_v)
            t_d_busy = t_need + t_pre
            k_ext = self.oracle.draw(self.handle, self.gen)
            self.ready = k_ext > self.depth
            k = np.minimum(k_ext, self.depth)
        yield self.env.timeout(wall)
        self.phase_s["verify"] += t_v
        self.phase_s["draft"] += wall - t_v
        self.target_dev.charge(t_v)
        self.draft_dev.charge(t_d_busy)
        if k is None:
            self.gen += 1
        else:
            emit = np.minimum(k + 1, self.out - self.gen)
            self.gen += emit
            self.acc += np.minimum(k, emit)
        self.rounds += 1
        self._retire()

    def _retire(self) -> None:
        done = self.gen >= self.out
        if not done.any():
            return
        rec = self.rec
        now = self.env.now
        ids = self.rid[done]
        rec.finish[ids] = now
        rec.tokens[ids] = self.gen[done]
        rec.rounds[ids] = self.rounds[done]
        rec.accepted[ids] = self.acc[done]
        if self.kv_free is not None:
            self.kv_free += int((self.prompt[done] + self.out[done]).sum()) + self.kv_reserve * len(ids)
        keep = ~done
        self.rid = self.rid[keep]
        self.gen = self.gen[keep]
        self.out = self.out[keep]
        self.prompt = self.prompt[keep]
        self.rounds = self.rounds[keep]
        self.acc = self.acc[keep]
        self.handle = self.handle[keep]
        self.ready = self.ready[keep]
        self.behind = self.behind[keep]
        for rid in ids.tolist():
            self.on_finish(rid)
