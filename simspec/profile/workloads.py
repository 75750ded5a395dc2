"""The forwards a profile times: decode/verify over a filled KV cache, prefill, head alone.

The KV cache is filled with random keys and values instead of a real prefill: attention
costs the same whatever the values, and a 16 x 4096-token prefill would dwarf the capture.
After each timed run the cache is restored to its filled state, so every run sees `context`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from simspec.models.views import TrimmedHead, new_cache, with_cache


class FilledCache:
    """A DynamicCache holding `context` random tokens per sequence, restorable after a run."""

    def __init__(self, model: nn.Module, batch: int, context: int, seed: int = 0) -> None:
        cfg = model.config
        p = next(model.parameters())
        heads = cfg.num_attention_heads
        kv = getattr(cfg, "num_key_value_heads", None) or heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # One random block shared by all layers: the cache copies it on insertion anyway.
        k = torch.randn(batch, kv, context, hd, generator=gen).to(p.device, p.dtype)
        v = torch.randn(batch, kv, context, hd, generator=gen).to(p.device, p.dtype)
        self.cache = new_cache(model)
        for i in range(cfg.num_hidden_layers):
            self.cache.update(k, v, i)
        self._saved = [
            (l.keys, l.values, getattr(l, "cumulative_length", None)) for l in self.cache.layers
        ]

    def reset(self) -> None:
        for layer, (k, v, n) in zip(self.cache.layers, self._saved):
            layer.keys, layer.values = k, v
            if n is not None:
                layer.cumulative_length = n


def settle(model: nn.Module, cache: FilledCache, batch: int, q_max: int, runs: int = 2) -> None:
    """Untimed runs at the largest q on a new cache, so the allocator holds every size needed.

    On this VM the first forwards after a new cache shape fault their memory in page by page
    (hundreds of thousands of minor faults, up to 2-3x slower); a serving process that has
    been decoding for a while is past that. Capture and check both settle before timing.
    """
    run = decode_fn(model, cache, batch, q_max)
    for _ in range(runs):
        cache.reset()
        run()


def _ids(model: nn.Module, batch: int, q: int, seed: int) -> torch.Tensor:
    p = next(model.parameters())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, q), generator=gen).to(p.device)


def decode_fn(model: nn.Module, cache: FilledCache, batch: int, q: int, seed: int = 0
              ) -> Callable[[], object]:
    """q query tokens per sequence after the cache (q=1 plain decode, q>1 verification)."""
    ids = _ids(model, batch, q, seed)

    @torch.inference_mode()
    def run():
        return model(input_ids=ids, **with_cache(model, cache.cache)).logits

    return run


def prefill_fn(model: nn.Module, batch: int, length: int, seed: int = 0) -> Callable[[], object]:
    """A prompt of `length` tokens per sequence into an empty cache; logits of the last only."""
    ids = _ids(model, batch, length, seed)

    @torch.inference_mode()
    def run():
        cache = new_cache(model)
        return model(input_ids=ids, logits_to_keep=1, **with_cache(model, cache)).logits

    return run


def last_level_cache_bytes() -> int:
    """Size of the CPU's last-level cache (Linux sysfs), 64 MiB if unknown."""
    from pathlib import Path

    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            txt = (d / "size").read_text().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(txt[-1], 1)
            best = max(best, int(txt.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            continue
    return best or (64 << 20)


class CacheFlusher:
    """Evicts the caches between runs of the head alone, as a forward's layers would.

    Timed alone in a loop, an LM head stays in a large last-level cache (480 MiB here) and
    looks up to twice as fast as inside a forward, where the layers' weights stream through
    in between. Writing a buffer of twice the cache size before each run removes that bias.
    """

    def __init__(self, device: str) -> None:
        size = 256 << 20 if device.startswith("cuda") else min(2 * last_level_cache_bytes(), 2 << 30)
        self.buf = torch.zeros(size // 4, dtype=torch.float32, device=device)

    def __call__(self) -> None:
        self.buf.add_(1.0)


def head_fn(model: nn.Module, tokens: int, rows: int, seed: int = 0) -> Callable[[], object]:
    """The LM head alone over `tokens` hidden states, restricted to its first `rows` rows."""
    p = next(model.parameters())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(tokens, model.config.hidden_size, generator=gen).to(p.device, p.dtype)
    full = model.get_output_embeddings()
    head = full if rows >= full.weight.shape[0] else TrimmedHead(model, torch.arange(rows))

    @torch.inference_mode()
    def run():
        return head(hidden)

    return run
