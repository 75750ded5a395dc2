"""`simspec validate`: predicted vs measured tokens/s for the configs of a validation plan."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from simspec.errors import InputError

EXAMPLES = """
Examples:

  simspec validate studies/validation/qwen1.5b-humaneval.toml
  simspec validate studies/validation/qwen1.5b-humaneval.toml --configs 1,4 --out /tmp/val
  simspec validate studies/validation/qwen1.5b-humaneval.toml --predict-only
"""


def validate_cmd(
    plan_file: Path = typer.Argument(..., help="validation plan (TOML): target, trace, profiles, [[config]]"),
    configs: Optional[str] = typer.Option(None, "--configs", help="subset: 1-based indices or labels, comma-separated"),
    out: Path = typer.Option(Path("studies/validation"), "--out", help="folder for <name>.csv, .png and .json"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: the plan's, else torch's)"),
    predict_only: bool = typer.Option(False, "--predict-only", help="simulate and print; no live runs, nothing written"),
) -> None:
    """Run each config live on this device and simulate it on the same prompts; write the table.

    Every config decodes the plan's traced prompts (their own token ids) at batch 1, greedily,
    and is simulated on the plan's profiles replaying those sequences' acceptance. Printed and
    written: predicted and measured tokens/s and tokens per round per config, then median and
    max |error|, Spearman's rho of the ranking and the regret of the simulator's pick.
    """
    from simspec.sim.run import simulate
    from simspec.validation.live import load_prompts
    from simspec.validation.plan import load_plan, scenario_for, select

    file = str(plan_file)
    plan = load_plan(plan_file)
    chosen = select(plan, configs, file)
    trace, prompts, traced = load_prompts(plan, file)
    scenarios = [scenario_for(plan, c, file) for c in chosen]  # every input error before any live run
    models = None
    if not predict_only:  # load every model first: a wrong model fails before anything runs
        import torch

        from simspec.validation.live import Models, check_target

        n_threads = threads or plan.threads
        if n_threads is not None:
            if n_threads < 1:
                raise InputError(None, "--threads", f"{n_threads} must be >= 1")
            torch.set_num_threads(n_threads)
        models = Models(device)
        for cfg in chosen:
            check_target(trace, models.get(plan.target, cfg.dtype), file)
            if cfg.kind == "model":
                models.get(cfg.arg, cfg.dtype)
    rows = []
    for cfg, sc in zip(chosen, scenarios):
        s = simulate(sc, file).summary
        rows.append({"config": cfg.label(), "dtype": cfg.dtype, "draft": cfg.draft, "gamma": cfg.gamma,
                     "tree": "-".join(map(str, cfg.tree)) if cfg.tree else "", "vocab": cfg.vocab or "",
                     "predicted_tok_s": s["throughput_tok_s"],
                     "predicted_tokens_per_round": s["mean_tokens_per_round"],
                     **{f"predicted_{k}_s": s[f"phase_{k}_s"] for k in ("prefill", "draft", "verify")}})
    if predict_only:
        for r in rows:
            typer.echo(f"{r['config']:<32} predicted {r['predicted_tok_s']:8.3f} tok/s  "
                       f"{r['predicted_tokens_per_round']:.3f} tokens/round")
        return

    from simspec.validation.compare import agreement, error_table
    from simspec.validation.live import environment, measure
    from simspec.validation.plot import scatter

    typer.echo(f"validating {len(chosen)} configs of {plan.target} on {len(prompts)} traced prompts "
               f"x <= {plan.max_new_tokens} tokens ({device}, {torch.get_num_threads()} threads)")
    t0 = time.perf_counter()
    for i, (cfg, row) in enumerate(zip(chosen, rows), 1):
        typer.echo(f"[{i}/{len(chosen)}] {cfg.label()} ...", nl=False)
        m = measure(plan, cfg, models, trace, prompts, traced, file)
        row.update(m)
        err = (row["predicted_tok_s"] - m["measured_tok_s"]) / m["measured_tok_s"] * 100
        typer.echo(f" measured {m['measured_tok_s']:.3f} tok/s, predicted {row['predicted_tok_s']:.3f} "
                   f"({err:+.1f}%), tokens/round {m['measured_tokens_per_round']:.2f} vs "
                   f"{row['predicted_tokens_per_round']:.2f}  [{time.perf_counter() - t0:.0f} s]")
    df = error_table(rows)
    ag = agreement(df)
    _print_table(df, ag)
    out.mkdir(parents=True, exist_ok=True)
    csv, png, js = (out / f"{plan.name}{ext}" for ext in (".csv", ".png", ".json"))
    _atomic(csv, df.to_csv(index=False, float_format="%.4f"))
    scatter(df, png, f"{plan.name}: simspec predicted vs measured ({len(df)} configs)")
    meta = {"plan": file, "name": plan.name, "command": "simspec " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(time.perf_counter() - t0, 1), "prompts": len(prompts),
            "max_new_tokens": plan.max_new_tokens, "sequences": plan.seqs(), "environment": environment(models),
            "inputs": _provenance(plan, file), "agreement": ag.as_dict(),
            "rows": json.loads(df.to_json(orient="records"))}
    _atomic(js, json.dumps(meta, indent=1) + "\n")
    typer.echo(f"wrote {csv}, {png} and {js}")


def _provenance(plan, file: str) -> dict:
    """sha256 and capture date of the trace and every profile the predictions used."""
    import hashlib

    from simspec.config import resolve_data_path

    def one(rel: str) -> dict:
        p = Path(resolve_data_path(rel, file))
        side = p.with_suffix(".json")
        date = json.loads(side.read_text()).get("date") if side.exists() else None
        return {"path": rel, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "date": date}

    return {"trace": one(plan.trace),
            "profiles": {m: {d: one(f) for d, f in by.items()} for m, by in plan.profiles.items()}}


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _print_table(df, ag) -> None:
    typer.echo("")
    typer.echo(f"{'config':<32} {'predicted':>10} {'measured':>10} {'error':>8}   tokens/round pred / meas")
    for _, r in df.iterrows():
        typer.echo(f"{r['config']:<32} {r['predicted_tok_s']:10.3f} {r['measured_tok_s']:10.3f} "
                   f"{r['error_pct']:+7.1f}%   {r['predicted_tokens_per_round']:.3f} / {r['measured_tokens_per_round']:.3f}")
    typer.echo("")
    typer.echo("seconds by phase, predicted / measured (the live engine's 'other': acceptance, KV commit, Python)")
    typer.echo(f"{'config':<32} {'prefill':>15} {'draft':>15} {'verify':>15} {'other':>7}")
    for _, r in df.iterrows():
        cells = [f"{r[f'predicted_{k}_s']:.1f} / {r[f'measured_{k}_s']:.1f}" for k in ("prefill", "draft", "verify")]
        typer.echo(f"{r['config']:<32} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {r['measured_other_s']:7.1f}")
    typer.echo("")
    typer.echo(f"median |error| {ag.median_abs_error_pct:.1f}%   max |error| {ag.max_abs_error_pct:.1f}%   "
               f"Spearman rho {ag.spearman_rho:.3f}   regret {ag.regret_pct:.1f}% "
               f"(predicted best {ag.predicted_best!r}, measured best {ag.measured_best!r})")


def register(app: typer.Typer) -> None:
    app.command("validate", epilog=EXAMPLES)(validate_cmd)
