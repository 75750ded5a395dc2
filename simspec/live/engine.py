"""Speculative decoding, gpt-fast style: prefill, then rounds of draft -> verify -> accept.

State between rounds, per sequence: the committed tokens (prompt + output so far, all in the
target's KV cache) and ONE pending token (chosen last round, in no cache yet). A round:

  1. draft    the drafter proposes a tree rooted at the pending token;
  2. verify   the target runs every node of the tree in ONE forward (tree attention mask);
  3. accept   greedy walk or rejection sampling picks a path and the next pending token;
  4. commit   the path becomes context in every KV cache; rejected entries are dropped.

`plain_greedy` is the reference the engine must reproduce token for token in greedy mode:
the HF model's own causal forward, one token at a time, one sequence at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from simspec.live.drafters import Drafter, Mode
from simspec.live.kv import CTX, KV, PAD
from simspec.live.sampling import greedy_accept, probs, sample_accept
from simspec.live.stats import Stats
from simspec.live.tree import Tree


@dataclass
class Result:
    outputs: list[list[int]]  # new tokens per sequence (EOS included when it stopped there)
    stats: Stats


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B, P] and kinds (CTX for prompt tokens, PAD on the left of shorter prompts)."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    kind = torch.full((len(prompts), width), PAD, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):] = torch.tensor(p)
        kind[b, width - len(p):] = CTX
    return ids, kind


def stop_set(eos: int | Collection[int] | None) -> frozenset[int]:
    if eos is None:
        return frozenset()
    return frozenset([eos]) if isinstance(eos, int) else frozenset(int(t) for t in eos)


def choose(logits: torch.Tensor, mode: Mode) -> list[int]:
    """Next token per row from logits [B, V]."""
    logits = logits[:, : mode.vocab]
    if mode.greedy:
        return logits.argmax(-1).tolist()
    return torch.multinomial(probs(logits, mode.temperature).cpu(), 1, generator=mode.gen)[:, 0].tolist()


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
    dev = next(target.parameters()).device
    vocab = target.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    mode = Mode(vocab=vocab, temperature=temperature, gen=gen)
    if not mode.greedy and not tree.is_chain:
        raise ValueError("sampling mode supports chains only (trees are verified greedily)")
    stats = Stats(device=str(dev))
    kv = target_kv or KV(target, B)
    anc, depth = tree.ancestors(), torch.tensor(tree.depth)
    children = [tree.children(i) for i in range(tree.size)]

    with stats.phase("prefill"):
        ids, kind = left_pad(prompts)
        logits = kv.forward(target, ids.to(dev), kind.to(dev), keep=[ids.shape[1] - 1])
        pending = choose(logits[:, 0], mode)
    with stats.phase("draft"):
        drafter.prefill(ids.to(dev), kind.to(dev))
    seqs = [list(p) for p in prompts]
    outs = [[t] for t in pending]
    done = [len(o) >= max_new_tokens or o[-1] in stops for o in outs]

    while not all(done):
        with stats.phase("draft"):
            d = drafter.draft(seqs, pending, tree, mode)
        with stats.phase("verify"):
            # nodes beyond every row's last drafted node need no verification (short n-gram finds)
            n = max(max(i for i, ok in enumerate(row) if ok) for row in d.drafted) + 1
            tokens = torch.tensor([row[:n] for row in d.tokens], device=dev)
            kinds = torch.arange(n, device=dev)[None].expand(B, n)
            logits = kv.forward(target, tokens, kinds, anc, depth)[..., :vocab]
        with stats.phase("other"):
            if mode.greedy:
                paths, nxt = greedy_accept(children, d.tokens, d.drafted, logits.argmax(-1).tolist())
            else:
                p = probs(logits, temperature).cpu()
                q = d.q[:, :n] if d.q is not None else None
                paths, nxt = sample_accept([r[:n] for r in d.tokens], [r[:n] for r in d.drafted], p, q, gen)
            kv.commit(paths)
        with stats.phase("draft"):
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
    stats.new_tokens = sum(len(o) for o in outs)
    stats.prefill_tokens = B
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
