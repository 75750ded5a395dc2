"""A loaded model, and what every model builder shares (loader.py's loaders, tiny.py's
random test models): the dtype and device checks and simspec's CPU kernels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simspec.errors import InputError
from simspec.models.dims import Dims
from simspec.models.gemv import install as install_gemv

DTYPES = ("fp32", "bf16")


@dataclass
class LoadedModel:
    """A model ready to run: HF CausalLM in eval mode on `device` in `dtype`."""

    model: Any
    tokenizer: Any
    name: str
    sha256: str
    dims: Dims
    dtype: str
    device: str

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.dtype == "fp32" else 2

    @property
    def weights_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())


def torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise InputError(None, "dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
    return torch.float32 if dtype == "fp32" else torch.bfloat16


def check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(None, "device", f"{device} requested but torch sees no CUDA device")
        return device
    raise InputError(None, "device", f"{device!r} is not cpu, cuda or cuda:N")


def install_kernels(model) -> None:
    """simspec's faster CPU kernels (gemv.py: one-row linears, gqa.py: GQA attention), on
    every model simspec builds, so profiler, tracer and live engine time the same kernels."""
    from simspec.models.gqa import install as install_gqa  # imports transformers

    install_gemv(model)
    install_gqa(model)
