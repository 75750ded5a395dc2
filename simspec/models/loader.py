"""Load a causal LM from a known name, a GGUF file, an HF directory or an HF id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from simspec.errors import InputError
from simspec.models.allocator import retain_freed_memory
from simspec.models.dims import Dims
# A loaded model's type and the checks every model builder shares live in models/loaded.py
# (tiny.py builds models too, and imports them from there: no loader <-> tiny import cycle).
from simspec.models.loaded import DTYPES, LoadedModel, check_device, install_kernels, torch_dtype  # noqa: F401
from simspec.models.registry import KNOWN
from simspec.models.store import assembled_gguf, check_gguf_magic, convert_gguf, sha256_file


def _dir_sha256(path: Path) -> str:
    """sha256 over an HF directory's config and weight files (names and contents)."""
    marker = path / "simspec.json"
    if marker.exists():
        try:
            return json.loads(marker.read_text())["sha256"]
        except (ValueError, KeyError):
            pass
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".json"))
    for p in files:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors(path: Path) -> None:
    """An HF directory must hold its weights as safetensors (never a pickle)."""
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise InputError(str(path), None, f"weights only as pickle ({', '.join(pickled[:3])}): simspec loads "
                         "safetensors or GGUF only (re-save the model with save_pretrained(safe_serialization=True))")
    raise InputError(str(path), None, "no *.safetensors weights in this HF model directory")


def resolve(spec: str) -> tuple[str, Path | str, str]:
    """(name, HF directory or hub id, sha256) for a model spec; converts GGUFs once."""
    if spec in KNOWN:
        known = KNOWN[spec]
        gguf = assembled_gguf(known)
        return spec, convert_gguf(gguf, known.sha256, spec), known.sha256
    path = Path(spec).expanduser()
    if path.is_file():
        check_gguf_magic(path)
        sha = sha256_file(path)
        for known in KNOWN.values():  # a known file under another path keeps its short name
            if known.sha256 == sha:
                return known.name, convert_gguf(path, sha, known.name), sha
        return path.stem, convert_gguf(path, sha, path.stem), sha
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(str(path), None, "not an HF model directory (no config.json)")
        return path.name, path, _dir_sha256(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec.split("/")[-1], spec, ""
    raise InputError(
        spec, None,
        f"not a known model ({', '.join(KNOWN)}), a GGUF file, an HF directory or an HF id",
    )


def load_model(spec: str, dtype: str = "fp32", device: str = "cpu") -> LoadedModel:
    """Load a causal LM for inference (eval mode, no grad needed by callers' views)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our commands show their own progress
    retain_freed_memory()  # steady forward costs for the profiler, tracer and live engine
    tdtype = torch_dtype(dtype)
    device = check_device(device)
    if spec.startswith("tiny:"):  # tiny:<arch>[:<layers>] -- a random test model
        from simspec.models.tiny import ARCHS, tiny_model

        parts = spec.split(":")
        if parts[1] not in ARCHS or len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()):
            raise InputError(spec, None, f"tiny models are tiny:<{'|'.join(ARCHS)}>[:<layers>]")
        return tiny_model(parts[1], layers=int(parts[2]) if len(parts) == 3 else 4,
                          dtype=dtype, device=device)
    if spec.startswith("random:"):  # random:<models.toml name | config.json> -- random weights, any dims
        from simspec.models.random_weights import random_model

        return random_model(spec.removeprefix("random:"), dtype=dtype, device=device)
    name, where, sha = resolve(spec)
    if isinstance(where, Path):
        check_safetensors(where)
    try:
        # Weights from safetensors only: a pickled checkpoint (pytorch_model.bin, *.pt) runs
        # code when unpickled, and a model directory is a file from the user or the hub.
        model = AutoModelForCausalLM.from_pretrained(str(where), dtype=tdtype, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(where))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(spec, None, f"cannot load model: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    install_kernels(model)
    if not sha:  # hub id: hash the resolved files if we can find them
        local = Path(getattr(model.config, "_name_or_path", "") or "")
        sha = _dir_sha256(local) if local.is_dir() else ""
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, sha256=sha,
        dims=Dims.from_config(model.config), dtype=dtype, device=device,
    )
