"""Grouped-query attention without repeating keys and values, on the CPU.

Why: for more than one query token with a mask (verification, trees, chunked prefill) HF's
SDPA path repeats every cached key and value across the query heads of its group before the
attention (`repeat_kv`): Qwen2.5's 12 query heads share 2 KV heads, so a verify pass at batch
16 over 4096 cached tokens copies 6x the cache per layer. SDPA's own `enable_gqa=True` reads the
cache as it is; measured on this CPU (Qwen2.5-Coder-1.5B bf16, 2 threads): batch 16, context
4096, 2 query tokens 2.18 -> 0.97 s, 32 query tokens 3.57 -> 2.37 s; batch 8, context 2048,
8 query tokens 0.74 -> 0.51 s; a single query token (HF already avoids the copy) unchanged.
HF only asks for `enable_gqa` when there is no mask, because CUDA's fused kernels refuse a
mask with it and fall back to the math kernel; CPU's kernel takes both. So only CPU tensors
take this path, and everything else (CUDA, one KV head per query head) is HF's SDPA as shipped.

`install(model)` (done by load_model and tiny_model, like the one-row linears of gemv.py)
switches a model that uses "sdpa" to this function, so profiler, tracer and live engine time
the same kernels; `stock_attention()` switches back for the duration (benchmarks run
transformers as shipped). The outputs are the same attention up to the order of bf16 partial
sums (tests/test_gqa.py bounds the difference).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from simspec.models.stock import StockSwitch

NAME = "simspec_sdpa"
# `with stock_attention():` installed models run HF's own SDPA (keys and values repeated)
stock_attention = StockSwitch()


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0,
              scaling: float | None = None, is_causal: bool | None = None,
              **kwargs) -> tuple[torch.Tensor, None]:
    """HF's attention-function signature; [batch, heads, q, dim] in, [batch, q, heads, dim] out."""
    groups = getattr(module, "num_key_value_groups", 1)
    if (stock_attention or groups <= 1 or query.device.type != "cpu" or kwargs.get("softcap") is not None
            or kwargs.get("position_bias") is not None or kwargs.get("cache") is not None
            or key.shape[-1] != value.shape[-1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # HF's rules: causal only without a mask and for more than one query; the causal kernel
    # aligns top-left, so a maskless causal pass over a longer key range keeps its first q_len
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=causal, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def install(model: nn.Module) -> bool:
    """Switch a model whose attention is "sdpa" to `attention`; True if it was switched."""
    cfg = model.config
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    if cfg._attn_implementation != NAME:
        model.set_attn_implementation(NAME)
    return True
