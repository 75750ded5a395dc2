"""Model dimensions for the roofline, from whatever a user has: a published name, a profile
sidecar, an HF config.json (or its folder) or a GGUF header. No weights are read.

Assumes a decoder-only transformer with a gated MLP (three hidden x intermediate matrices:
Llama, Qwen2, Gemma, Mistral), the layout of every model simspec profiles.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

KNOWN_FILE = Path(__file__).with_name("models.toml")
# Bytes of one value (a weight, a KV entry, a hidden-state element) in each dtype simspec names.
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}


@dataclass(frozen=True)
class ArchDims:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = True  # LM head shares the embedding matrix
    name: str = ""

    @property
    def layer_params(self) -> int:
        """Weights of one decoder layer: q, k, v, o projections and the gated MLP."""
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return attn + 3 * self.hidden * self.intermediate

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden

    def weights_bytes(self, dtype_bytes: float) -> float:
        emb = self.vocab * self.hidden
        return (self.layers * self.layer_params + emb + (0 if self.tied else self.head_params)) * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def to_dict(self) -> dict:
        return asdict(self)


FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab")


@lru_cache(maxsize=1)
def known() -> dict[str, dict[str, Any]]:
    return tomllib.loads(KNOWN_FILE.read_text(encoding="utf-8"))


def from_mapping(d: dict[str, Any], name: str = "") -> ArchDims:
    missing = [k for k in FIELDS if d.get(k) in (None, 0)]
    if missing:
        raise ValueError(f"model dims lack {', '.join(missing)}")
    return ArchDims(**{k: int(d[k]) for k in FIELDS}, tied=bool(d.get("tied", True)), name=name)


def _from_hf_config(cfg: dict[str, Any], name: str) -> ArchDims:
    cfg = cfg.get("text_config") or cfg
    heads = int(cfg["num_attention_heads"])
    return ArchDims(
        layers=int(cfg["num_hidden_layers"]), hidden=int(cfg["hidden_size"]), heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
        intermediate=int(cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]),
        tied=bool(cfg.get("tie_word_embeddings", False)), name=name)


def _from_gguf(path: Path) -> ArchDims:
    from gguf import GGUFReader  # the `models` extra; only this path needs it

    r = GGUFReader(str(path))

    def val(key: str):
        f = r.fields.get(key)
        if f is None:
            return None
        part = f.parts[f.data[0]]
        return part.tolist()[0] if len(part) == 1 else bytes(part).decode()

    arch = val("general.architecture")
    heads = int(val(f"{arch}.attention.head_count"))
    hidden = int(val(f"{arch}.embedding_length"))
    tokens = r.fields.get("tokenizer.ggml.tokens")
    head_dim = val(f"{arch}.attention.key_length") or hidden // heads
    names = {t.name for t in r.tensors}
    return ArchDims(
        layers=int(val(f"{arch}.block_count")), hidden=hidden, heads=heads,
        kv_heads=int(val(f"{arch}.attention.head_count_kv") or heads), head_dim=int(head_dim),
        intermediate=int(val(f"{arch}.feed_forward_length")),
        vocab=int(val(f"{arch}.vocab_size") or (len(tokens.data) if tokens else 0)),
        tied="output.weight" not in names, name=path.stem)


def resolve(ref: str, base: Path | None = None) -> ArchDims:
    """Dims for `ref`: a name in models.toml, a profile (.parquet or its .json sidecar), an HF
    config.json or model folder, or a .gguf file. ValueError saying what was tried."""
    table = known()
    if ref in table:
        return from_mapping(table[ref], ref)
    p = Path(ref)
    if base is not None and not p.is_absolute() and (base / p).exists():
        p = base / p
    if p.suffix == ".parquet":
        p = p.with_suffix(".json")
    if p.is_dir():
        p = p / "config.json"
    if p.is_file():
        if p.suffix == ".gguf":
            return _from_gguf(p)
        data = json.loads(p.read_text(encoding="utf-8"))
        if "dims" in data:  # a profile sidecar
            d = data["dims"]
            return from_mapping(d | {"tied": d.get("tied", _tied_from_sidecar(data))}, str(data.get("model", p.stem)))
        return _from_hf_config(data, p.parent.name)
    raise ValueError(f"{ref!r} is not a known model ({', '.join(table)}), a profile, an HF config "
                     "or a GGUF file")


def _tied_from_sidecar(meta: dict[str, Any]) -> bool:
    """A sidecar has no tie flag: infer it from the weight bytes it records."""
    d = meta["dims"]
    w = meta.get("weights_bytes")
    if not w:
        return True
    tied = from_mapping(d | {"tied": True})
    dtype = meta.get("dtype")
    dtype_bytes = DTYPE_BYTES.get(dtype, 2) if isinstance(dtype, str) else 2
    return abs(tied.weights_bytes(dtype_bytes) - w) <= abs(tied.weights_bytes(dtype_bytes) + tied.head_params * dtype_bytes - w)
