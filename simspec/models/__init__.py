"""Real causal LMs and the views of them that profiler, tracer and live engine share.

This is the torch side of simspec: nothing under `sim/`, `study/` or `profile/costmodel.py`
imports it. Stable API (import from `simspec.models`):

Loading
    load_model(spec, dtype="fp32", device="cpu") -> LoadedModel
        spec is one of
          - a known short name: "smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b",
            "qwen2.5-coder-1.5b" (GGUF from a PyPI weight package, sha256-pinned; see
            `simspec models list` / `simspec models prepare NAME`);
          - a path to a GGUF file (dequantised once by transformers and cached as safetensors
            in ~/.cache/simspec/models/<sha256[:16]>/, keyed by the file's sha256);
          - a local HF model directory (has config.json);
          - an HF hub id (only works offline from the local HF cache on this machine);
          - "tiny:<llama|qwen2|gemma3>[:<layers>]": tiny_model(arch, layers) (tests);
          - "random:<models.toml name | HF config.json>": seeded random weights of those dims,
            nothing downloaded (simspec.models.random_weights; refused if they would not fit).
        dtype "fp32" | "bf16"; device "cpu" | "cuda" | "cuda:N".
        Bad input (corrupt or non-model file, sha256 mismatch, missing package) raises
        simspec.errors.InputError (one line, exit 2 in the CLI).
    LoadedModel: dataclass with .model (HF *ForCausalLM in eval mode, on device, dtype),
        .tokenizer (HF tokenizer, or a byte-level tokenizer for tiny models), .name,
        .sha256 (of the GGUF / weights), .dims (Dims), .dtype ("fp32"/"bf16"), .device.
    Dims: layers, hidden, heads, kv_heads, head_dim, vocab, intermediate, arch;
        .kv_bytes_per_token(dtype_bytes) = 2 * layers * kv_heads * head_dim * dtype_bytes.
    tiny_model(arch="llama"|"qwen2"|"gemma3", layers=4, vocab=512, seed=0) -> LoadedModel
        a tiny random model of that architecture built in-process (nothing downloaded), with a
        byte-level tokenizer (256 byte tokens + <bos>/<eos>/<pad>; vocab >= 259) so that
        text round-trips. Same seed -> same weights.

Views (all take the HF CausalLM, i.e. LoadedModel.model)
    first_layers(model, l): context manager; inside it the model runs only its first l
        decoder layers (then final norm and head as usual). Used for early-exit drafting
        and for timing.
    early_exit_logits(model, hidden_state, layer) -> logits: final norm + (softcapped) head
        over the raw hidden state after `layer` decoder layers. With HF's
        output_hidden_states, hidden_states[l] for l < num_layers is raw; the last entry is
        already normed by HF, so for layer == num_layers use the model's own logits.
    trimmed_head(model, rows) -> TrimmedHead: an LM head restricted to token ids `rows`
        (weights sliced once). Its logits index i is token rows[i]; .to_vocab(idx) maps back.
    forward_tokens(model, input_ids, cache, tree_parents=None, logits_to_keep=0)
        -> (logits, cache): a KV-cached forward of q tokens per sequence
        (input_ids [batch, q]) after the cache's current length. tree_parents (list of q ints,
        -1 = child of the last cached token, else index of the parent among the q tokens;
        parents come before children) gives tree attention: each token attends to the cache
        and to its ancestors only, at position past + depth. Without it, ordinary causal.
    new_cache(model) -> an empty HF DynamicCache for the model.
    with_cache(module, cache) -> {"cache" or "past_key_values": cache, "use_cache": True}:
        the keyword this transformers' forward takes a cache by (model(..., **with_cache(...))).
    tree_attention_mask(past, parents, dtype, device) -> the additive 4D mask used above.

Timing (simspec.profile.timer): a device timer with warm-up and repeats; CUDA events +
synchronize on cuda, perf_counter on cpu.
"""

from simspec.models.dims import Dims
from simspec.models.loader import LoadedModel, load_model
from simspec.models.tiny import tiny_model
from simspec.models.views import (
    TrimmedHead,
    early_exit_logits,
    first_layers,
    forward_tokens,
    new_cache,
    tree_attention_mask,
    trimmed_head,
    with_cache,
)

__all__ = [
    "Dims",
    "LoadedModel",
    "TrimmedHead",
    "early_exit_logits",
    "first_layers",
    "forward_tokens",
    "load_model",
    "new_cache",
    "tiny_model",
    "tree_attention_mask",
    "trimmed_head",
    "with_cache",
]
