"""Simulated output tokens per wall-second (closed loop, iid a=0.8, gamma=4).

Run: .venv/bin/python benchmarks/sim_speed.py   (targets: >=100k tok/s at batch 1,
>=1M tok/s at batch 64; goals beyond: 200k and 2M)
     .venv/bin/python benchmarks/sim_speed.py --old   (also the round-by-round path, jump=False,
     in the same run, and the speed-up of the jumps over it; issue 30: >= 10x at batch 1)
"""

from __future__ import annotations

import argparse
import time

from simspec.config import parse_scenario
from simspec.sim.run import simulate


def scenario(batch: int, tokens: int) -> dict:
    per_request = 4000
    return {
        "target": {"cost": {"step_ms": 10.0, "per_seq_ms": 0.1}},
        "draft": {"kind": "model", "cost": {"step_ms": 1.0}},
        "acceptance": {"iid": 0.8},
        "speculation": {"draft_len": 4},
        "workload": {"requests": max(batch, tokens // per_request), "arrival": "closed",
                     "concurrency": batch, "prompt_len": 128, "output_len": per_request},
        "serving": {"max_batch": batch, "seed": 0},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=400_000, help="simulated output tokens per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old", action="store_true",
                    help="also time the round-by-round path (jump=False) and print the speed-up")
    args = ap.parse_args()
    old = f" {'old tok/s':>12} {'speed-up':>9}" if args.old else ""
    print(f"{'batch':>6} {'output tokens':>14} {'wall s (best)':>14} {'sim tok/s':>12}{old}")
    for batch in (1, 8, 64, 256):
        sc = parse_scenario(scenario(batch, args.tokens), f"batch{batch}")
        toks, best = _best(sc, args.repeats, jump=True)
        line = f"{batch:>6} {toks:>14,} {best:>14.3f} {toks / best:>12,.0f}"
        if args.old:
            toks_old, best_old = _best(sc, args.repeats, jump=False)
            assert toks_old == toks
            line += f" {toks / best_old:>12,.0f} {best_old / best:>8.1f}x"
        print(line, flush=True)


def _best(sc, repeats: int, jump: bool) -> tuple[int, float]:
    """(output tokens, best wall seconds of `repeats` runs)."""
    best = float("inf")
    toks = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = simulate(sc, jump=jump)
        best = min(best, time.perf_counter() - t0)
        toks = res.summary["output_tokens"]
    return toks, best


if __name__ == "__main__":
    main()
