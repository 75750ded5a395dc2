"""The running batch of one replica: one entry per sequence, column-wise.

Column-wise so a speculative round updates every sequence with a few vector operations
instead of a Python loop per sequence. Admitting and retiring are the only operations that
change the batch's length, and both go through here, so the columns cannot get out of step.
The columns are the rows of one int64 block: an admission is one concatenation and a
retirement two selections, whatever the number of columns (nine separate arrays cost a
study's simulations a fifth of their time in these two operations). The two flags (ready,
behind) are kept as 0/1.
"""

from __future__ import annotations

import numpy as np

COLUMNS = ("rid", "gen", "out", "prompt", "rounds", "acc", "handle", "ready", "behind")


def _column(i: int, doc: str) -> property:
    def get(self: RunningBatch) -> np.ndarray:
        return self.block[i]

    def put(self: RunningBatch, value) -> None:
        self.block[i] = value

    return property(get, put, doc=doc)


class RunningBatch:
    """The sequences being decoded, in admission order (kept compact)."""

    COLUMNS = COLUMNS
    __slots__ = ("block",)

    rid = _column(0, "request id")
    gen = _column(1, "tokens emitted so far")
    out = _column(2, "output length: stop here")
    prompt = _column(3, "prompt length")
    rounds = _column(4, "speculative rounds run")
    acc = _column(5, "draft tokens accepted and emitted")
    handle = _column(6, "the acceptance oracle's handle")
    ready = _column(7, "overlap: next round's draft already valid (0/1)")
    behind = _column(8, "last round fully accepted: drafter cache 1 short (0/1)")

    def __init__(self, block: np.ndarray | None = None) -> None:
        self.block = np.zeros((len(COLUMNS), 0), dtype=np.int64) if block is None else block

    def __len__(self) -> int:
        return self.block.shape[1]

    def append(self, rid: np.ndarray, gen: np.ndarray | int, out: np.ndarray, prompt: np.ndarray,
               rounds: np.ndarray | int, acc: np.ndarray | int, handle: np.ndarray | int,
               behind: np.ndarray | int) -> None:
        """Add newly prefilled sequences at the end (a scalar: the same for each); none has a
        pre-drafted round yet."""
        new = np.zeros((len(COLUMNS), len(rid)), dtype=np.int64)
        new[0], new[1], new[2], new[3], new[4], new[5], new[6], new[8] = \
            rid, gen, out, prompt, rounds, acc, handle, behind
        self.block = np.concatenate([self.block, new], axis=1)

    def take_finished(self) -> RunningBatch | None:
        """Remove the sequences that reached their output length and return them as a
        batch of their own (None, and nothing changed, when none has)."""
        block = self.block
        done = block[1] >= block[2]
        if not done.any():
            return None
        finished = RunningBatch(block[:, done])
        self.block = block[:, ~done]
        return finished
