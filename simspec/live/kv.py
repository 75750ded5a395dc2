"""A batched KV cache whose rows may hold different numbers of tokens (ragged acceptance).

Choice: one HF DynamicCache for the whole batch, with bookkeeping per slot instead of one
cache per sequence, so that a batch of B sequences still verifies in ONE forward (the point of
batching on a memory-bound device). Every slot has

    ctx   committed context of its row: visible to every later token of that row;
    node  the tree node it holds in the current round (uncommitted draft), else -1;
    pos   its position (RoPE is applied to keys when written, so slot order is irrelevant).

A forward appends q slots to every row. Tokens are of three kinds: a tree node of this round
(id >= 0, attends to the row's context and its own ancestors, at position length + depth),
a context token (CTX, committed at once: catch-up of a drafter's cache and prompts), or a
placeholder (PAD, for rows that have fewer tokens to feed; it sees only itself and nobody sees
it). The additive 4D mask is built from these; when a forward is a plain causal continuation
of a cache whose every slot is visible, no mask is passed and HF takes its own causal path.

`commit(paths)` turns each row's accepted tree nodes into context and then compacts: rejected
draft slots and placeholders become holes, and the cache narrows to its longest row by moving
the few context slots that sit in the columns to drop into holes of their own row (slot order
is free) and slicing. In the common batch-1 chain case that is a crop, which costs nothing, as
with gpt-fast's position-indexed cache; it never copies the whole cache.

Continuous batching (simspec.live.serving) changes the rows between rounds: `extend(other)`
appends the rows of a KV that prefilled new sequences, `keep_rows(rows)` drops finished ones.
Both keep the object (an early-exit drafter holds it), and padding slots are holes like PAD.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from simspec.models.views import with_cache

CTX = -1
PAD = -2


def lm_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's own LM head (+ final-logit softcapping where the config has it)."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class KV:
    def __init__(self, model: nn.Module, batch: int) -> None:
        from transformers import DynamicCache

        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        cfg = model.config
        types = getattr(cfg, "layer_types", None) or []
        self.window = getattr(cfg, "sliding_window", None) if "sliding_attention" in types else None
        # No config: every layer a plain DynamicLayer that keeps all entries (sliding windows
        # are applied by our mask instead, so entries can be dropped out of order).
        self.cache = DynamicCache()
        self.batch = batch
        self.ctx = torch.zeros(batch, 0, dtype=torch.bool, device=self.device)
        self.node = torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        self.length = torch.zeros(batch, dtype=torch.long, device=self.device)  # committed tokens

    @property
    def slots(self) -> int:
        return self.ctx.shape[1]

    def with_context(self, seqs: Sequence[Sequence[int]], ids: torch.Tensor, kind: torch.Tensor,
                     top: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Prefix ids/kinds [B, n] with each row's context tokens this cache has not seen yet
        (seqs[b][length:], left-padded with PAD): how a drafter catches up on the tokens the
        target accepted, and how the first round carries the whole prompt. Returns the ids
        (clamped to `top`, a smaller embedding's last id), kinds, and the prefix width m."""
        B, n = ids.shape
        missing = [s[int(k):] for s, k in zip(seqs, self.length.tolist())]
        m = max(len(x) for x in missing)
        out = torch.zeros(B, m + n, dtype=torch.long)
        kinds = torch.full((B, m + n), PAD, dtype=torch.long)
        for b, x in enumerate(missing):
            if x:
                out[b, m - len(x):m] = torch.tensor(x)
                kinds[b, m - len(x):m] = CTX
        out[:, m:], kinds[:, m:] = ids, kind
        if top is not None:
            out = out.clamp(max=top)
        return out.to(self.device), kinds.to(self.device), m

    # -- forward ------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        kind: torch.Tensor,
        anc: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        keep: Sequence[int] | None = None,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Feed ids [B, q] of kinds [B, q]; return logits [B, len(keep) or q, vocab].

        anc [N, N] and depth [N] describe the round's tree (needed when any kind >= 0).
        In each row, context tokens must come before node tokens.
        """
        B, q = ids.shape
        dev = self.device
        is_ctx, is_node = kind == CTX, kind >= 0
        nodes = kind.clamp(min=0)
        n_ctx = is_ctx.sum(1)
        after = self.length + n_ctx  # row length once its context tokens are in
        pos = torch.where(is_ctx, self.length[:, None] + is_ctx.cumsum(1) - 1, after[:, None])
        if is_node.any():
            pos = torch.where(is_node, after[:, None] + depth.to(dev)[nodes], pos)

        # visibility of the old slots [B, q, S] and of the new ones [B, q, q]
        old = self.ctx[:, None, :] & ~(kind == PAD)[:, :, None]
        old_node = self.node >= 0
        if old_node.any():
            hit = anc.to(dev)[nodes[:, :, None], self.node.clamp(min=0)[:, None, :]]
            old |= is_node[:, :, None] & old_node[:, None, :] & hit
        tril = torch.ones(q, q, dtype=torch.bool, device=dev).tril()
        new = is_ctx[:, :, None] & is_ctx[:, None, :] & tril  # context sees earlier context
        if is_node.any():
            a = anc.to(dev)[nodes[:, :, None], nodes[:, None, :]]
            new |= is_node[:, :, None] & (is_ctx[:, None, :] | (is_node[:, None, :] & a))
        new |= torch.eye(q, dtype=torch.bool, device=dev)
        allow = torch.cat([old, new], dim=2)

        # a causal continuation of a hole-free cache (batch-1 chains): let HF build its own mask
        plain = (
            bool(old.all()) and bool((new == tril).all())
            and bool((pos == self.slots + torch.arange(q, device=dev)).all())
        )
        kwargs: dict = {}
        if not plain:
            kwargs["position_ids"] = pos
            kwargs["attention_mask"] = self._additive(allow)
            if self.window:
                key_pos = torch.cat([self.pos[:, None, :].expand(B, q, self.slots), pos[:, None, :].expand(B, q, q)], 2)
                near = (pos[:, :, None] - key_pos) < self.window
                kwargs["attention_mask"] = {
                    "full_attention": kwargs["attention_mask"],
                    "sliding_attention": self._additive(allow & near),
                }
        base = model.get_decoder()
        out = base(input_ids=ids, **with_cache(base, self.cache), **kwargs)
        hidden = out.last_hidden_state
        if keep is not None:
            hidden = hidden[:, list(keep)]
        logits = head(hidden) if head is not None else lm_logits(model, hidden)

        self.ctx = torch.cat([self.ctx, is_ctx], 1)
        self.node = torch.cat([self.node, torch.where(is_node, kind, -1)], 1)
        self.pos = torch.cat([self.pos, pos], 1)
        self.length = after
        return logits

    def _additive(self, allow: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allow.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allow, torch.finfo(self.dtype).min)
        return mask[:, None]

    # -- commit / rollback --------------------------------------------------------------------
    @torch.inference_mode()
    def commit(self, paths: Sequence[Sequence[int]]) -> None:
        """Make each row's accepted nodes (those present here) context; drop everything else."""
        width = max([int(self.node.max()) if self.slots else 0] + [max(p) for p in paths]) + 1
        mark = torch.zeros(self.batch, width, dtype=torch.bool, device=self.device)
        for b, path in enumerate(paths):
            mark[b, list(path)] = True
        held = (self.node >= 0) & mark.gather(1, self.node.clamp(min=0))
        self.ctx |= held
        self.length = self.length + held.sum(1)
        self.node = torch.full_like(self.node, -1)
        self._compact()

    def truncate(self, slots: int) -> None:
        """Forget every slot from `slots` on (early-exit drafting rolls back its appends)."""
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.shape[-2] > slots:
                layer.keys = layer.keys[..., :slots, :]
                layer.values = layer.values[..., :slots, :]
        self.length = self.length - (self.ctx[:, slots:]).sum(1)
        self.ctx, self.node, self.pos = self.ctx[:, :slots], self.node[:, :slots], self.pos[:, :slots]

    # -- rows joining and leaving (continuous batching) ----------------------------------------
    @torch.inference_mode()
    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only these rows, in this order; slots now a hole in every row are dropped.
        Between rounds only (no uncommitted draft slots)."""
        rows = list(rows)
        if rows == list(range(self.batch)):
            return
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.dim() == 4:
                layer.keys, layer.values = layer.keys[idx], layer.values[idx]
        self.ctx, self.node, self.pos = self.ctx[idx], self.node[idx], self.pos[idx]
        self.length = self.length[idx]
        self.batch = len(rows)
        self._compact()

    def extend(self, other: "KV") -> None:
        """Append the rows of `other` (new sequences prefilled in a KV of their own, same
        model) after this batch's rows. The narrower of the two is left-padded with holes:
        slots no query sees (like PAD), so every row keeps exactly its own context."""
        if other.batch == 0:
            return
        if self.batch == 0:  # nothing to pad against: take the other's cache as it is
            self.cache, self.ctx, self.node, self.pos = other.cache, other.ctx, other.node, other.pos
            self.length, self.batch = other.length, other.batch
            return
        mine, theirs = self.cache.layers, other.cache.layers
        if len(mine) != len(theirs):
            raise ValueError(f"cannot join KV caches of {len(mine)} and {len(theirs)} layers")
        w = max(self.slots, other.slots)
        a, b = w - self.slots, w - other.slots
        for x, y in zip(mine, theirs):
            x.keys = torch.cat([_left_keys(x.keys, a), _left_keys(y.keys, b)], 0)
            x.values = torch.cat([_left_keys(x.values, a), _left_keys(y.values, b)], 0)
        self.ctx = torch.cat([_left(self.ctx, a, False), _left(other.ctx, b, False)])
        self.node = torch.cat([_left(self.node, a, -1), _left(other.node, b, -1)])
        self.pos = torch.cat([_left(self.pos, a, 0), _left(other.pos, b, 0)])
        self.length = torch.cat([self.length, other.length])
        self.batch += other.batch

    @torch.inference_mode()
    def _compact(self) -> None:
        """Drop slots so that the widest row has no hole, copying as little as possible.

        Slot order within a row does not matter (positions are kept per slot, the mask follows
        the slots), so instead of gathering every row to the right (a copy of the whole cache:
        a third of a batch-16 round), the few context slots that sit in the columns to be
        dropped move into holes of their own row further right, and the columns are sliced
        off. After a round that is at most the round's rejected drafts per row."""
        count = self.ctx.sum(1)
        width = int(count.max().item()) if self.batch else 0
        if bool(self.ctx[:, :width].all()):  # every row a hole-free prefix: a crop
            self.truncate(width)
            self.node = torch.full_like(self.node, -1)
            return
        used = self.ctx.any(0).nonzero()
        self.truncate(int(used[-1]) + 1)  # columns after the last context slot of any row
        k = self.slots - width  # columns to drop on the left
        head, tail = self.ctx[:, :k], ~self.ctx[:, k:]
        rows, src, dst = [], [], []
        for b in head.any(1).nonzero().flatten().tolist():
            s = head[b].nonzero().flatten()
            rows.append(torch.full_like(s, b))
            src.append(s)
            dst.append(tail[b].nonzero().flatten()[:len(s)] + k)
        if rows:
            bi, si, di = torch.cat(rows), torch.cat(src), torch.cat(dst)
            for layer in self.cache.layers:
                if getattr(layer, "is_initialized", False) and layer.keys is not None:
                    layer.keys[bi, :, di] = layer.keys[bi, :, si]
                    layer.values[bi, :, di] = layer.values[bi, :, si]
            self.ctx[bi, di] = True
            self.pos[bi, di] = self.pos[bi, si]
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False) and layer.keys is not None:
                layer.keys, layer.values = layer.keys[..., k:, :], layer.values[..., k:, :]
        self.ctx, self.pos = self.ctx[:, k:], self.pos[:, k:]
        self.node = torch.full_like(self.pos, -1)


def _left(x: torch.Tensor, n: int, value) -> torch.Tensor:
    """x [B, S] with n slots of `value` prepended."""
    if n == 0:
        return x
    return torch.cat([torch.full((x.shape[0], n), value, dtype=x.dtype, device=x.device), x], 1)


def _left_keys(x: torch.Tensor, n: int) -> torch.Tensor:
    """Cached keys or values [B, H, S, D] with n zero slots prepended."""
    if n == 0:
        return x
    return torch.cat([x.new_zeros(x.shape[0], x.shape[1], n, x.shape[3]), x], 2)
