"""The real forwards of the live serving loop: prefill new requests into the running batch,
run one speculative round over it, drop finished rows. The loop (simspec.live.serving) decides
when; this decides nothing, so a test can swap it for scripted forwards and drive the very same
loop and policy.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from simspec.live.drafters import Drafter, Mode
from simspec.live.engine import Batch, Shape, speculative_round
from simspec.live.kv import KV
from simspec.live.sampling import probs
from simspec.live.stats import PHASES, Stats
from simspec.live.tree import Tree


class Forwards(Protocol):
    """What the serving loop asks of a model (rows: the running batch, in admission order)."""

    def prefill(self, prompts: list[list[int]]) -> list[int]:
        """Append these prompts as new rows at the end; each row's first token."""
        ...

    def round(self, depth: int) -> list[list[int]]:
        """One speculative round of every row, drafting at most `depth` deep; each row's new
        tokens (accepted draft tokens, then the target's token)."""
        ...

    def keep_rows(self, keep: list[int]) -> None:
        """Keep only these rows (retirement)."""
        ...


class ModelForwards:
    """A target (and drafter) with a batched KV cache whose rows follow the loop's rows."""

    def __init__(self, target: nn.Module, drafter: Drafter, tree: Tree, mode: Mode, kv: KV,
                 stats: Stats) -> None:
        self.target, self.drafter, self.tree, self.mode, self.kv, self.stats = target, drafter, tree, mode, kv, stats
        self.batch = Batch([], [])
        self.shapes: dict[int, Shape] = {}
        self.drafter.start(0)

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> list[int]:
        """One target forward over the new prompts (left-padded): each row's first token."""
        with self.stats.phase("prefill"):
            fresh = KV(self.target, len(prompts))
            none = torch.zeros(len(prompts), 0, dtype=torch.long)
            ids, kind, m = fresh.with_context(prompts, none, none)
            logits = fresh.forward(self.target, ids, kind, keep=[m - 1])[:, 0, :self.mode.vocab]
            self.kv.extend(fresh)
            self.drafter.admit(prompts)
            if self.mode.synthetic is not None:
                self.mode.synthetic.admit(prompts)
            if self.mode.greedy:
                first = logits.argmax(-1).tolist()
            else:
                p = probs(logits, self.mode.temperature).cpu()
                first = torch.multinomial(p, 1, generator=self.mode.gen)[:, 0].tolist()
        for prompt, tok in zip(prompts, first):
            self.batch.seqs.append(list(prompt))
            self.batch.pending.append(tok)
        return first

    @torch.inference_mode()
    def round(self, depth: int) -> list[list[int]]:
        if depth not in self.shapes:
            self.shapes[depth] = Shape.cut(self.tree, depth)
        # rounds=1: speculative_round times a Stats' round 0 as prefill; this is no prefill
        st = Stats(device=self.stats.device, rounds=1)
        new = speculative_round(self.target, self.kv, self.drafter, self.mode, self.shapes[depth],
                                self.batch, st)
        for k in PHASES:
            self.stats.seconds[k] += st.seconds[k]
        self.stats.calls += st.calls
        return new

    def keep_rows(self, keep: list[int]) -> None:
        self.kv.keep_rows(keep)
        self.drafter.retire(keep)
        if self.mode.synthetic is not None:
            self.mode.synthetic.retire(keep)
        self.batch.seqs = [self.batch.seqs[b] for b in keep]
        self.batch.pending = [self.batch.pending[b] for b in keep]
