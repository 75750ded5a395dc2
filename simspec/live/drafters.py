"""Drafters: who proposes the tokens of a round's tree.

    ModelDrafter(draft_model)            a separate (smaller) model with its own KV cache;
    ModelDrafter(target, layers=l, ...)  early-exit self-speculation: the first l layers of the
                                         target + its final norm and head, drafting straight
                                         into the TARGET's KV cache (shared=True);
    ... head=TrimmedHead(model, rows)    trimmed-vocabulary drafting (head restricted to K rows);
    NgramDrafter(n)                      prompt lookup: copy what followed the last earlier
                                         occurrence of the trailing n-gram (n, n-1, ..., 1).

Early exit and the target's KV cache: entries of layers < l for committed tokens are exactly
what the first l layers compute, so the drafter reads them from the target's cache and keeps
no cache of its own (no prefill, no catch-up). Its own appends (root and draft tokens, layers
< l only) are cut off again after drafting; verification recomputes those tokens through all
layers (LayerSkip's reuse of the draft's hidden states in verification is not done).

A drafter returns a `Draft`: tokens [B][N] of the tree's nodes (node 0 = the pending token),
which nodes were really drafted (n-gram lookup may find fewer than N-1), and in sampling mode
q [B, N, V]: the distribution node k's children were drawn from.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from simspec.live.kv import KV, lm_logits
from simspec.live.sampling import probs
from simspec.live.tree import Tree
from simspec.models.views import TrimmedHead, first_layers
from simspec.trace.ngram import propose


@dataclass
class Mode:
    """How tokens are chosen: greedy (temperature 0) or sampled with `gen`."""

    vocab: int  # the target's vocabulary size: every distribution is over these ids
    temperature: float = 0.0
    gen: torch.Generator | None = None
    synthetic: Any = None  # simspec.live.synthetic.SyntheticAcceptance: forced acceptance (greedy)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Draft:
    tokens: list[list[int]]
    drafted: list[list[bool]]
    q: torch.Tensor | None = None


class Drafter:
    name = "none"

    def start(self, batch: int) -> None:
        """A new static batch of `batch` sequences begins (the prompts come with the first draft)."""

    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        """No drafter: the round is the pending token alone (plain decoding)."""
        return Draft([[t] for t in pending], [[True] for _ in pending])

    def commit(self, paths: list[list[int]]) -> None:
        """The target accepted these node paths (root first)."""

    # continuous batching (simspec.live.serving): rows join and leave between rounds
    def admit(self, prompts: list[list[int]]) -> None:
        """Sequences with these prompts join the batch (rows appended at the end), in the
        iteration that prefills them in the target."""

    def retire(self, keep: list[int]) -> None:
        """Only these rows of the batch remain, in this order (finished sequences leave)."""

    def inherit(self, other: "Drafter") -> None:
        """Take over what outlives a static batch from the previous batch's drafter of the same
        run (a suffix drafter's global tree of earlier outputs); nothing for the others."""


class ModelDrafter(Drafter):
    def __init__(
        self, model: nn.Module, layers: int | None = None, head: TrimmedHead | None = None,
        shared: KV | None = None, name: str = "model",
    ) -> None:
        self.model, self.layers, self.head, self.shared, self.name = model, layers, head, shared, name
        self.kv: KV | None = shared

    def start(self, batch: int) -> None:
        # No forward here: the first draft step catches up on the whole prompt and drafts
        # from its last token in one pass.
        if self.shared is None:
            self.kv = KV(self.model, batch)

    def _logits(self, hidden: torch.Tensor, vocab: int) -> torch.Tensor:
        """Logits over the target's vocabulary ids (-inf where this head has no row)."""
        if self.head is not None:
            full = hidden.new_full((*hidden.shape[:-1], vocab), float("-inf"))
            full[..., self.head.rows] = self.head(hidden).to(full.dtype)
            return full
        logits = lm_logits(self.model, hidden)[..., :vocab]
        if logits.shape[-1] < vocab:
            pad = logits.new_full((*logits.shape[:-1], vocab - logits.shape[-1]), float("-inf"))
            logits = torch.cat([logits, pad], -1)
        return logits

    @torch.inference_mode()
    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        kv, B, N = self.kv, len(seqs), tree.size
        dev = kv.device
        tokens = torch.zeros(B, N, dtype=torch.long)
        tokens[:, 0] = torch.tensor(pending)
        q = torch.zeros(B, N, mode.vocab) if not mode.greedy else None
        if tree.max_depth == 0:  # a round cut to no draft (budget): nothing to run
            return Draft(tokens.tolist(), [[True] for _ in range(B)], q)
        anc, depth = tree.ancestors(), torch.tensor(tree.depth)
        head = lambda h: self._logits(h, mode.vocab)  # noqa: E731

        def grow(level: list[int], logits: torch.Tensor) -> None:
            for j, node in enumerate(level):
                kids = tree.children(node)
                if not kids:
                    continue
                if mode.greedy:
                    tokens[:, kids] = logits[:, j].topk(len(kids), dim=-1).indices.cpu()
                else:  # chains only: one child drawn from q
                    p = probs(logits[:, j], mode.temperature).cpu()
                    tokens[:, kids[0]] = torch.multinomial(p, 1, generator=mode.gen)[:, 0]
                    q[:, node] = p

        slots = kv.slots
        # depth 0: this cache's missing context tokens (catch-up; the whole prompt in the
        # first round), then the root
        top = self.model.config.vocab_size - 1  # a drafter with a smaller embedding: ids past it are no text
        ids, kind, m = kv.with_context(seqs, tokens[:, :1], torch.zeros(B, 1, dtype=torch.long), top)
        scope = first_layers(self.model, self.layers) if self.layers else contextlib.nullcontext()
        with scope:
            logits = kv.forward(self.model, ids, kind, anc, depth, keep=[m], head=head)
            grow([0], logits)
            for d in range(1, tree.max_depth):
                level = tree.level(d)
                ids = tokens[:, level].clamp(max=top).to(dev)
                kind = torch.tensor(level, device=dev)[None].expand(B, -1)
                grow(level, kv.forward(self.model, ids, kind, anc, depth, head=head))
        if self.shared is not None:
            kv.truncate(slots)
        return Draft(tokens.tolist(), [[True] * N for _ in range(B)], q)

    def commit(self, paths: list[list[int]]) -> None:
        if self.shared is None:
            self.kv.commit(paths)

    @torch.inference_mode()
    def admit(self, prompts: list[list[int]]) -> None:
        """A drafter with its own cache prefills the new prompts (as the simulator's draft
        prefill); an early-exit drafter has nothing to do: the target's prefill fills the
        shared cache, which the serving loop extends."""
        if self.shared is not None:
            return
        fresh = KV(self.model, len(prompts))
        none = torch.zeros(len(prompts), 0, dtype=torch.long)
        ids, kind, m = fresh.with_context(prompts, none, none, self.model.config.vocab_size - 1)
        fresh.forward(self.model, ids, kind, keep=[m - 1])  # logits unused: drafting starts at the pending token
        self.kv.extend(fresh)

    def retire(self, keep: list[int]) -> None:
        if self.shared is None:
            self.kv.keep_rows(keep)


class NgramDrafter(Drafter):
    """Prompt lookup (chains only): `simspec.trace.ngram.propose`, the rule trace replay
    indexes, on each sequence's committed tokens plus its pending one."""

    def __init__(self, n: int) -> None:
        self.n, self.name = n, f"ngram:{n}"

    def lookup(self, seq: list[int], gamma: int) -> list[int]:
        return propose(seq, self.n, gamma)

    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        gamma = tree.max_depth
        return chain_draft(pending, [self.lookup(s + [t], gamma) for s, t in zip(seqs, pending)], gamma, mode)


def chain_draft(pending: list[int], found: list[list[int]], gamma: int, mode: Mode) -> Draft:
    """A model-free drafter's round: each row's pending token, then the up to `gamma` tokens it
    found (nodes past them padded and not drafted); sampling: q one-hot on the proposal (the
    drafter is deterministic)."""
    tokens = [[t] + f + [t] * (gamma - len(f)) for t, f in zip(pending, found)]
    drafted = [[True] * (1 + len(f)) + [False] * (gamma - len(f)) for f in found]
    q = None
    if not mode.greedy:
        q = torch.zeros(len(pending), gamma + 1, mode.vocab)
        for b, row in enumerate(tokens):
            for k in range(gamma):
                q[b, k, row[k + 1]] = 1.0
    return Draft(tokens, drafted, q)


# -- one factory per drafter kind (simspec.drafters names them): make(target, spec, kv, draft, rows)

def _head(model: nn.Module, rows: list[int] | None) -> TrimmedHead | None:
    return TrimmedHead(model, rows) if rows is not None else None


def make_model_drafter(target, spec, kv: KV, draft, rows: list[int] | None) -> Drafter:
    """A separate drafter model with its own KV cache."""
    return ModelDrafter(draft.model, head=_head(draft.model, rows), name=str(spec))


def make_early_exit_drafter(target, spec, kv: KV, draft, rows: list[int] | None) -> Drafter:
    """The target's first `spec.layers` layers, drafting into the target's own KV cache."""
    return ModelDrafter(target.model, layers=spec.layers, head=_head(target.model, rows), shared=kv,
                        name=str(spec))


def make_ngram_drafter(target, spec, kv: KV, draft, rows: list[int] | None) -> Drafter:
    return NgramDrafter(spec.n)


def top_tokens(token_lists: Sequence[Sequence[int]], k: int, vocab: int) -> list[int]:
    """The K rows of a trimmed head: the most frequent ids in a calibration set, then the
    lowest ids not yet chosen (BPE ids are roughly ordered by merge frequency)."""
    if not 1 <= k <= vocab:
        raise ValueError(f"vocab K={k} outside 1..{vocab}")
    counts = Counter(t for toks in token_lists for t in toks if 0 <= t < vocab)
    rows = [t for t, _ in counts.most_common(k)]
    chosen = set(rows)
    rows += [t for t in range(vocab) if t not in chosen][: k - len(rows)]
    return sorted(rows)
