"""One-row bf16 linears as torch.mv / torch.addmv on the CPU.

Why: batch-1 decoding multiplies ONE token row by every weight matrix. On this CPU (2 threads,
torch 2.13) F.linear sends that row down the bf16 GEMM path at ~19-22 GB/s, while torch.mv
streams the weights at ~29 GB/s: one decode step of Qwen2.5-Coder-0.5B drops from 84 to 62 ms,
of the 1.5B from 184 to 143 ms. The result is F.linear's up to the last bit of a long
reduction: both accumulate in fp32 and round once (addmv folds the bias in as F.linear does),
but the order of the partial sums may differ (measured: 2 of 24 down-projections of the 0.5B
differ somewhere in the last bit). That is below bf16's own noise between one-token and
multi-token passes; tests/test_gemv.py bounds it.

Which path wins is a property of the processor, not of bf16: where oneDNN has a fast one-row
GEMM the mv path can lose. So the mv path is taken only where a timing on this machine says it
wins (`one_row_path`): mv and F.linear, interleaved on one bandwidth-bound matrix, best of
several blocks (phases of a shared host slow both alike); mv must be 5% faster. The verdict is
kept per machine (processor, ISA, torch, threads) in <SIMSPEC_CACHE>/kernels.json, so the
profiler, the tracer and the live engine on one machine run the same path; profile sidecars
record it. SIMSPEC_ONE_ROW_LINEAR=mv|gemm overrides the timing.

`install(model)` (done by load_model and tiny_model) routes the model's nn.Linear layers
through `linear`. It is on everywhere simspec runs a model (profiler, tracer, live engine), so
profiles price the kernels the engine runs; `stock_linears()` turns it off (benchmarks run
transformers' own generate as shipped). fp32 (no gain here) and fp16 (not bitwise equal) keep
F.linear, as does every other device.
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from simspec import machine
from simspec.models.stock import StockSwitch
from simspec.models.store import cache_root

stock_linears = StockSwitch()  # `with stock_linears():` every installed linear is F.linear again
PATHS = ("mv", "gemm")
ENV = "SIMSPEC_ONE_ROW_LINEAR"
MARGIN = 0.95  # mv must take under 95% of F.linear's time: a near-tie keeps transformers' kernel
_chosen: dict[int, str] = {}  # torch threads -> path, for this process


def time_paths(rows: int = 4096, cols: int = 2048, blocks: int = 5, reps: int = 8) -> dict[str, float]:
    """Seconds per one-row product of a bf16 [rows x cols] matrix (16 MiB: past the L2, as a
    layer's weights are) by mv and by F.linear, interleaved block by block, best block each."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(rows, cols, generator=g).to(torch.bfloat16)
    x = torch.randn(1, 1, cols, generator=g).to(torch.bfloat16)
    v = x.reshape(-1)
    runs: dict[str, Callable[[], torch.Tensor]] = {"mv": lambda: torch.mv(w, v),
                                                   "gemm": lambda: nn.functional.linear(x, w)}
    best = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for f in runs.values():
            f()  # first calls pay one-time set-up
        for _ in range(blocks):
            for name, f in runs.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                best[name] = min(best[name], (time.perf_counter() - t0) / reps)
    return best


def decide(seconds: dict[str, float]) -> str:
    """'mv' where it beats F.linear by the margin, else 'gemm'."""
    return "mv" if seconds["mv"] < MARGIN * seconds["gemm"] else "gemm"


def _key(threads: int) -> str:
    ident = machine.identify("cpu", threads, probe=False)
    return f"{ident['cpu']} | {','.join(ident['isa'])} | torch {torch.__version__} | {threads} threads"


def _verdicts(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: time again and write a good one
    return data if isinstance(data, dict) else {}


def one_row_path(threads: int | None = None, timer: Callable[[], dict[str, float]] = time_paths) -> str:
    """The one-row bf16 CPU linear path of this machine at `threads` (default: torch's),
    decided once per process: the override, else the machine's kept verdict, else a timing."""
    threads = threads or torch.get_num_threads()
    path = _chosen.get(threads)
    if path is None:
        path = _chosen[threads] = _verdict(threads, timer)
    return path


def forget() -> None:
    """Drop this process's verdicts (tests, or after changing SIMSPEC_ONE_ROW_LINEAR)."""
    _chosen.clear()


def _verdict(threads: int, timer: Callable[[], dict[str, float]]) -> str:
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in PATHS:
            raise ValueError(f"{ENV}={forced!r}: expected one of {', '.join(PATHS)}")
        return forced
    store = cache_root() / "kernels.json"
    verdicts = _verdicts(store)
    key = _key(threads)
    kept = verdicts.get(key)
    if isinstance(kept, dict) and kept.get("one_row_linear") in PATHS:
        return kept["one_row_linear"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # timed at the threads it is asked for
    try:
        seconds = timer()
    finally:
        torch.set_num_threads(before)
    path = decide(seconds)
    verdicts[key] = {"one_row_linear": path, "seconds": {k: round(v, 7) for k, v in seconds.items()},
                     "date": time.strftime("%Y-%m-%d")}
    try:  # a unique temporary name: the pipeline's two processes may decide at once
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"kernels.{os.getpid()}.tmp.json")
        tmp.write_text(json.dumps(verdicts, indent=1) + "\n")
        os.replace(tmp, store)
    except OSError:
        pass  # a read-only cache costs a timing per process, nothing else
    return path


def record(device: str, dtype: str) -> dict:
    """What a sidecar notes about the one-row linears a run used (empty where none applies)."""
    if stock_linears or device != "cpu" or dtype != "bf16":
        return {}
    return {"one_row_linear": one_row_path()}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with a one-row bf16 CPU input done as a matrix-vector product where that wins."""
    if (not stock_linears and x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16
            and x.device.type == "cpu" and x.numel() == x.shape[-1] and one_row_path() == "mv"):
        v = x.reshape(-1)
        y = torch.mv(weight, v) if bias is None else torch.addmv(bias, weight, v)
        return y.view(*x.shape[:-1], weight.shape[0])
    return nn.functional.linear(x, weight, bias)


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias)


def install(model: nn.Module) -> int:
    """Route every plain nn.Linear of `model` through `linear`; returns how many (idempotent).
    A bf16 CPU model has its path decided here, not inside the first (perhaps timed) forward."""
    n, bf16_cpu = 0, False
    for m in model.modules():
        if type(m) is nn.Linear and "forward" not in m.__dict__:
            m.forward = types.MethodType(_forward, m)
            n += 1
            bf16_cpu |= m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"
    if bf16_cpu:
        one_row_path()
    return n
