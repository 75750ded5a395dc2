"""One shot on a borrowed CUDA machine: random-weight profiles, a synthetic-acceptance serving
validation at batch 1..64 and a roofline fit, inside a time budget, into ONE output folder.

    benchmarks/gpu/run.sh OUT                 # on the GPU machine (see README.md beside this file)
    benchmarks/gpu/run.sh OUT --dry-run       # anywhere: tiny dims on CPU, the same steps (a test)

Why random weights: the borrowed machines have no network and take at most 64 MiB of files, so
no real weights come along; kernel timings depend on shapes, not weights
(simspec.models.random_weights). Why synthetic acceptance: random weights accept nothing, so the
live engine's accept/reject decisions are forced to the shipped trace's replay
(simspec.live.synthetic, plan key synthetic = "trace"), and the validation compares the
simulator's serving dynamics and costs with real kernels, batching and KV traffic at known
acceptance. Output text is meaningless.

Steps, each started only while the budget leaves room for it (a skipped step says why in
summary.json, which is rewritten after every step so that a kill keeps what was done):
  1. env.json                          torch, CUDA, device, cores
  2. profiles/<model>-bf16.parquet     Qwen2.5-Coder-0.5B and 1.5B dims (CUDA events on cuda)
  3. validation/                       `simspec validate` of a plan written here: target 1.5B,
                                       drafter 0.5B (gamma 4), forced to the trace's acceptance;
                                       batch 1 and serving at max_batch 1, 4, 16, 64 (closed loop)
  4. profiles/llama-3-8b-bf16.parquet  a Llama-3-8B-class config
  5. roofline_fit.json                 the catalog device's roofline fitted to each profile
  6. table.csv                         per profile: decode and verify ms, weight GB/s by batch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-bf16.parquet"
DRAFT_COLUMN = "qwen2.5-coder-0.5b"  # the trace's column of the 0.5B drafter's ranks
BATCHES = (1, 4, 16, 64)
DRY_BATCHES = (1, 2, 4)

# Tiny dims for --dry-run: the trace's vocabulary (its prompt ids must be valid), few layers.
DRY = {
    "dry-draft": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "tie_word_embeddings": True},
    "dry-target": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 64, "intermediate_size": 128,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "tie_word_embeddings": True},
}


@dataclass
class Budget:
    total_s: float
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.t0)


def grids(dry: bool):
    """The profile grid: batch up to 64 (the validation's), contexts to 2048; tiny on a dry run."""
    from simspec.profile.grid import Grid

    if dry:
        return Grid(batch=(1, 4), q=(1, 5), context=(32, 128), prefill_batch=(1, 2), prefill_len=(16, 64),
                    head_tokens=(1, 4), head_rows=(4096,), runs=1, long_s=1.0, long_runs=1)
    return Grid(batch=(1, 2, 4, 8, 16, 32, 64), q=(1, 2, 3, 5, 8, 16), context=(128, 512, 2048),
                prefill_batch=(1, 4, 16), prefill_len=(16, 64, 256, 1024), head_tokens=(1, 16, 64),
                head_rows=(4096, 32768), runs=3, long_s=1.0, long_runs=2, agree=0.03, max_runs=6)


class Run:
    """The output folder, its summary.json and the budget."""

    def __init__(self, out: Path, dry: bool, device: str, budget: Budget) -> None:
        self.out, self.dry, self.device, self.budget = out, dry, device, budget
        self.summary: dict = {"command": "benchmarks/gpu/run.sh " + shlex.join(sys.argv[1:]), "dry_run": dry,
                              "device": device, "budget_s": budget.total_s, "steps": []}

    def step(self, name: str, need_s: float, fn) -> bool:
        """Run `fn` when the budget has `need_s` left; record what happened either way."""
        rec: dict = {"step": name, "status": "skipped", "need_s": need_s}
        left = self.budget.left()
        if left < need_s:
            rec["reason"] = f"{left:.0f} s left of the budget, the step needs about {need_s:.0f} s"
        else:
            t = time.monotonic()
            print(f"[{self.budget.total_s - left:5.0f} s] {name} ...", flush=True)
            try:
                rec |= {"status": "done", **(fn() or {})}
            except Exception as exc:  # noqa: BLE001 - one failed step must not lose the others
                rec |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}
            rec["seconds"] = round(time.monotonic() - t, 1)
        self.summary["steps"].append(rec)
        self.write_summary()
        print(f"  {rec['status']}" + (f": {rec.get('reason') or rec.get('error')}" if rec["status"] != "done" else ""),
              flush=True)
        return rec["status"] == "done"

    def write_summary(self) -> None:
        self.summary["elapsed_s"] = round(self.budget.total_s - self.budget.left(), 1)
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1) + "\n")


