"""How often two traces of the same prompts disagree: the numerics a trace was decoded with.

    python benchmarks/trace_numerics.py A.parquet B.parquet [--json OUT]
    python benchmarks/trace_numerics.py traces/qwen2.5-coder-1.5b__humaneval.parquet \
        traces/qwen2.5-coder-1.5b__humaneval-b1-bf16.parquet

Replay is exact only when the live run computes what the trace computed. In bf16 the batch
shape (16 sequences vs 1) and the dtype change how near-tied logits round, so the target's
greedy path and each drafter's proposals can part. For the sequences both traces hold with the
same prompt ids, this prints whether the target's greedy outputs are equal (and where they
first part), then per drafter column shared by both: positions compared (up to the first
parting), positions whose rank differs, and positions whose accepted-or-not (rank 0) differs:
the only thing a greedy replay reads. Files only; a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simspec.trace.schema import load_trace


def compare(a_path: str, b_path: str) -> dict:
    a, b = load_trace(a_path), load_trace(b_path)
    seqs = [s for s in range(min(a.n_seq, b.n_seq)) if a.seq_prompt(s).tolist() == b.seq_prompt(s).tolist()]
    paths, upto = [], {}
    for s in seqs:
        ta, tb = a.seq_tokens(s).tolist(), b.seq_tokens(s).tolist()
        first = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), None)
        upto[s] = first if first is not None else min(len(ta), len(tb))
        paths.append({"sequence": s, "equal": first is None and len(ta) == len(tb), "first_parting": first,
                      "tokens": [len(ta), len(tb)]})
    cols = []
    for c in (c for c in b.drafters if c in a.drafters):
        n = rank = acc = 0
        for s in seqs:
            ra = a.ranks[c][a.offsets[s]:a.offsets[s] + upto[s]]
            rb = b.ranks[c][b.offsets[s]:b.offsets[s] + upto[s]]
            n += len(ra)
            rank += int((ra != rb).sum())
            acc += int(((ra == 0) != (rb == 0)).sum())
        cols.append({"column": c, "positions": n, "rank_differs": rank, "accepted_differs": acc})
    meta = {k: {"path": str(t.path), "batch": t.meta.get("batch"), "dtype": t.meta.get("dtype")} for k, t in
            (("a", a), ("b", b))}
    return {"traces": meta, "sequences": seqs, "target_paths": paths, "columns": cols}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    r = compare(args.a, args.b)
    for k, t in r["traces"].items():
        print(f"{k}: {t['path']} (batch {t['batch']}, {t['dtype']})")
    eq = sum(p["equal"] for p in r["target_paths"])
    print(f"target greedy outputs equal on {eq} of {len(r['sequences'])} shared sequences")
    for p in r["target_paths"]:
        if not p["equal"]:
            print(f"  sequence {p['sequence']} parts at token {p['first_parting']}")
    print(f"{'column':32s} {'positions':>9s} {'rank differs':>14s} {'accepted differs':>17s}")
    for c in r["columns"]:
        n = c["positions"] or 1
        print(f"{c['column']:32s} {c['positions']:9d} {c['rank_differs']:6d} ({c['rank_differs'] / n:5.2%}) "
              f"{c['accepted_differs']:7d} ({c['accepted_differs'] / n:5.2%})")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
