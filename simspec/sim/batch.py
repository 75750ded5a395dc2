"""The running batch of one replica: one numpy entry per sequence, column-wise.

Column-wise so a speculative round updates every sequence with a few vector operations
instead of a Python loop per sequence. Admitting and retiring are the only operations that
change the batch's length, and both go through here, so the columns cannot get out of step.
"""

from __future__ import annotations

import numpy as np


class RunningBatch:
    """The sequences being decoded, in admission order (kept compact)."""

    COLUMNS = ("rid", "gen", "out", "prompt", "rounds", "acc", "handle", "ready", "behind")
    __slots__ = COLUMNS

    def __init__(self) -> None:
        self.rid = np.empty(0, dtype=np.int64)     # request id
        self.gen = np.empty(0, dtype=np.int64)     # tokens emitted so far
        self.out = np.empty(0, dtype=np.int64)     # output length: stop here
        self.prompt = np.empty(0, dtype=np.int64)  # prompt length
        self.rounds = np.empty(0, dtype=np.int64)  # speculative rounds run
        self.acc = np.empty(0, dtype=np.int64)     # draft tokens accepted and emitted
        self.handle = np.empty(0, dtype=np.int64)  # the acceptance oracle's handle
        self.ready = np.empty(0, dtype=bool)       # overlap: next round's draft already valid
        self.behind = np.empty(0, dtype=bool)      # last round fully accepted: drafter cache 1 short

    def __len__(self) -> int:
        return len(self.rid)

    def append(self, rid: np.ndarray, gen: np.ndarray, out: np.ndarray, prompt: np.ndarray,
               rounds: np.ndarray, acc: np.ndarray, handle: np.ndarray, behind: np.ndarray) -> None:
        """Add newly prefilled sequences at the end; none has a pre-drafted round yet."""
        self.rid = np.concatenate([self.rid, rid])
        self.gen = np.concatenate([self.gen, gen])
        self.out = np.concatenate([self.out, out])
        self.prompt = np.concatenate([self.prompt, prompt])
        self.rounds = np.concatenate([self.rounds, rounds])
        self.acc = np.concatenate([self.acc, acc])
        self.handle = np.concatenate([self.handle, handle])
        self.ready = np.concatenate([self.ready, np.zeros(len(rid), dtype=bool)])
        self.behind = np.concatenate([self.behind, behind])

    def take_finished(self) -> RunningBatch | None:
        """Remove the sequences that reached their output length and return them as a
        batch of their own (None, and nothing changed, when none has)."""
        done = self.gen >= self.out
        if not done.any():
            return None
        keep = ~done
        finished = RunningBatch()
        for name in self.COLUMNS:
            column = getattr(self, name)
            setattr(finished, name, column[done])
            setattr(self, name, column[keep])
        return finished