def environment(run: Run) -> dict:
    import torch
    import transformers

    from simspec import __version__

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
           "simspec": __version__, "cuda": torch.version.cuda, "cores": os.cpu_count(),
           "platform": platform.platform(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "device": run.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    (run.out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
    return {"files": ["env.json"]}


def model_specs(run: Run) -> dict[str, str]:
    """name -> random-weight model spec (dry run: tiny config.json files written under configs/)."""
    if not run.dry:
        return {n: f"random:{n}" for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "llama-3-8b")}
    specs = {}
    for name, cfg in DRY.items():
        d = run.out / "configs" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
        specs[name] = f"random:{d}"
    return specs


def profile(run: Run, name: str, spec: str) -> dict:
    """A profile of `spec` (random weights) in bf16 on the run's device, under profiles/."""
    import gc

    import torch

    from simspec.models import load_model
    from simspec.profile.capture import run_capture
    from simspec.timing.protocol import Protocol

    lm = load_model(spec, dtype="bf16", device=run.device)
    out = run.out / "profiles" / f"{name}-bf16.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    command = f"benchmarks/gpu/run.py (simspec profile --model {spec} --dtype bf16 --device {run.device}, its GPU grid)"
    # The timing protocol (simspec.timing), sized to the script's budget: interleaved passes,
    # the fastest state per point; a borrowed GPU has no neighbour phases to wait out.
    proto = Protocol(min_passes=2, max_passes=3, budget_s=15.0) if run.dry else \
        Protocol(min_passes=4, max_passes=6, budget_s=60.0)
    path, seconds, res = run_capture(lm, grids(run.dry), out, threads, command, spec=spec, step=lambda s: None,
                                     proto=proto)
    info = {"model": name, "spec": spec, "weights_gb": round(lm.weights_bytes / 1e9, 3),
            "capture_s": round(seconds, 1), "protocol": res.summary(), "files": [str(p.relative_to(run.out)) for p in (path, path.with_suffix(".json"))]}
    del lm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return info


def plan_text(run: Run, specs: dict[str, str]) -> str:
    """The synthetic serving validation plan: 1.5B target, 0.5B drafter, the trace's acceptance."""
    target, draft = ("dry-target", "dry-draft") if run.dry else ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
    batches = DRY_BATCHES if run.dry else BATCHES
    new = 12 if run.dry else 64
    lines = [
        "# Written by benchmarks/gpu/run.py: random weights, acceptance forced to the trace's replay.",
        f'name = "{"dry" if run.dry else "gpu"}-synthetic"',
        f'target = "{specs[target]}"',
        f'trace = "{TRACE}"',
        f"prompts = {2 if run.dry else 4}",
        f"max_new_tokens = {new}",
        "[profiles]",
        f'"{target}" = {{ bf16 = "{run.out / "profiles" / f"{target}-bf16.parquet"}" }}',
        f'"{draft}" = {{ bf16 = "{run.out / "profiles" / f"{draft}-bf16.parquet"}" }}',
    ]
    common = [f'dtype = "bf16"', f'draft = "model:{specs[draft]}"', f'column = "{DRAFT_COLUMN}"', "gamma = 4",
              'synthetic = "trace"']
    lines += ["[[config]]", *common]
    for b in batches:
        lines += ["[[config]]", *common, f"max_batch = {b}", 'arrival = "closed"', f"requests = {max(2 * b, 4)}"]
    return "\n".join(lines) + "\n"


def validation(run: Run, specs: dict[str, str]) -> dict:
    """`simspec validate` of the plan, in a child process under the budget's time."""
    vdir = run.out / "validation"
    vdir.mkdir(parents=True, exist_ok=True)
    plan = vdir / "plan.toml"
    plan.write_text(plan_text(run, specs))
    # --allow-foreign-profile: the profiles were captured by this script on this machine moments
    # ago; a CPU-side machine identity must not refuse them
    cmd = [sys.executable, "-m", "simspec.cli", "validate", str(plan), "--out", str(vdir), "--device", run.device,
           "--allow-foreign-profile"] + (["--threads", "2"] if run.dry else [])
    timeout = max(10.0, run.budget.left() - (5 if run.dry else 60))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        code, so, se = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:
        code, so, se = "timeout", _text(exc.stdout), _text(exc.stderr) + f"\nkilled after {timeout:.0f} s"
    (vdir / "log.txt").write_text(f"$ {shlex.join(cmd)}\n{so}\n--- stderr ---\n{se}")
    if code != 0:
        raise RuntimeError(f"simspec validate exited {code}: {(se.strip().splitlines() or ['?'])[-1]}")
    name = "dry-synthetic" if run.dry else "gpu-synthetic"
    return {"command": shlex.join(cmd[1:]), "files": [f"validation/{name}.csv", f"validation/{name}.json",
                                                      "validation/plan.toml", "validation/log.txt"]}


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def catalog_device(run: Run) -> str:
    import torch

    if not run.device.startswith("cuda"):
        return "xeon-amx-2c"
    name = torch.cuda.get_device_name(0).upper()
    return "h200" if "H200" in name else "a100-80g" if "A100" in name else "l40s" if "L40S" in name \
        else "l4" if " L4" in name else "h100-sxm"


def roofline_fit(run: Run) -> dict:
    from simspec.devices import catalog
    from simspec.devices.fit import fit_profile

    base = catalog.get(catalog_device(run))
    fits = {}
    for p in sorted((run.out / "profiles").glob("*.parquet")):
        fits[p.stem] = fit_profile(p, base).as_dict()
    if not fits:
        raise RuntimeError("no profile to fit")
    (run.out / "roofline_fit.json").write_text(json.dumps({"device": base.name, "fits": fits}, indent=1, default=str) + "\n")
    return {"device": base.name, "files": ["roofline_fit.json"]}


def table(run: Run) -> dict:
    """Per profile and batch: decode (q 1) and verify (q 5) ms at the middle context, and the
    weight bandwidth a decode achieves (weights bytes / decode time), gpt-fast's figure."""
    import pandas as pd

    rows = []
    for p in sorted((run.out / "profiles").glob("*.parquet")):
        meta = json.loads(p.with_suffix(".json").read_text())
        df = pd.read_parquet(p)
        dec = df[df.kind == "decode"]
        ctx = sorted(dec.context.unique())[len(dec.context.unique()) // 2]
        for b in sorted(dec.batch.unique()):
            at = dec[(dec.batch == b) & (dec.context == ctx)].set_index("q").total_s
            d1, v5 = at.get(1), at.get(5)
            rows.append({"model": meta["model"], "device": meta.get("device_name"), "batch": int(b), "context": int(ctx),
                         "decode_ms": round(1e3 * d1, 3) if d1 is not None else None,
                         "verify5_ms": round(1e3 * v5, 3) if v5 is not None else None,
                         "weight_gb_s": round(meta["weights_bytes"] / d1 / 1e9, 1) if d1 else None})
    if not rows:
        raise RuntimeError("no profile to tabulate")
    pd.DataFrame(rows).to_csv(run.out / "table.csv", index=False)
    return {"files": ["table.csv"], "rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the one output folder (new or empty)")
    ap.add_argument("--dry-run", action="store_true", help="tiny dims on CPU: every step, in about a minute")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 480; dry run 240)")
    ap.add_argument("--device", default=None, help="default cuda (dry run: cpu)")
    a = ap.parse_args(argv)
    out: Path = a.out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: {a.out}: the output folder must be new or empty", file=sys.stderr)
        return 2
    if a.budget_s is not None and not 0 < a.budget_s <= 3600:
        print(f"error: --budget-s: {a.budget_s} not in (0, 3600]", file=sys.stderr)
        return 2
    device = a.device or ("cpu" if a.dry_run else "cuda")
    budget = Budget(a.budget_s or (240.0 if a.dry_run else 480.0))
    if not a.dry_run:
        from simspec.profile.timer import cuda_unavailable

        why = cuda_unavailable(device)
        if why:
            print(f"error: --device: {why} (use --dry-run to run on CPU)", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    import torch

    if a.dry_run:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    run = Run(out, a.dry_run, device, budget)
    specs = model_specs(run)
    small, large = ("dry-draft", "dry-target") if a.dry_run else ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
    # need_s: what each step took in its slowest test, with room (dry run: seconds on 2 CPU cores)
    run.step("env", 1, lambda: environment(run))
    ok = run.step(f"profile {small}", 10 if a.dry_run else 60, lambda: profile(run, small, specs[small]))
    ok &= run.step(f"profile {large}", 10 if a.dry_run else 90, lambda: profile(run, large, specs[large]))
    if ok:
        run.step("synthetic serving validation", 30 if a.dry_run else 150, lambda: validation(run, specs))
    else:
        run.summary["steps"].append({"step": "synthetic serving validation", "status": "skipped",
                                     "reason": "a profile it prices with is missing"})
    if not a.dry_run:
        run.step("profile llama-3-8b", 120, lambda: profile(run, "llama-3-8b", specs["llama-3-8b"]))
    run.step("roofline fit", 5, lambda: roofline_fit(run))
    run.step("table", 1, lambda: table(run))
    run.write_summary()
    failed = [s["step"] for s in run.summary["steps"] if s["status"] != "done"]
    print(f"wrote {out} ({len(run.summary['steps']) - len(failed)} steps done"
          + (f"; not done: {', '.join(failed)}" if failed else "") + ")")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
