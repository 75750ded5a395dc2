"""Does a calibrated profile predict a plan as a full capture on this machine does?

Run: .venv/bin/python benchmarks/calibration_vs_capture.py PLAN FULL=CALIBRATED [FULL=CALIBRATED ...]
     e.g. studies/validation/qwen-pipeline.toml
          profiles/intel-xeon-1t/qwen2.5-coder-1.5b-fp32.parquet=profiles/intel-xeon-1t/qwen2.5-coder-1.5b-fp32-calibrated.parquet

`simspec profile --calibrate` refits a profile captured elsewhere from about a minute of timings
here; a full capture takes many minutes. The question a user has is whether the plan's
predictions change: this prices every config of PLAN twice through `simspec validate`'s own
prediction path, once with the plan's profiles (the full captures) and once with each replaced
by its calibrated counterpart, and prints tok/s both ways per config, the difference, and its
median / max. No timing happens here (the calibration did it); a figure, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path


def predictions(plan: Path) -> dict[str, float]:
    from simspec.validation.run import load_inputs, predict

    return {r.label: r.predicted.tok_s for r in predict(load_inputs(plan, None))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", type=Path)
    ap.add_argument("swap", nargs="+", help="FULL=CALIBRATED: a profile path as the plan writes it, and its replacement")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args(argv)
    text = args.plan.read_text()
    for pair in args.swap:
        full, sep, cal = pair.partition("=")
        if not sep or f'"{full}"' not in text:
            print(f"error: {args.plan}: no profile {full!r} to replace (write FULL=CALIBRATED)", file=sys.stderr)
            return 2
        if not Path(cal).is_file():
            print(f"error: {cal}: no such profile", file=sys.stderr)
            return 2
        text = text.replace(f'"{full}"', f'"{Path(cal).resolve()}"')
    full = predictions(args.plan)
    with tempfile.TemporaryDirectory() as d:
        other = Path(d) / args.plan.name
        other.write_text(text)  # its other relative paths resolve from the working directory, as the plan's do
        cal = predictions(other)
    rows = []
    print(f"{'config':48s} {'full capture':>13s} {'calibrated':>11s} {'diff':>7s}")
    for label, a in full.items():
        b = cal[label]
        diff = (b - a) / a * 100
        rows.append({"config": label, "full_tok_s": round(a, 4), "calibrated_tok_s": round(b, 4), "diff_pct": round(diff, 2)})
        print(f"{label:48s} {a:13.3f} {b:11.3f} {diff:+6.1f}%")
    absd = [abs(r["diff_pct"]) for r in rows]
    summary = {"configs": len(rows), "median_abs_diff_pct": round(statistics.median(absd), 2), "max_abs_diff_pct": round(max(absd), 2)}
    print(f"median |diff| {summary['median_abs_diff_pct']:.1f}%, max {summary['max_abs_diff_pct']:.1f}% over {len(rows)} configs")
    if args.json:
        Path(args.json).write_text(json.dumps({"plan": str(args.plan), "swaps": args.swap, "rows": rows, **summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
