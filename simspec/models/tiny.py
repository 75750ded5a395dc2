"""Tiny random models of the real architectures, built in-process for tests.

Nothing is downloaded. The tokenizer is byte-level (256 byte tokens + <bos>, <eos>, <pad>), so
any text round-trips; the rest of the vocabulary is never produced by it but the model still
has those rows, like a real model's unused ids.
"""

from __future__ import annotations

import hashlib

from simspec.models.dims import Dims
from simspec.models.loaded import LoadedModel, check_device, install_kernels, torch_dtype

ARCHS = ("llama", "qwen2", "gemma3")
SPECIALS = ("<bos>", "<eos>", "<pad>")


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: ids 0..255 are bytes, then the specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = sorted(alphabet, key=lambda c: _bytes_unicode_order()[c])
    vocab = {ch: i for i, ch in enumerate(byte_to_char)}
    for j, s in enumerate(SPECIALS):
        vocab[s] = 256 + j
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _bytes_unicode_order() -> dict[str, int]:
    """GPT-2's byte -> printable character map, as char -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _config(arch: str, layers: int, vocab: int, hidden: int):
    common = dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=8192, bos_token_id=256, eos_token_id=257, pad_token_id=258,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    if arch == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(**common, head_dim=hidden // 4, sliding_window=64)
    raise ValueError(f"arch {arch!r} not one of {', '.join(ARCHS)}")


def tiny_model(
    arch: str = "llama",
    layers: int = 4,
    vocab: int = 512,
    seed: int = 0,
    hidden: int = 64,
    dtype: str = "fp32",
    device: str = "cpu",
) -> LoadedModel:
    """A small random causal LM of `arch`; same arguments -> same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    if vocab < 256 + len(SPECIALS):
        raise ValueError(f"vocab={vocab}: the byte tokenizer needs at least {256 + len(SPECIALS)}")
    config = _config(arch, layers, vocab, hidden)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.to(device=check_device(device), dtype=torch_dtype(dtype)).eval()
    install_kernels(model)
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.float().cpu().numpy().tobytes())
    return LoadedModel(
        model=model, tokenizer=byte_tokenizer(), name=f"tiny-{arch}-{layers}l",
        sha256=h.hexdigest(), dims=Dims.from_config(config), dtype=dtype, device=device,
    )
