"""Live validation of the two-process drafter/target pipeline (see simspec/live/pipeline_validate.py).

    python benchmarks/pipeline_validation.py benchmarks/pipeline/qwen-pipeline.toml [--predict-only] [--out DIR]

Writes <name>.csv and <name>.json (the columns of `simspec validate`, plus `overlap_calls`)
into --out (default: the plan's folder). Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from simspec.errors import InputError
from simspec.live.pipeline_validate import load_pipeline_plan, overlap_calls, predict, validate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--predict-only", action="store_true", help="simulate only (no models, no timing)")
    a = ap.parse_args()
    try:
        if a.predict_only:
            import pandas as pd

            plan = load_pipeline_plan(a.plan)
            rows = predict(plan, str(a.plan))
            print(pd.DataFrame(rows).to_string(index=False))
            return 0
        meta = validate(a.plan, a.out or a.plan.parent, "python " + shlex.join(sys.argv),
                        progress=lambda s: print(s, flush=True))
    except InputError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return 2
    ag = meta["agreement"]
    print(f"median |error| {ag.get('median_abs_error_pct')}%, max {ag.get('max_abs_error_pct')}%")
    for c in meta["overlap_calls"]:
        print(f"gamma {c['gamma']}: overlap pays? predicted {c['predicted_pays']}, measured "
              f"{c['measured_pays']} ({'agree' if c['agree'] else 'DISAGREE'})")
    print(f"wrote {meta['name']}.csv and {meta['name']}.json to {a.out or a.plan.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
