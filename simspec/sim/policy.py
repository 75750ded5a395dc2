"""The serving policy: one copy, driven by the simulator (SimPy time) and the live engine (real
forwards). Neither SimPy nor torch appears here, so the two cannot drift apart: a validation
that compares a live run with a simulation compares one policy's two timings.

  admission   first come first served, between iterations: at most `max_batch` sequences and,
              with a KV capacity, a request joins only if its prompt + output budget + the
              round's verify queries (`kv_reserve`) fit in what admitted requests do not hold.
              The head of the queue waits for memory rather than being overtaken; space is held
              from admission to retirement, so a running request never runs out of memory.
  iteration   prefill-first: if any request was admitted, a prefill of all of them together;
              else one speculative round over the whole running batch; else wait for an arrival.
  depth       clip to budget: a round never drafts deeper than the batch's largest remaining
              budget minus one (the bonus token), when the policy says so.
  retirement  after every iteration; finished sequences give their KV tokens back and, in a
              closed loop, each finish brings the next request at that moment (`ClosedLoop`).

What the two drivers decide themselves, and is named here so it stays in one place: when a
sequence has finished (the simulator knows each output length; the live engine also stops at a
stop token), and what an iteration costs (the simulator's cost model; the live run's clock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

Step = Literal["prefill", "round", "wait"]


def kv_need(prompt_len, budget, reserve: int):
    """KV tokens a request holds from admission to retirement: its prompt, its output budget
    and the round's verify queries (ints or numpy arrays alike)."""
    return prompt_len + budget + reserve


class ServingPolicy:
    """Admission, iteration choice, depth clipping and KV accounting for one replica.

    `prompt_len` and `budget` are indexed by request id (`budget`: the output tokens a request
    may produce, which is what its KV space is held for)."""

    def __init__(self, max_batch: int, kv_capacity: int | None, kv_reserve: int,
                 prompt_len: Sequence[int] | np.ndarray, budget: Sequence[int] | np.ndarray,
                 clip_to_budget: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch} must be >= 1")
        self.max_batch = max_batch
        self.kv_capacity = kv_capacity  # KV tokens per replica; None: unlimited
        self.kv_reserve = kv_reserve
        self.clip_to_budget = clip_to_budget
        self._prompt = np.asarray(prompt_len, dtype=np.int64)
        self._budget = np.asarray(budget, dtype=np.int64)
        self._queue: deque[int] = deque()
        self.held = 0  # KV tokens held by admitted, unfinished requests

    # -- KV ----------------------------------------------------------------------------------
    def need(self, rid: int) -> int:
        """KV tokens request `rid` holds from admission to retirement."""
        return int(kv_need(self._prompt[rid], self._budget[rid], self.kv_reserve))

    def release(self, rids: Iterable[int] | np.ndarray) -> None:
        """Give back the KV tokens of retired requests."""
        ids = np.asarray(rids if isinstance(rids, np.ndarray) else list(rids), dtype=np.int64)
        self.held -= int(kv_need(self._prompt[ids], self._budget[ids], self.kv_reserve).sum())

    # -- the queue ---------------------------------------------------------------------------
    def arrive(self, rid: int) -> None:
        self._queue.append(rid)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def waiting(self) -> tuple[int, ...]:
        """The queue, head first (what an iteration record keeps)."""
        return tuple(self._queue)

    def admit(self, running: int) -> list[int]:
        """Take requests off the head of the queue while the batch (of `running` sequences)
        has room and their KV tokens fit; the KV tokens are held from now."""
        new: list[int] = []
        room = self.max_batch - running
        cap = self.kv_capacity
        while self._queue and len(new) < room:
            rid = self._queue[0]
            need = self.need(rid)
            if cap is not None and self.held + need > cap:
                break  # FCFS: wait for memory rather than overtake
            self.held += need
            self._queue.popleft()
            new.append(rid)
        return new

    # -- the iteration -------------------------------------------------------------------------
    def next_step(self, running: int) -> tuple[Step, list[int]]:
        """Prefill-first: ("prefill", admitted) if anyone was admitted, else ("round", []) if a
        batch runs, else ("wait", [])."""
        new = self.admit(running)
        if new:
            return "prefill", new
        return ("round" if running else "wait"), new

    def depth(self, depth: int, max_left: int) -> int:
        """The draft depth of a round whose sequences have at most `max_left` tokens left to
        produce: clipped to max_left - 1 (the bonus token makes the last) when the policy clips."""
        return min(depth, max_left - 1) if self.clip_to_budget else depth


class ClosedLoop:
    """Closed-loop arrivals for the whole workload (not per replica): `concurrency` users send
    requests 0..concurrency-1 at the start; each finish sends the next request at that moment."""

    def __init__(self, requests: int, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be >= 1")
        self.requests = requests
        self._next = min(concurrency, requests)

    def first(self) -> range:
        return range(self._next)

    def on_finish(self) -> int | None:
        """The request that arrives now that one has finished (None when all were sent)."""
        if self._next >= self.requests:
            return None
        rid = self._next
        self._next += 1
        return rid
