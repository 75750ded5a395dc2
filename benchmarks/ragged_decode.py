"""A decode step of a ragged batch against a uniform one, through the serving loop's own cache.

Run: .venv/bin/python benchmarks/ragged_decode.py [--model smollm2-135m] [--dtype fp32] [--threads 2]

A profile times uniform batches (every row the same context, one forward); the live serving
loop's batches are ragged: rows of different lengths left-padded to the widest in one cache
(simspec/live/kv.py). Issue 27's crossover run measured rounds at batch 2-16 at 1.08-1.45x their
price while batch 1 was within 2%. This times one decode token per row through `KV.forward` for
a uniform batch and a ragged one of the same mean context (and batch 1 at that context), the
fastest and the median of 3 x 12 steps each, interleaved, so that the padding's share of that
gap can be read off. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ragged", default="100,300,500,700", help="row context lengths of the ragged batch")
    args = ap.parse_args()

    import torch

    from simspec.live.kv import CTX, KV
    from simspec.models.loader import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model, args.dtype).model
    ragged = [int(x) for x in args.ragged.split(",")]
    mean = round(sum(ragged) / len(ragged))
    cases = {f"uniform {len(ragged)} x {mean}": [mean] * len(ragged),
             f"ragged {'/'.join(map(str, ragged))}": ragged,
             f"batch 1 x {mean}": [mean]}

    def filled(lens: list[int]) -> KV:
        kv = KV(model, len(lens))
        prompts = [[1 + (i * 7 + j) % 1000 for j in range(n)] for i, n in enumerate(lens)]
        none = torch.zeros(len(lens), 0, dtype=torch.long)
        ids, kind, m = kv.with_context(prompts, none, none)
        kv.forward(model, ids, kind, keep=[m - 1])
        return kv

    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(3):  # interleaved: a slow phase of the host lands on every case
        for name, lens in cases.items():
            kv = filled(lens)
            ids = torch.ones(len(lens), 1, dtype=torch.long)
            kind = torch.full((len(lens), 1), CTX, dtype=torch.long)
            for _ in range(12):
                t0 = time.perf_counter()
                kv.forward(model, ids, kind, keep=[0])
                times[name].append(time.perf_counter() - t0)
    base = min(times[next(iter(cases))])
    for name, ts in times.items():
        print(f"{name:32s} fastest {min(ts) * 1e3:7.1f} ms   median {statistics.median(ts) * 1e3:7.1f} ms   "
              f"fastest / uniform {min(ts) / base:.2f}x")


if __name__ == "__main__":
    main()
