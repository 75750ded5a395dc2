"""Random-weight models of any published configuration: `random:<ref>` as a model spec.

    load_model("random:qwen2.5-coder-1.5b", dtype="bf16", device="cuda")
    load_model("random:path/to/config.json")          # or the folder that holds it

<ref> is a name in simspec/devices/models.toml (its architecture from the name: qwen -> qwen2,
llama / mistral -> llama) or an HF config.json (any model_type transformers knows). Nothing is
downloaded or read but the config: kernel timings depend on shapes, not weights, so a
borrowed GPU with no network and no room for weights can still profile a model, and the live
engine can serve it under synthetic acceptance (simspec.live.synthetic). Output text is
meaningless. Weights are drawn by transformers' own initialiser, seeded (same seed, device and
dtype -> same weights), directly in the run's dtype on the run's device; a model whose weights
would not fit in the memory available there is refused before anything is allocated.

The tokenizer is the tiny models' byte-level one (ids 0..258), so the vocabulary must hold at
least 259 ids; the model is named as its dims (a profile of it lands where the real model's
would), with no sha256 (no file to hash).
"""

from __future__ import annotations

import json
from pathlib import Path

from simspec.errors import InputError
from simspec.models.dims import Dims
from simspec.models.loaded import LoadedModel, check_device, install_kernels, torch_dtype

# models.toml names -> transformers model_type (the names carry their family)
FAMILIES = (("qwen", "qwen2"), ("llama", "llama"), ("mistral", "llama"))
HEADROOM = 0.8  # of the memory available: the weights may take at most this much


def _arch_of(name: str) -> str | None:
    low = name.lower()
    return next((arch for prefix, arch in FAMILIES if low.startswith(prefix)), None)


def config_of(ref: str):
    """(transformers config, name) for a models.toml name or an HF config.json / its folder."""
    from transformers import AutoConfig

    from simspec.devices.arch import known

    spec = f"random:{ref}"
    table = known()
    if ref in table:
        d = table[ref]
        arch = _arch_of(ref)
        if arch is None:
            families = ", ".join(sorted({p for p, _ in FAMILIES}))
            raise InputError(spec, None, f"cannot tell {ref!r}'s architecture (known families: {families}); "
                             "give its HF config.json instead")
        cfg = dict(vocab_size=d["vocab"], hidden_size=d["hidden"], intermediate_size=d["intermediate"],
                   num_hidden_layers=d["layers"], num_attention_heads=d["heads"], num_key_value_heads=d["kv_heads"],
                   head_dim=d["head_dim"], tie_word_embeddings=bool(d.get("tied", True)),
                   max_position_embeddings=32768)
        return AutoConfig.for_model(arch, **cfg, **_byte_ids()), ref
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(spec, None, f"{ref!r} is neither a model in simspec/devices/models.toml "
                         f"({', '.join(table)}) nor an HF config.json or its folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(str(path), None, f"not a JSON config: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise InputError(str(path), "model_type", "an HF config.json names its model_type")
    data = {k: v for k, v in data.items() if k not in ("quantization_config", "architectures", "auto_map")}
    model_type = data.pop("model_type")
    try:
        cfg = AutoConfig.for_model(model_type, **data)
        for k, v in _byte_ids().items():
            setattr(cfg, k, v)
    except Exception as exc:  # noqa: BLE001 - transformers' config classes raise many kinds on bad fields
        raise InputError(str(path), None, f"not a {model_type} config: {_first_line(exc)}") from None
    name = path.parent.name if path.name == "config.json" else path.stem
    return cfg, name


def _first_line(exc: BaseException) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return " ".join(lines[:2])[:300] or type(exc).__name__


def _byte_ids() -> dict:
    return dict(bos_token_id=256, eos_token_id=257, pad_token_id=258)


def weight_bytes(config, dtype: str, spec: str = "random") -> int:
    """Bytes of the model's parameters in `dtype`, from its config (nothing allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    except Exception as exc:  # noqa: BLE001 - shapes no model of this type can have
        raise InputError(spec, None, f"cannot build a {config.model_type} model of these dims: {_first_line(exc)}") from None
    return sum(p.numel() for p in model.parameters()) * (4 if dtype == "fp32" else 2)


def available_bytes(device: str) -> int | None:
    """Memory the weights can have on `device` now (None: unknown)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    from simspec.limits import available_memory

    return available_memory()


def random_model(ref: str, dtype: str = "fp32", device: str = "cpu", seed: int = 0) -> LoadedModel:
    """A `ref`-shaped causal LM with seeded random weights (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    from simspec.models.tiny import SPECIALS, byte_tokenizer

    spec = f"random:{ref}"
    tdtype = torch_dtype(dtype)
    device = check_device(device)
    config, name = config_of(ref)
    try:
        dims = Dims.from_config(config)
        sizes = (dims.layers, dims.hidden, dims.heads, dims.kv_heads, dims.head_dim, dims.vocab)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(spec, None, f"incomplete dims: {_first_line(exc)}") from None
    if min(sizes) < 1 or dims.heads % dims.kv_heads:
        raise InputError(spec, None, f"dims {dims.to_dict()}: every size must be >= 1 and heads a multiple of kv_heads")
    if dims.vocab < 256 + len(SPECIALS):
        raise InputError(spec, "vocab", f"{dims.vocab} ids: the byte tokenizer needs at least {256 + len(SPECIALS)}")
    need, have = weight_bytes(config, dtype, spec), available_bytes(device)
    if have is not None and need > HEADROOM * have:
        raise InputError(spec, None, f"{dtype} weights need {need / 2**30:.1f} GiB, more than {HEADROOM:.0%} of the "
                         f"{have / 2**30:.1f} GiB available on {device}")
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=tdtype)
    model.eval()
    install_kernels(model)
    return LoadedModel(model=model, tokenizer=byte_tokenizer(), name=name, sha256="", dims=dims,
                       dtype=dtype, device=device)
