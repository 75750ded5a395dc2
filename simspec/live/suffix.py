"""The live suffix-decoding drafter: simspec.trace.suffix's proposer over each row's tokens.

Per request (row) a prompt tree and the shared cache's global tree of outputs, as vLLM's
SuffixDecodingProposer keeps them: a request starts when its row first drafts (static batch) or
is admitted (serving), its new tokens are added before each draft, and when it leaves (the next
static batch, or retirement) its output stays in the global tree until FIFO eviction. A run of
several static batches hands the cache on (`inherit`), so later prompts see earlier outputs.

Draft length per row: the proposer's, computed with max_spec_tokens = gamma (the deepest round
seen: the scenario's draft_len once the first round is not cut by the budget) and truncated to
the round's depth; rows that find less draft fewer tokens (`drafted` False past their draft).
"""

from __future__ import annotations

from simspec.live.drafters import Draft, Drafter, Mode, chain_draft
from simspec.live.tree import Tree
from simspec.trace.suffix import SuffixCache, SuffixParams


class SuffixDrafter(Drafter):
    """SuffixDecoding (chains only); deterministic, so q is one-hot on its proposal."""

    def __init__(self, params: SuffixParams | None = None, gamma: int | None = None) -> None:
        self.params = params or SuffixParams()
        self.cache = SuffixCache(self.params)
        self.gamma = gamma or 0
        self.name = "suffix"
        self._rows: list[int] = []   # request id of each row
        self._seen: list[int] = []   # tokens of each row already in its trees
        self._next = 0
        self._fresh = False

    def inherit(self, other: Drafter) -> None:
        if isinstance(other, SuffixDrafter):
            other._stop(list(range(len(other._rows))))
            self.cache, self._next = other.cache, other._next

    def _begin(self, prompt: list[int]) -> None:
        rid = self._next
        self._next += 1
        self.cache.start(rid, prompt)
        self._rows.append(rid)
        self._seen.append(len(prompt))

    def _stop(self, rows: list[int]) -> None:
        for b in rows:
            self.cache.stop(self._rows[b])

    def start(self, batch: int) -> None:
        self._stop(list(range(len(self._rows))))
        self._rows, self._seen = [], []
        self._fresh = True  # the rows start with their first draft, whose context is the prompt

    def admit(self, prompts: list[list[int]]) -> None:
        self._fresh = False
        for p in prompts:
            self._begin(list(p))

    def retire(self, keep: list[int]) -> None:
        self._stop([b for b in range(len(self._rows)) if b not in set(keep)])
        self._rows = [self._rows[b] for b in keep]
        self._seen = [self._seen[b] for b in keep]

    def propose(self, b: int, ctx: list[int], cap: int) -> list[int]:
        """Row b's draft for context ctx (its committed tokens + the pending one), <= cap tokens."""
        rid = self._rows[b]
        if len(ctx) > self._seen[b]:
            self.cache.add(rid, ctx[self._seen[b]:])
            self._seen[b] = len(ctx)
        return self.cache.speculate(rid, ctx, max(self.gamma, cap))[:cap]

    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        if self._fresh:
            for s, t in zip(seqs, pending):
                self._begin(s + [t])
            self._fresh = False
        gamma = tree.max_depth
        self.gamma = max(self.gamma, gamma)
        found = [self.propose(b, s + [t], gamma) for b, (s, t) in enumerate(zip(seqs, pending))]
        return chain_draft(pending, found, gamma, mode)


def make_suffix_drafter(target, spec, kv, draft, rows: list[int] | None) -> Drafter:
    """vLLM's default parameters (a scenario's [draft] suffix keys reach the simulator only)."""
    return SuffixDrafter()
