"""The roofline fitted to every shipped profile, and the H100 / A100 public comparisons.

The public figures are batch-1 decode of Llama-class 7-8B models; the catalog's H100 and A100
memory-bound efficiencies were fitted to the ones marked "fit", so only the "holdout" rows test
the roofline (a different stack, a different model, prefill included).

    python benchmarks/roofline_fit.py [--json OUT]

Reads files only (no timing): profiles/intel-xeon/*.parquet and their *.check*.json reports. The fit
is to the profiles' capture machine (an Intel Xeon with AMX, 2 threads: `xeon-amx-2c`), not to
the machine running this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simspec.devices import arch, catalog
from simspec.devices.fit import fit_profile
from simspec.devices.roofline import RooflineCost

ROOT = Path(__file__).resolve().parents[1]

# (label, model, device, dtype, prompt, new tokens, measured seconds or tok/s, kind, role, source).
# role "fit": the catalog's memory-bound efficiency for that device was fitted to this figure,
# so it agrees by construction; "holdout": a measurement nothing was fitted to.
PUBLIC = [
    ("Llama-3.1-8B, H100, bs 1, decode tok/s (torch.compile)", "llama-3-8b", "h100-sxm", "bf16",
     6, 200, 126.90, "tok_s", "fit",
     "pytorch/ao torchao/quantization/README.md, 'CUDA backend | NVIDIA-H100 GPU', Base (bfloat16): 126.90 tok/s"),
    ("Llama-2-7B, H100 80GB, bs 1, 128 in / 20 out (end-to-end latency)", "llama-2-7b", "h100-sxm", "fp16",
     128, 20, 0.1538, "latency_s", "holdout",
     "NVIDIA NeMo Framework docs, 'Llama-2 Results, Inference Performance' (H100 80GB HBM3, TP1, 153.8 ms)"),
    ("Llama-2-7B, A100 80GB (power-limited to 330 W), bs 1, decode tok/s", "llama-2-7b", "a100-80g", "bf16",
     5, 200, 104.9, "tok_s", "fit",
     "pytorch-labs/gpt-fast README, Benchmarks table (Base: 104.9 tok/s, 1,397 GB/s)"),
    ("Llama-2-7B, A100 80GB, bs 1, decode tok/s (torch.compile)", "llama-2-7b", "a100-80g", "bf16",
     6, 200, 107.38, "tok_s", "fit",
     "pytorch/ao torchao/quantization/README.md, 'CUDA backend | NVIDIA-A100-80GB GPU', Base (bfloat16): 107.38 tok/s"),
    ("Llama-3-8B, A100 80GB, bs 1, decode tok/s (torch.compile)", "llama-3-8b", "a100-80g", "bf16",
     6, 200, 95.64, "tok_s", "fit",
     "pytorch/ao torchao/quantization/README.md, same table, Llama-3-8B Base (bfloat16): 95.64 tok/s"),
    ("Llama-2-7B, A100 80GB, bs 1, 128 in / 20 out (end-to-end latency)", "llama-2-7b", "a100-80g", "fp16",
     128, 20, 0.2340, "latency_s", "holdout",
     "NVIDIA NeMo Framework docs, same table (A100 80GB SXM4, TP1, 234.0 ms)"),
]


def public() -> list[dict]:
    out = []
    for label, model, dev, dtype, prompt, new, measured, kind, role, source in PUBLIC:
        m = RooflineCost(arch.resolve(model), catalog.get(dev), dtype)
        if kind == "latency_s":  # the prefill makes the first token, then new - 1 decode steps
            pred = m.latency_s("prefill", 1, prompt, 0) + sum(
                m.latency_s("decode", 1, 1, prompt + i) for i in range(new - 1))
        else:
            pred = new / sum(m.latency_s("decode", 1, 1, prompt + i) for i in range(new))
        out.append({"case": label, "role": role, "source": source, "measured": measured, "predicted": pred,
                    "error_pct": (pred - measured) / measured * 100})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    fits = [fit_profile(p, catalog.get("xeon-amx-2c")).as_dict()
            for p in sorted((ROOT / "profiles/intel-xeon").glob("*.parquet"))]
    print("| profile | grid median / max | holdout median / max |")
    print("|---|---|---|")
    for f in fits:
        g, h = f["grid"], f["holdout"]
        print(f"| {Path(f['profile']).stem} | {g['median_abs_error']:.1%} / {g['max_abs_error']:.1%} ({g['points']}) "
              f"| {h['median_abs_error']:.1%} / {h['max_abs_error']:.1%} ({h['points']}) |")
    pub = public()
    for p in pub:
        print(f"[{p['role']}] {p['case']}: measured {p['measured']:g}, roofline {p['predicted']:.4g} ({p['error_pct']:+.1f}%) -- {p['source']}")
    if a.json:
        a.json.write_text(json.dumps({"fits": fits, "public": pub}, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
