"""What one serving iteration costs: prefill of new arrivals, or one speculative round.

A round is `depth` batched draft steps followed by one verification pass of the target
with (1 + draft tokens) query tokens per sequence; a tree drafts level by level and
verifies all its nodes at once. Costs are cached per (batch, context bucket), because
the same shapes recur thousands of times in a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from simspec.sim.costs import CostModel
from simspec.sim.transfer import Link

CONTEXT_BUCKET = 32  # tokens; context-dependent costs are looked up at this granularity


@dataclass
class RoundCost:
    target: CostModel
    draft: CostModel | None            # None: no drafting cost (plain decoding)
    draft_prefill: bool                # a separate drafter model prefills the prompt too
    parallel_devices: bool             # draft and target on different devices
    level_queries: Sequence[int] = ()  # query tokens per sequence at each draft step
    verify_queries: int = 1            # query tokens per sequence in the verify pass
    depth_nodes: Sequence[int] = ()    # tree nodes at depth 1..D (chain: all 1; default)
    draft_reads_prompt: bool = False   # with_prefill: the first draft step runs over the prompt
    draft_catch_up: bool = False       # a drafter with its own KV cache: after a fully accepted
                                       # round its first step also feeds the last draft token
    link: "Link | None" = None         # what crosses devices each round, and over what
    drafts: dict = field(default_factory=dict)  # other drafting passes a policy may run, by key
                                       # (a dynamic exit layer: early exit at layer l -> its cost)
    padded: bool = False               # rows padded to the longest (serving.batch_layout): a round
                                       # costs the longest row's context, a prefill the longest prompt
    _cache: dict = field(default_factory=dict, repr=False)
    context_dependent: bool = field(init=False)

    def __post_init__(self) -> None:
        # Decided once: the serving loop skips summing contexts when no cost reads them.
        self.context_dependent = self.target.depends_on_context or (
            self.draft is not None and self.draft.depends_on_context)
        if not self.depth_nodes:
            self.depth_nodes = [1] * len(self.level_queries)

    def bucket(self, context: float) -> int:
        if not self.context_dependent:
            return 0
        return max(1, int(round(context / CONTEXT_BUCKET))) * CONTEXT_BUCKET

    def buckets(self, contexts: np.ndarray) -> np.ndarray:
        """`bucket` of each context at once (np.rint rounds half to even, as round does)."""
        if not self.context_dependent:
            return np.zeros(len(contexts), dtype=np.int64)
        return np.maximum(1, np.rint(contexts / CONTEXT_BUCKET).astype(np.int64)) * CONTEXT_BUCKET

    def round_context(self, prompt: np.ndarray, gen: np.ndarray) -> int:
        """The context bucket a round of rows with these prompt and generated lengths is priced
        at: their mean, or their longest when the batch is padded."""
        if not self.context_dependent:
            return 0
        if self.padded:
            return self.bucket(float((prompt + gen).max()))
        return self.bucket(float(prompt.sum() + gen.sum()) / len(prompt))

    def prompt_len(self, prompt_lens: Sequence[int]) -> int:
        """The prompt length a prefill of these prompts together is priced at: their mean, or
        their longest when the batch is padded."""
        if self.padded:
            return max(1, int(max(prompt_lens)))
        return max(1, int(round(sum(prompt_lens) / len(prompt_lens))))

    def queries_at(self, depth: int | None) -> int:
        """Verify query tokens per sequence when the round drafts only `depth` levels."""
        if depth is None or depth >= len(self.depth_nodes):
            return self.verify_queries
        return 1 + int(sum(self.depth_nodes[:depth]))

    def draft_s(self, batch: int, ctx: int, depth: int | None = None, behind: bool = False,
                model=None) -> float:
        """Time to draft one round (its first `depth` levels) for `batch` sequences. `behind`:
        some sequence's drafter cache lacks the last draft token of a fully accepted round (it
        was never fed), so the first step feeds one more token per sequence (a batch is padded
        to one shape) and keeps the logits of the root only. `model`: a key of `drafts` (a
        pass a policy runs instead of the scenario's drafter), None: `draft`."""
        draft = self.draft if model is None else self.drafts[model]
        if draft is None or batch == 0 or not self.level_queries:
            return 0.0
        behind = behind and self.draft_catch_up
        key = ("d", batch, ctx, depth, behind, model)
        t = self._cache.get(key)
        if t is None:
            levels = list(self.level_queries if depth is None else self.level_queries[:depth])
            t = 0.0
            if behind and levels:
                q0 = levels.pop(0)
                t = draft.latency_s("decode", batch, q0 + 1, ctx, logits=q0)
            t += sum(draft.latency_s("decode", batch, q, ctx) for q in levels)
            self._cache[key] = t
        return t

    def pre_draft_s(self, batch: int, ctx: int) -> float:
        """Overlap: drafting round i+1 while round i verifies. The drafter first feeds its last
        draft token, whose output is its guess of the target's bonus token, then drafts a
        full round after that guess: one single-token step more than `draft_s`."""
        if self.draft is None or batch == 0 or not self.level_queries:
            return 0.0
        key = ("p", batch, ctx)
        t = self._cache.get(key)
        if t is None:
            t = self.draft_s(batch, ctx) + self.draft.latency_s("decode", batch, 1, ctx)
            self._cache[key] = t
        return t

    def transfer_s(self, batch: int) -> float:
        """Seconds a round spends moving draft tokens to the target's device and the verdict
        (and any hidden states) back: 0 on one device or between bare-named devices."""
        if self.link is None or batch == 0:
            return 0.0
        key = ("x", batch)
        t = self._cache.get(key)
        if t is None:
            t = self.link.round_s(batch, self.verify_queries - 1, self.verify_queries)
            self._cache[key] = t
        return t

    def verify_s(self, batch: int, ctx: int, depth: int | None = None) -> float:
        key = ("v", batch, ctx, depth)
        t = self._cache.get(key)
        if t is None:
            t = self.target.latency_s("decode", batch, self.queries_at(depth), ctx)
            self._cache[key] = t
        return t

    def prefill_s(self, prompt_lens: Sequence[int]) -> tuple[float, float, float]:
        """(wall, target busy, draft busy) for prefilling these prompts together."""
        n = len(prompt_lens)
        mean_q = self.prompt_len(prompt_lens)
        t_target = self.target.latency_s("prefill", n, mean_q, 0)
        t_draft = 0.0
        if self.draft_prefill and self.draft is not None:
            t_draft = self.draft.latency_s("prefill", n, mean_q, 0)
        wall = max(t_target, t_draft) if self.parallel_devices else t_target + t_draft
        return wall, t_target, t_draft

    def first_round_s(self, prompt_lens: Sequence[int], depth: int,
                      passes: Sequence[tuple] | None = None) -> tuple[float, float, float]:
        """(wall, target busy, draft busy) of a prefill that is also the first round
        (first_round = "with_prefill"): the drafter's first step reads the prompt (its last
        token is the round's root), `depth` draft levels, then ONE target pass over the prompt
        and the drafted nodes. Drafting must finish before verification starts: wall = sum.
        `passes`: (key of `drafts`, depth) of each drafting pass when a policy runs several."""
        n = len(prompt_lens)
        mean_p = self.prompt_len(prompt_lens)
        t_target = self.target.latency_s("prefill", n, mean_p - 1 + self.queries_at(depth), 0)
        ctx = self.bucket(mean_p)
        if passes is None:
            t_draft = self._first_draft_s(self.draft, n, mean_p, ctx, depth)
        else:
            t_draft = sum(self._first_draft_s(self.drafts[g], n, mean_p, ctx, d) for g, d in passes)
        return t_target + t_draft, t_target, t_draft

    def _first_draft_s(self, draft: CostModel | None, n: int, mean_p: int, ctx: int, depth: int) -> float:
        if draft is None or depth <= 0 or not self.level_queries:
            return 0.0
        levels = list(self.level_queries[:depth])
        t = 0.0
        if self.draft_reads_prompt:
            t = draft.latency_s("prefill", n, mean_p, 0)
            levels = levels[1:]
        return t + sum(draft.latency_s("decode", n, q, ctx) for q in levels)
