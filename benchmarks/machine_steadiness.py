"""Is this machine steady enough to time on now? GEMM and GEMV speed every few seconds.

Run: .venv/bin/python benchmarks/machine_steadiness.py [--seconds 60] [--threads 2]
     (alone: anything else running is what it measures)

A profile capture, a calibration and a live validation all assume that the machine runs at one
speed while they time it. On a shared cloud host that is not a given: a noisy neighbour or a
throttled core shows up as the same kernel running at another speed minutes apart. This script
times, in alternating windows, a bf16 GEMM shaped like a 1.5B model's MLP on 512 tokens
(compute-bound: AMX / AVX-512) and a bf16 matrix-vector product of the same weight (bound by
memory bandwidth, like a decode step), and prints each window and the spread (max / min). On
the machine the shipped profiles came from, both stayed within ~10%; a spread of 2x means
that no timing taken now will match one taken later, and a validation will measure the
neighbours. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def windows(seconds: float, window: float, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
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
        print(f"{row['time']}  GEMM 512x1536x8960 {gemm:8.1f} GFLOP/s   GEMV 8960x1536 {gemv:6.1f} GB/s", flush=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per GEMM + GEMV window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the windows and the summary here")
    args = ap.parse_args(argv)
    rows = windows(args.seconds, args.window, args.threads)
    summary = {}
    for key, unit in (("gemm_gflop_s", "GFLOP/s"), ("gemv_gb_s", "GB/s")):
        xs = [r[key] for r in rows]
        summary[key] = {"min": min(xs), "median": statistics.median(xs), "max": max(xs),
                        "spread": round(max(xs) / min(xs), 2)}
        s = summary[key]
        print(f"{key.split('_')[0].upper()}: min {s['min']} / median {s['median']} / max {s['max']} {unit}: "
              f"spread {s['spread']}x over {len(xs)} windows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"windows": rows, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
