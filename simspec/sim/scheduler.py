"""Admission for one replica: which queued requests may join the running batch, and when.

Separate from the serving loop because it is policy, not timing: first come first served,
at most max_batch sequences, and (when a KV capacity is set) a request is admitted only if
its whole prompt + output fits in the KV cache with a reserve for the verify queries. Space
is held from admission to retirement, so a running request never runs out of memory; the
head of the queue waits for memory rather than being overtaken by a smaller request.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import simpy

from simspec.sim.records import Records


class Scheduler:
    def __init__(self, env: simpy.Environment, records: Records, max_batch: int,
                 kv_capacity: int | None, kv_reserve: int) -> None:
        self.env = env
        self.rec = records
        self.max_batch = max_batch
        self.kv_free = kv_capacity  # KV tokens not held by an admitted request; None: unlimited
        self.kv_reserve = kv_reserve
        self._queue: deque[int] = deque()
        self._wake: simpy.Event | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, rid: int) -> None:
        """Queue a request, waking the serving loop if it sleeps on an empty replica."""
        self._queue.append(rid)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def arrival(self) -> simpy.Event:
        """An event that fires at the next submit (the loop yields it when idle)."""
        self._wake = self.env.event()
        return self._wake

    def admit(self, running: int) -> list[int]:
        """Take requests off the head of the queue while the batch (of `running`
        sequences) has room and their KV tokens fit; the KV tokens are held from now."""
        new: list[int] = []
        room = self.max_batch - running
        rec = self.rec
        while self._queue and len(new) < room:
            rid = self._queue[0]
            if self.kv_free is not None:
                need = int(rec.prompt_len[rid] + rec.output_len[rid]) + self.kv_reserve
                if need > self.kv_free:
                    break  # FCFS: wait for memory rather than overtake
                self.kv_free -= need
            self._queue.popleft()
            new.append(rid)
        return new

    def release(self, prompt: np.ndarray, out: np.ndarray) -> None:
        """Give back the KV tokens of retired sequences (their prompt and output lengths)."""
        if self.kv_free is not None:
            self.kv_free += int((prompt + out).sum()) + self.kv_reserve * len(prompt)
