"""Every figure the shipped files predict, as one JSON document: to prove a refactor changed none.

    python benchmarks/numbers_snapshot.py --out /tmp/before.json      # on the old commit
    python benchmarks/numbers_snapshot.py --out /tmp/after.json       # on the new one
    python benchmarks/numbers_snapshot.py --compare /tmp/before.json /tmp/after.json

Covered: `simspec simulate --json` of every shipped scenario (studies/*.toml that are
scenarios), `simspec study` of every shipped study (trials table, best.toml, engine exports,
summary.md), and every config of every validation plan predicted (`validate --predict-only`,
at full precision). Wall-clock fields (wall_s, durations, dates, worker pids) are dropped: they are the only
figures that may differ between two runs of the same code.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIMSPEC = str(Path(sys.executable).parent / "simspec")
CLOCK = {"wall_s", "duration_s", "datetime_start", "datetime_complete", "date", "worker_pid"}


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if k not in CLOCK}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return x


def _stable(text: str) -> str:
    """Knob importances that tie (0.00) come in no fixed order: sort each run of '- k: v' lines."""
    lines, out, run = text.splitlines(), [], []
    for line in lines + [""]:
        if line.startswith("- ") and line.rsplit(": ", 1)[-1].replace(".", "").isdigit():
            run.append(line)
            continue
        out += sorted(run) + [line]
        run = []
    return "\n".join(out[:-1])


def _kind(path: Path) -> str:
    import tomllib

    data = tomllib.loads(path.read_text())
    if "config" in data and "profiles" in data:
        return "plan"
    if "search" in data or "scenario" in data:
        return "study"
    return "scenario"


def scenarios(files: list[Path]) -> dict:
    out = {}
    for f in files:
        r = subprocess.run([SIMSPEC, "simulate", str(f), "--json"], cwd=ROOT, capture_output=True, text=True)
        out[str(f.relative_to(ROOT))] = _clean(json.loads(r.stdout)) if r.returncode == 0 else {"rc": r.returncode, "err": r.stderr.strip()[-300:]}
    return out


def studies(files: list[Path]) -> dict:
    import pandas as pd

    out = {}
    for f in files:
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([SIMSPEC, "study", str(f), "--out", tmp, "--no-progress"], cwd=ROOT,
                               capture_output=True, text=True)
            res: dict = {"rc": r.returncode}
            d = Path(tmp)
            if (d / "trials.parquet").exists():
                df = pd.read_parquet(d / "trials.parquet")
                df = df.drop(columns=[c for c in df.columns if c in CLOCK], errors="ignore")
                res["trials"] = _clean(json.loads(df.to_json(orient="records", double_precision=15)))
            for name in sorted(p.name for p in d.iterdir()):
                if name.endswith(".csv"):
                    df = pd.read_csv(d / name)
                    df = df.drop(columns=[c for c in df.columns if c in CLOCK], errors="ignore")
                    res[name] = _clean(json.loads(df.to_json(orient="records", double_precision=15)))
                elif name.endswith((".toml", ".json", ".txt", ".md", ".yaml", ".sh")):
                    text = (d / name).read_text()
                    text = re.sub(r'"finished": "[^"]*"', '"finished": "<clock>"', text)  # COMPLETE.json's date
                    res[name] = _stable(text.replace(tmp, "<out>"))
            out[str(f.relative_to(ROOT))] = res
    return out


def plans(files: list[Path]) -> dict:
    from simspec.sim.run import simulate
    from simspec.validation.plan import load_plan
    from simspec.validation.scenarios import scenario_for

    out = {}
    for f in files:
        rel = str(f.relative_to(ROOT))
        plan = load_plan(f)
        out[rel] = {c.label(): _clean(simulate(scenario_for(plan, c, rel), rel).summary) for c in plan.config}
    return out


def snapshot() -> dict:
    files = sorted((ROOT / "studies").rglob("*.toml"))
    files = [f for f in files if "runs" not in f.parts]
    by = {"scenario": [], "study": [], "plan": []}
    for f in files:
        by[_kind(f)].append(f)
    return {"scenarios": scenarios(by["scenario"]), "studies": studies(by["study"]), "plans": plans(by["plan"])}


def compare(a: dict, b: dict, path: str = "") -> list[str]:
    diffs = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'after' if k not in a else 'before'}")
            else:
                diffs += compare(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diffs += compare(x, y, f"{path}[{i}]")
    elif a != b:
        diffs.append(f"{path}: {str(a)[:200]!r} -> {str(b)[:200]!r}")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the snapshot here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diffs = compare(a, b)
        n = sum(len(v) for sec in a.values() for v in sec.values())
        for d in diffs:
            print(d)
        print(f"{len(diffs)} differences over {sum(len(s) for s in a.values())} files ({n} top-level entries)")
        sys.exit(1 if diffs else 0)
    snap = snapshot()
    text = json.dumps(snap, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
