"""How steady is this machine now: a bf16 GEMM and GEMV timed in alternating windows.

A capture, a calibration and a live validation all time on a machine that may share its cores:
a neighbour's phase shows up as the same kernel running at another speed minutes apart. A GEMM
shaped like a 1.5B model's MLP on 512 tokens (compute-bound) and a matrix-vector product of the
same weight (memory-bound, like a decode step), each window's speed and the spread (max / min).
`simspec validate --steadiness S` runs it just before and just after the live runs and keeps
both in the result's JSON; benchmarks/machine_steadiness.py prints it.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def windows(seconds: float, window: float = 5.0, threads: int = 2,
            say: Callable[[dict], None] | None = None) -> list[dict]:
    """Alternate GEMM and GEMV for `seconds`, `window` seconds per pair; one dict per window."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(512, 1536, dtype=torch.bfloat16)
        w = torch.randn(1536, 8960, dtype=torch.bfloat16)
        wt = w.t().contiguous()
        v = torch.randn(1536, dtype=torch.bfloat16)
        for _ in range(3):
            a @ w
            torch.mv(wt, v)
        out = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < window / 2:
                a @ w
                n += 1
            gemm = n * 2 * a.shape[0] * w.shape[0] * w.shape[1] / (time.perf_counter() - t0) / 1e9
            t0, m = time.perf_counter(), 0
            while time.perf_counter() - t0 < window / 2:
                for _ in range(10):
                    torch.mv(wt, v)
                m += 10
            gemv = m * wt.numel() * wt.element_size() / (time.perf_counter() - t0) / 1e9
            row = {"time": time.strftime("%H:%M:%S"), "gemm_gflop_s": round(gemm, 1), "gemv_gb_s": round(gemv, 1)}
            if say is not None:
                say(row)
            out.append(row)
        return out
    finally:
        torch.set_num_threads(before)


def summary(rows: list[dict]) -> dict:
    """Per kernel: min, median, max over the windows and the spread (max / min)."""
    out = {}
    for key in ("gemm_gflop_s", "gemv_gb_s"):
        xs = [r[key] for r in rows]
        out[key] = {"min": min(xs), "median": statistics.median(xs), "max": max(xs),
                    "spread": round(max(xs) / min(xs), 2)}
    return out


def probe(seconds: float, threads: int = 2, say: Callable[[dict], None] | None = None) -> dict:
    """{"windows": [...], "summary": {...}} over `seconds` (at least one window)."""
    rows = windows(seconds, min(5.0, seconds), threads, say)
    return {"windows": rows, "summary": summary(rows)}
