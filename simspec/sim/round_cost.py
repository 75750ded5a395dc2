"""What one serving iteration costs: prefill of new arrivals, or one speculative round.

A round is `depth` batched draft steps followed by one verification pass of the target
with (1 + draft tokens) query tokens per sequence; a tree drafts level by level and
verifies all its nodes at once. Costs are cached per (batch, context bucket), because
the same shapes recur thousands of times in a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from simspec.sim.costs import CostModel

CONTEXT_BUCKET = 32  # tokens; context-dependent costs are looked up at this granularity


@dataclass
class RoundCost:
    target: CostModel
    draft: CostModel | None            # None: no drafting cost (plain decoding)
    draft_prefill: bool                # a separate drafter model prefills the prompt too
    parallel_devices: bool             # draft and target on different devices
    level_queries: Sequence[int] = ()  # query tokens per sequence at each draft step
    verify_queries: int = 1            # query tokens per sequence in the verify pass
    _cache: dict = field(default_factory=dict, repr=False)
    context_dependent: bool = field(init=False)

    def __post_init__(self) -> None:
        # Decided once: the serving loop skips summing contexts when no cost reads them.
        self.context_dependent = self.target.depends_on_context or (
            self.draft is not None and self.draft.depends_on_context)

    def bucket(self, context: float) -> int:
        if not self.context_dependent:
            return 0
        return max(1, int(round(context / CONTEXT_BUCKET))) * CONTEXT_BUCKET

    def draft_s(self, batch: int, ctx: int) -> float:
        """Time to draft one round for `batch` sequences."""
        if self.draft is None or batch == 0 or not self.level_queries:
            return 0.0
        key = ("d", batch, ctx)
        t = self._cache.get(key)
        if t is None:
            t = sum(self.draft.latency_s("decode", batch, q, ctx) for q in self.level_queries)
            self._cache[key] = t
        return t

    def verify_s(self, batch: int, ctx: int) -> float:
        key = ("v", batch, ctx)
        t = self._cache.get(key)
        if t is None:
            t = self.target.latency_s("decode", batch, self.verify_queries, ctx)
            self._cache[key] = t
        return t

    def prefill_s(self, prompt_lens: Sequence[int]) -> tuple[float, float, float]:
        """(wall, target busy, draft busy) for prefilling these prompts together."""
        n = len(prompt_lens)
        mean_q = max(1, int(round(sum(prompt_lens) / n)))
        t_target = self.target.latency_s("prefill", n, mean_q, 0)
        t_draft = 0.0
        if self.draft_prefill and self.draft is not None:
            t_draft = self.draft.latency_s("prefill", n, mean_q, 0)
        wall = max(t_target, t_draft) if self.parallel_devices else t_target + t_draft
        return wall, t_target, t_draft
