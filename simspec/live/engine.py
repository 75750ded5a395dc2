"""Speculative decoding, gpt-fast style: rounds of draft -> verify -> accept, the first of
which also carries the prompt (as transformers' assisted generation does: no separate prefill pass).

State between rounds, per sequence: the committed tokens (prompt + output so far) and ONE
pending token, in no cache yet: the prompt's last token before the first round, then the token
chosen last round. A round:

  1. draft    the drafter proposes a tree rooted at the pending token (catching up first on the
              context its cache lacks: the whole prompt in the first round);
  2. verify   the target runs its missing context (the prompt, in the first round) and every
              node of the tree in ONE forward (tree attention mask);
  3. accept   greedy walk or rejection sampling picks a path and the next pending token;
  4. commit   the path becomes context in every KV cache; rejected entries are dropped.

`speculative_round` is one round over a model and the batch's state; `generate` is the loop
around it: stopping rules, outputs, stats. A round drafts no deeper than the batch's largest
remaining budget minus one (the bonus token), so the last round of a sequence never drafts
tokens it could not keep.

`plain_greedy` is the reference the engine must reproduce token for token in greedy mode:
the HF model's own causal forward, one token at a time, one sequence at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from simspec.live.drafters import Draft, Drafter, Mode
from simspec.live.kv import KV
from simspec.live.sampling import greedy_accept, probs, sample_accept
from simspec.live.stats import Stats
from simspec.live.synthetic import SyntheticAcceptance, synthetic_accept
from simspec.live.tree import Tree
from simspec.models.views import new_cache, with_cache


@dataclass
class Result:
    outputs: list[list[int]]  # new tokens per sequence (EOS included when it stopped there)
    stats: Stats


@dataclass(frozen=True)
class Shape:
    """A round's tree cut to the batch's budget, with what verify and accept read of it."""

    tree: Tree
    anc: torch.Tensor  # [N, N] ancestor matrix (tree attention)
    depth: torch.Tensor  # [N] node depths (positions past the context)
    children: list[list[int]]

    @classmethod
    def cut(cls, tree: Tree, depth: int) -> "Shape":
        t = tree if depth >= tree.max_depth else Tree(tree.branching[:max(depth, 0)])
        return cls(t, t.ancestors(), torch.tensor(t.depth), [t.children(i) for i in range(t.size)])


@dataclass
class Batch:
    """The running static batch: each sequence's committed tokens and its pending token."""

    seqs: list[list[int]]
    pending: list[int]

    @classmethod
    def start(cls, prompts: list[list[int]]) -> "Batch":
        return cls([list(p[:-1]) for p in prompts], [p[-1] for p in prompts])

    def advance(self, new: list[list[int]]) -> None:
        """The pending token and all but the last new token become context; the last is pending."""
        for b, toks in enumerate(new):
            self.seqs[b] += [self.pending[b]] + toks[:-1]
            self.pending[b] = toks[-1]


def stop_set(eos: int | Collection[int] | None) -> frozenset[int]:
    if eos is None:
        return frozenset()
    return frozenset([eos]) if isinstance(eos, int) else frozenset(int(t) for t in eos)


def verify(target: nn.Module, kv: KV, seqs: list[list[int]], d: Draft, shape: Shape,
           vocab: int) -> tuple[torch.Tensor, int]:
    """The target's logits [B, n, vocab] at the first n nodes, every row in ONE forward that
    also runs the context the cache lacks (the prompts, in the first round). Nodes beyond
    every row's last drafted one are not verified (short n-gram finds)."""
    B = len(seqs)
    n = max(max(i for i, ok in enumerate(row) if ok) for row in d.drafted) + 1
    nodes = torch.tensor([row[:n] for row in d.tokens])
    ids, kinds, m = kv.with_context(seqs, nodes, torch.arange(n)[None].expand(B, n))
    keep = range(m, m + n) if m else None
    return kv.forward(target, ids, kinds, shape.anc, shape.depth, keep=keep)[..., :vocab], n


def accept(d: Draft, logits: torch.Tensor, n: int, shape: Shape, mode: Mode,
           seqs: list[list[int]] | None = None) -> tuple[list[list[int]], list[int]]:
    """Per row: the accepted node path (root first) and the target's next token. Under
    synthetic acceptance (mode.synthetic) the path's depth is forced (simspec.live.synthetic);
    `seqs` (the rows' committed tokens) then give each row's position."""
    if mode.synthetic is not None:
        counts = mode.synthetic.decide(seqs)
        return synthetic_accept(shape.children, d.drafted, logits.argmax(-1).tolist(), counts)
    if mode.greedy:
        return greedy_accept(shape.children, d.tokens, d.drafted, logits.argmax(-1).tolist())
    p = probs(logits, mode.temperature).cpu()
    q = d.q[:, :n] if d.q is not None else None
    return sample_accept([r[:n] for r in d.tokens], [r[:n] for r in d.drafted], p, q, mode.gen)


