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

A round drafts no deeper than the batch's largest remaining budget minus one (the bonus token),
so the last round of a sequence never drafts tokens it could not keep.

`plain_greedy` is the reference the engine must reproduce token for token in greedy mode:
the HF model's own causal forward, one token at a time, one sequence at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from simspec.live.drafters import Drafter, Mode
from simspec.live.kv import KV
from simspec.live.sampling import greedy_accept, probs, sample_accept
from simspec.live.stats import Stats
from simspec.live.tree import Tree


@dataclass
class Result:
    outputs: list[list[int]]  # new tokens per sequence (EOS included when it stopped there)
    stats: Stats


def stop_set(eos: int | Collection[int] | None) -> frozenset[int]:
    if eos is None:
        return frozenset()
    return frozenset([eos]) if isinstance(eos, int) else frozenset(int(t) for t in eos)


@torch.inference_mode()
def generate(
    target: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    drafter: Drafter | None = None,
    tree: Tree | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    eos: int | Collection[int] | None = None,
    target_kv: KV | None = None,
) -> Result:
    """Generate for a static batch of prompts (token ids). Greedy when temperature == 0.

    `eos`: the stop token(s); a sequence ends on the first one (kept in its output).
    `target_kv` lets an early-exit drafter share the target's cache (make both with the same KV).
    """
    stops = stop_set(eos)
    drafter = drafter or Drafter()
    tree = tree or Tree.chain(0)
    B = len(prompts)
    vocab = target.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    mode = Mode(vocab=vocab, temperature=temperature, gen=gen)
    if not mode.greedy and not tree.is_chain:
        raise ValueError("sampling mode supports chains only (trees are verified greedily)")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    stats = Stats(device=str(next(target.parameters()).device))
    kv = target_kv or KV(target, B)
    shapes: dict[int, tuple] = {}

    def shape(depth: int) -> tuple:
        """The round's tree cut to `depth` levels, its ancestor matrix, depths and children."""
        if depth not in shapes:
            t = tree if depth >= tree.max_depth else Tree(tree.branching[:max(depth, 0)])
            shapes[depth] = t, t.ancestors(), torch.tensor(t.depth), [t.children(i) for i in range(t.size)]
        return shapes[depth]

    drafter.start(B)
    seqs = [list(p[:-1]) for p in prompts]
    pending = [p[-1] for p in prompts]
    outs: list[list[int]] = [[] for _ in prompts]
    done = [max_new_tokens <= 0] * B

    while not all(done):
        first = stats.rounds == 0  # the round that carries the prompts: timed as prefill
        left = max(max_new_tokens - len(o) for o, stop in zip(outs, done) if not stop)
        rtree, anc, depth, children = shape(left - 1)
        with stats.phase("prefill" if first else "draft"):
            d = drafter.draft(seqs, pending, rtree, mode)
        with stats.phase("prefill" if first else "verify"):
            # nodes beyond every row's last drafted node need no verification (short n-gram finds)
            n = max(max(i for i, ok in enumerate(row) if ok) for row in d.drafted) + 1
            nodes = torch.tensor([row[:n] for row in d.tokens])
            ids, kinds, m = kv.with_context(seqs, nodes, torch.arange(n)[None].expand(B, n))
            keep = range(m, m + n) if m else None
            logits = kv.forward(target, ids, kinds, anc, depth, keep=keep)[..., :vocab]
        with stats.phase("other"):
            if mode.greedy:
                paths, nxt = greedy_accept(children, d.tokens, d.drafted, logits.argmax(-1).tolist())
            else:
                p = probs(logits, temperature).cpu()
                q = d.q[:, :n] if d.q is not None else None
                paths, nxt = sample_accept([r[:n] for r in d.tokens], [r[:n] for r in d.drafted], p, q, gen)
            kv.commit(paths)
        with stats.phase("prefill" if first else "draft"):
            drafter.commit(paths)
        with stats.phase("other"):
            stats.rounds += 1
            got = {len(path) for b, path in enumerate(paths) if not done[b]}
            stats.ragged_rounds += len(got) > 1
            for b, path in enumerate(paths):
                new = [d.tokens[b][i] for i in path[1:]] + [nxt[b]]
                seqs[b] += [pending[b]] + new[:-1]
                pending[b] = nxt[b]
                if done[b]:
                    continue
                stats.row_rounds += 1
                before = len(outs[b])
                outs[b] += new
                cut = next((i for i, t in enumerate(outs[b]) if t in stops), None)
                if cut is not None:
                    outs[b] = outs[b][: cut + 1]
                    done[b] = True
                if len(outs[b]) >= max_new_tokens:
                    outs[b] = outs[b][:max_new_tokens]
                    done[b] = True
                stats.per_round.append(len(outs[b]) - before)  # kept: a stop or the limit cuts the last round
                if first:
                    stats.prefill_tokens += len(outs[b])
    stats.new_tokens = sum(len(o) for o in outs)
    return Result(outs, stats)


@torch.inference_mode()
def plain_greedy(model: nn.Module, prompt: list[int], max_new_tokens: int,
                 eos: int | Collection[int] | None = None) -> list[int]:
    """Reference greedy decoding: HF's own causal path, one sequence, one token per forward."""
    from transformers import DynamicCache

    stops = stop_set(eos)
    dev = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prompt], device=dev)
    out: list[int] = []
    while len(out) < max_new_tokens:
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        tok = int(logits[0, -1, : model.config.vocab_size].argmax())
        out.append(tok)
        if tok in stops:
            break
        ids = torch.tensor([[tok]], device=dev)
    return out
