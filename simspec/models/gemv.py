"""One-row bf16 linears as torch.mv / torch.addmv on the CPU.

Why: batch-1 decoding multiplies ONE token row by every weight matrix. On this CPU (2 threads,
torch 2.13) F.linear sends that row down the bf16 GEMM path at ~19-22 GB/s, while torch.mv
streams the weights at ~29 GB/s: one decode step of Qwen2.5-Coder-0.5B drops from 84 to 62 ms,
of the 1.5B from 184 to 143 ms. The result is F.linear's up to the last bit of a long
reduction: both accumulate in fp32 and round once (addmv folds the bias in as F.linear does),
but the order of the partial sums may differ (measured: 2 of 24 down-projections of the 0.5B
differ somewhere in the last bit). That is below bf16's own noise between one-token and
multi-token passes; tests/test_gemv.py bounds it.

`install(model)` (done by load_model and tiny_model) routes the model's nn.Linear layers
through `linear`. It is on everywhere simspec runs a model (profiler, tracer, live engine), so
profiles price the kernels the engine runs; `stock_linears()` turns it off (benchmarks run
transformers' own generate as shipped). fp32 (no gain here) and fp16 (not bitwise equal) keep
F.linear, as does every other device.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from simspec.models.stock import StockSwitch

stock_linears = StockSwitch()  # `with stock_linears():` every installed linear is F.linear again


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with a one-row bf16 CPU input done as a matrix-vector product."""
    if (not stock_linears and x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16
            and x.device.type == "cpu" and x.numel() == x.shape[-1]):
        v = x.reshape(-1)
        y = torch.mv(weight, v) if bias is None else torch.addmv(bias, weight, v)
        return y.view(*x.shape[:-1], weight.shape[0])
    return nn.functional.linear(x, weight, bias)


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias)


def install(model: nn.Module) -> int:
    """Route every plain nn.Linear of `model` through `linear`; returns how many (idempotent)."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Linear and "forward" not in m.__dict__:
            m.forward = types.MethodType(_forward, m)
            n += 1
    return n
