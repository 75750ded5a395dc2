"""Model dimensions read from an HF config: what the cost model and the simulator need."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Dims:
    """Shape of a decoder-only transformer (from its HF config)."""

    arch: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int

    @classmethod
    def from_config(cls, config: Any) -> "Dims":
        cfg = getattr(config, "text_config", None) or config
        heads = int(cfg.num_attention_heads)
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(
            arch=str(getattr(cfg, "model_type", "unknown")),
            layers=int(cfg.num_hidden_layers),
            hidden=int(cfg.hidden_size),
            heads=heads,
            kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            vocab=int(cfg.vocab_size),
            intermediate=int(getattr(cfg, "intermediate_size", 0) or 0),
        )

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """KV-cache bytes one token occupies across all layers (keys and values)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def to_dict(self) -> dict:
        return asdict(self)