def speculative_round(target: nn.Module, kv: KV, drafter: Drafter, mode: Mode, shape: Shape,
                      batch: Batch, stats: Stats) -> list[list[int]]:
    """One round of the whole static batch: draft -> verify -> accept -> commit. Every row
    advances, finished ones too (they stay in the batch), and the round is counted in
    `stats.rounds`; returns each row's new tokens: its accepted draft tokens, then the
    target's next token."""
    first = stats.rounds == 0  # the round that carries the prompts: timed as prefill
    drafting, verifying = ("prefill", "prefill") if first else ("draft", "verify")
    with stats.phase(drafting):
        d = drafter.draft(batch.seqs, batch.pending, shape.tree, mode)
    with stats.phase(verifying):
        logits, n = verify(target, kv, batch.seqs, d, shape, mode.vocab)
    with stats.phase("other"):
        paths, nxt = accept(d, logits, n, shape, mode, batch.seqs)
        kv.commit(paths)
    with stats.phase(drafting):
        drafter.commit(paths)
    with stats.phase("other"):
        new = [[d.tokens[b][i] for i in path[1:]] + [nxt[b]] for b, path in enumerate(paths)]
        batch.advance(new)
        stats.rounds += 1
    return new


def extend(out: list[int], new: list[int], stops: frozenset[int], limit: int) -> bool:
    """Append a round's tokens to one output, cut after its first stop token and at `limit`
    tokens; True when the sequence is finished."""
    out += new
    done = False
    cut = next((i for i, t in enumerate(out) if t in stops), None)
    if cut is not None:
        del out[cut + 1:]
        done = True
    if len(out) >= limit:
        del out[limit:]
        done = True
    return done


@torch.inference_mode()
def generate(
    target: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int | Sequence[int],
    drafter: Drafter | None = None,
    tree: Tree | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    eos: int | Collection[int] | None = None,
    target_kv: KV | None = None,
    synthetic: SyntheticAcceptance | None = None,
) -> Result:
    """Generate for a static batch of prompts (token ids). Greedy when temperature == 0.

    `max_new_tokens`: one budget for all, or one per prompt.
    `eos`: the stop token(s); a sequence ends on the first one (kept in its output).
    `target_kv` lets an early-exit drafter share the target's cache (make both with the same KV).
    `synthetic`: forced acceptance (greedy only; simspec.live.synthetic): the output is then
    not the target's greedy output.
    """
    stops = stop_set(eos)
    drafter = drafter or Drafter()
    tree = tree or Tree.chain(0)
    B = len(prompts)
    budgets = [int(max_new_tokens)] * B if isinstance(max_new_tokens, int) else [int(x) for x in max_new_tokens]
    if len(budgets) != B:
        raise ValueError(f"{B} prompts but {len(budgets)} budgets")
    mode = Mode(vocab=target.config.vocab_size, temperature=temperature, gen=torch.Generator().manual_seed(seed),
                synthetic=synthetic)
    if synthetic is not None and not mode.greedy:
        raise ValueError("synthetic acceptance forces greedy verification: temperature must be 0")
    if not mode.greedy and not tree.is_chain:
        raise ValueError("sampling mode supports chains only (trees are verified greedily)")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    stats = Stats(device=str(next(target.parameters()).device))
    kv = target_kv or KV(target, B)
    shapes: dict[int, Shape] = {}
    drafter.start(B)
    if synthetic is not None:
        synthetic.start(prompts)
    batch = Batch.start(prompts)
    outs: list[list[int]] = [[] for _ in prompts]
    done = [b <= 0 for b in budgets]
    while not all(done):
        first = stats.rounds == 0
        # draft no deeper than the largest remaining budget minus the bonus token
        depth = max(m - len(o) for m, o, stop in zip(budgets, outs, done) if not stop) - 1
        if depth not in shapes:
            shapes[depth] = Shape.cut(tree, depth)
        new = speculative_round(target, kv, drafter, mode, shapes[depth], batch, stats)
        with stats.phase("other"):
            live = [b for b in range(B) if not done[b]]
            stats.ragged_rounds += len({len(new[b]) for b in live}) > 1
            for b in live:
                before = len(outs[b])
                done[b] = extend(outs[b], new[b], stops, budgets[b])
                stats.row_rounds += 1
                stats.per_round.append(len(outs[b]) - before)  # kept: a stop or the limit cuts the last round
                if first:
                    stats.prefill_tokens += len(outs[b])
    stats.new_tokens = sum(len(o) for o in outs)
    return Result(outs, stats)


@torch.inference_mode()
def plain_greedy(model: nn.Module, prompt: list[int], max_new_tokens: int,
                 eos: int | Collection[int] | None = None) -> list[int]:
    """Reference greedy decoding: HF's own causal path, one sequence, one token per forward."""
    stops = stop_set(eos)
    dev = next(model.parameters()).device
    cache = new_cache(model)
    ids = torch.tensor([prompt], device=dev)
    out: list[int] = []
    while len(out) < max_new_tokens:
        logits = model(input_ids=ids, logits_to_keep=1, **with_cache(model, cache)).logits
        tok = int(logits[0, -1, : model.config.vocab_size].argmax())
        out.append(tok)
        if tok in stops:
            break
        ids = torch.tensor([[tok]], device=dev)
    return out
