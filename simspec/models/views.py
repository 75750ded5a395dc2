"""Views of one HF causal LM: fewer layers, a trimmed head, a KV-cached tree forward.

The profiler times them, the tracer ranks tokens with them and the live engine decodes with
them, so they are shared here rather than re-derived in each place.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Iterator, Sequence

import torch
from torch import nn

from simspec.models.gemv import linear
from simspec.tree_shape import ancestors_of, depths_of


def decoder(model: nn.Module) -> nn.Module:
    """The base transformer (embeddings, layers, final norm) of an HF CausalLM."""
    return model.get_decoder()


def _softcap(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@contextlib.contextmanager
def first_layers(model: nn.Module, layers: int) -> Iterator[nn.Module]:
    """Run only the first `layers` decoder layers inside the block (early exit).

    HF decoders iterate `self.layers[:num_hidden_layers]`, so swapping in a shorter
    ModuleList is enough; the final norm and the head still run.
    """
    base = decoder(model)
    full = base.layers
    if not 0 <= layers <= len(full):
        raise ValueError(f"layers={layers} outside 0..{len(full)}")
    base.layers = nn.ModuleList(list(full)[:layers])
    try:
        yield model
    finally:
        base.layers = full


def early_exit_logits(model: nn.Module, hidden_state: torch.Tensor, layer: int) -> torch.Tensor:
    """Logits read off the raw hidden state after `layer` decoder layers: final norm + head.

    `layer` is not needed for the computation (the norm and head are shared); it is checked so
    a caller cannot silently pass HF's already-normed last hidden state.
    """
    n = len(decoder(model).layers)
    if not 0 <= layer < n:
        raise ValueError(
            f"layer={layer}: early exit needs 0 <= layer < {n}; for the last layer use the "
            "model's own logits (HF's last hidden state is already normed)"
        )
    head = model.get_output_embeddings()
    return _softcap(model, head(decoder(model).norm(hidden_state)))


class TrimmedHead(nn.Module):
    """An LM head over a subset of token ids (trimmed vocabulary), weights sliced once."""

    def __init__(self, model: nn.Module, rows: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        head = model.get_output_embeddings()
        idx = torch.as_tensor(rows, dtype=torch.long, device=head.weight.device)
        self.register_buffer("rows", idx, persistent=False)
        self.weight = nn.Parameter(head.weight.detach()[idx].contiguous(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else nn.Parameter(bias.detach()[idx].clone(), requires_grad=False)
        self._cap = getattr(model.config, "final_logit_softcapping", None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = linear(hidden, self.weight, self.bias)
        if self._cap:
            logits = torch.tanh(logits / self._cap) * self._cap
        return logits

    def to_vocab(self, index: torch.Tensor) -> torch.Tensor:
        """Map indices into this head's logits back to token ids of the full vocabulary."""
        return self.rows[index]


def trimmed_head(model: nn.Module, rows: Sequence[int] | torch.Tensor) -> TrimmedHead:
    return TrimmedHead(model, rows)


def new_cache(model: nn.Module):
    """An empty DynamicCache shaped for this model (sliding layers where the config says)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@functools.cache
def _cache_keyword(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def with_cache(module: nn.Module, cache) -> dict:
    """Keyword arguments that hand an HF model (or its decoder) a KV cache to read and extend:
    `cache=` where its forward takes that (transformers 5.x, which warns that `past_key_values`
    goes in 5.40), `past_key_values=` in the older releases pyproject still admits. Read off the
    forward's signature, not the version number, so a model class is asked what it takes."""
    return {_cache_keyword(type(module)): cache, "use_cache": True}


def tree_attention_mask(
    past: int, parents: Sequence[int], dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Additive mask [1, 1, q, past+q]: each new token sees the cache and its own ancestors
    (the pattern is `simspec.tree_shape.ancestors_of`, shared with the simulator)."""
    q = len(parents)
    allow = torch.ones(q, past + q, dtype=torch.bool)
    allow[:, past:] = torch.from_numpy(ancestors_of(parents))
    mask = torch.zeros(q, past + q, dtype=dtype)
    mask.masked_fill_(~allow, torch.finfo(dtype).min)
    return mask[None, None].to(device)


@torch.inference_mode()
def forward_tokens(
    model: nn.Module,
    input_ids: torch.Tensor,
    cache,
    tree_parents: Sequence[int] | None = None,
    logits_to_keep: int = 0,
) -> tuple[torch.Tensor, object]:
    """Forward q new tokens per sequence (input_ids [batch, q]) after the cached context.

    Returns logits [batch, q or logits_to_keep, vocab] and the updated cache. With
    `tree_parents`, token i sits at position past + depth(i) and attends to its ancestors only.
    """
    past = cache.get_seq_length()
    batch, q = input_ids.shape
    kwargs = {}
    if tree_parents is not None:
        if len(tree_parents) != q:
            raise ValueError(f"tree_parents has {len(tree_parents)} entries for {q} tokens")
        depth = torch.tensor(depths_of(tree_parents), device=input_ids.device)
        kwargs["position_ids"] = (past + depth)[None].expand(batch, q)
        dtype = next(model.parameters()).dtype
        mask = tree_attention_mask(past, tree_parents, dtype, input_ids.device)
        kwargs["attention_mask"] = mask.expand(batch, 1, q, past + q)
    out = model(input_ids=input_ids, logits_to_keep=logits_to_keep, **with_cache(model, cache), **kwargs)
    return out.logits, cache  # extended in place (the output's name for it differs by version)
