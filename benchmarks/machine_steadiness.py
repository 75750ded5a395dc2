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
import sys

from simspec.timing.steadiness import summary as summarise
from simspec.timing.steadiness import windows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=5.0, help="seconds per GEMM + GEMV window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the windows and the summary here")
    args = ap.parse_args(argv)
    rows = windows(args.seconds, args.window, args.threads, say=lambda r: print(
        f"{r['time']}  GEMM 512x1536x8960 {r['gemm_gflop_s']:8.1f} GFLOP/s   GEMV 8960x1536 {r['gemv_gb_s']:6.1f} GB/s",
        flush=True))
    summary = summarise(rows)
    for key, unit in (("gemm_gflop_s", "GFLOP/s"), ("gemv_gb_s", "GB/s")):
        s = summary[key]
        print(f"{key.split('_')[0].upper()}: min {s['min']} / median {s['median']} / max {s['max']} {unit}: "
              f"spread {s['spread']}x over {len(rows)} windows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"windows": rows, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
