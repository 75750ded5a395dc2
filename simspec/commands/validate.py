"""`simspec validate`: predicted vs measured tokens/s for the configs of a validation plan."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """
Examples:

  simspec validate studies/validation/qwen1.5b-humaneval.toml
  simspec validate studies/validation/qwen1.5b-humaneval.toml --configs 1,4 --out /tmp/val
  simspec validate studies/validation/qwen1.5b-humaneval.toml --predict-only
  simspec validate studies/validation/qwen-pipeline.toml --predict-only
  simspec validate my-plan-with-new-profiles.toml --measured studies/validation/qwen1.5b-humaneval.json --out /tmp/val
"""


def validate_cmd(
    plan_file: Path = typer.Argument(..., help="validation plan (TOML): target, trace, profiles, [[config]]"),
    configs: Optional[str] = typer.Option(None, "--configs", help="subset: 1-based indices or labels, comma-separated"),
    out: Path = typer.Option(Path("studies/validation"), "--out",
                             help="folder for <name>.csv, .png, .json and .html, then <name>.COMPLETE.json (the set is whole)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: the plan's, else torch's)"),
    predict_only: bool = typer.Option(False, "--predict-only", help="simulate and print; no live runs, nothing written"),
    allow_foreign_profile: bool = typer.Option(
        False, "--allow-foreign-profile", help="measure even when a profile was captured on another machine"),
    measured: Optional[Path] = typer.Option(
        None, "--measured", help="no live runs: price this earlier result's measurements (<name>.json) with the plan's profiles"),
    rounds: Optional[int] = typer.Option(
        None, "--rounds", help="live rounds, every config once per round in a seeded random order (default: the plan's `rounds`, else 1)"),
    steadiness: float = typer.Option(
        0.0, "--steadiness", help="seconds of a GEMM/GEMV steadiness probe just before and just after the live runs, "
                                  "kept in the JSON (0: none)"),
) -> None:
    """Run each config live on this device and simulate it on the same prompts; write the table.

    Every config decodes the plan's traced prompts (their own token ids) at batch 1, greedily,
    and is simulated on the plan's profiles replaying those sequences' acceptance. Printed and
    written: predicted and measured tokens/s and tokens per round per config, then median and
    max |error|, Spearman's rho of the ranking and the regret of the simulator's pick.
    A serving config (max_batch, arrival, ...) is served live with continuous batching and
    simulated with the same policy, requests and arrival times: throughput, TTFT, TPOT and
    end-to-end latency (p50, p99), mean batch and tokens per round, predicted vs measured.
    A pipeline config (pipeline = "sequential" or "overlap") runs the drafter and the target in
    two processes on two cores and is simulated on two devices: tokens/s, tokens per round, and
    per gamma whether overlapping pays, predicted vs measured.
    With --rounds R every config runs R times, each round in its own seeded random order; a
    closed-loop serving config whose iterations repeat takes each iteration's fastest time across
    rounds, a batch-1 config whose timed calls repeat each call's fastest time (the raw median
    kept beside it), other configs the median of their rounds; each keeps its split-half noise floor.
    Serving configs get a decomposed error report (acceptance, serving dynamics, cost per
    iteration, end to end beside the noise floor) in the CSV, the JSON and <name>-decomposition.png.
    """
    from simspec import machine
    from simspec.validation.run import (check_machines, load_inputs, load_models, predict, read_measured, reprice,
                                        speed_checks, trace_numerics, validate)

    from simspec import outputs

    inp = load_inputs(plan_file, configs)  # every input error before any model loads
    if rounds is not None and not 1 <= rounds <= 1000:
        from simspec.errors import InputError

        raise InputError(None, "--rounds", f"{rounds} must be 1..1000")
    if not 0 <= steadiness <= 600:
        from simspec.errors import InputError

        raise InputError(None, "--steadiness", f"{steadiness} must be 0..600 seconds")
    if not predict_only:  # and the output folder before any work
        outputs.check_dir("--out", out)
    marker = f"{inp.plan.name}.{outputs.MARKER}"  # one folder holds many plans' sets: one marker each
    # a profile of another machine prices another machine: warn when predicting or repricing
    # (--measured: against the machine those measurements name, when they name one), refuse to measure
    old = read_measured(measured) if measured is not None else None
    here = old.get("machine") if old is not None and isinstance(old.get("machine"), dict) else None
    one_row = None
    if not predict_only and old is None:  # measuring here: the profiles' one-row linears must be ours
        from simspec.models.gemv import one_row_path as one_row
    for line in check_machines(inp, allow_foreign=allow_foreign_profile or predict_only or old is not None, here=here,
                               one_row=one_row):
        typer.echo(f"warning: {line}", err=True)
    if predict_only:
        rows = predict(inp)
        width = max(32, *(len(r.label) for r in rows))
        for r in rows:
            typer.echo(f"{r.label:<{width}} predicted {r.predicted.tok_s:8.3f} tok/s  "
                       f"{r.predicted.tokens_per_round:.3f} tokens/round")
        piped = [r.record() for r in rows if r.kind == "pipeline"]
        if piped:
            import pandas as pd

            from simspec.validation.compare import overlap_calls

            for c in overlap_calls(pd.DataFrame(piped)):
                typer.echo(f"{c['dtype']} {c['draft']} g{c['gamma']}: overlap pays? predicted "
                           f"{'yes' if c['predicted_pays'] else 'no'}")
        return
    from simspec.report.validation import write

    if measured is not None:
        outputs.begin(out, marker)
        res = reprice(inp, measured, old, out, "simspec " + " ".join(sys.argv[1:]))
        _print_all(res)
        png, page = write(res, out)
        csv, js = res.written
        outputs.finish(out, _set(res, out), "simspec " + " ".join(sys.argv[1:]), marker)
        typer.echo(f"wrote {csv}, {png}, {js} and {page} (measurements of {measured})")
        return
    models = load_models(inp, device, threads)  # every model error before any live run
    import torch

    plan = inp.plan
    typer.echo(f"validating {len(inp.configs)} configs of {plan.target} on {len(inp.prompts)} traced prompts "
               f"x <= {plan.max_new_tokens} tokens ({device}, {torch.get_num_threads()} threads, "
               f"{machine.label(machine.here())})")
    numerics = trace_numerics(inp)["note"]
    if numerics:
        typer.echo(f"note: {numerics}", err=True)
    # same name and ISA is not same speed: time a few points against each profile first
    checks = speed_checks(inp, models)
    for c in checks:
        if c.off:
            typer.echo(f"warning: {c.line()}", err=True)
        else:
            typer.echo(c.summary())
    t0 = time.perf_counter()

    def progress(at, row, m) -> None:
        where = f"[round {at.round}/{at.rounds}, {at.position}/{at.configs}] " if at.rounds > 1 else \
            f"[{at.position}/{at.configs}] "
        if m is None:
            typer.echo(f"{where}{row.label} ...", nl=False)
            return
        p = row.predicted
        typer.echo(f" measured {m.tok_s:.3f} tok/s, predicted {p.tok_s:.3f} "
                   f"({(p.tok_s - m.tok_s) / m.tok_s * 100:+.1f}%), "
                   f"tokens/round {m.tokens_per_round:.2f} vs {p.tokens_per_round:.2f}  "
                   f"[{time.perf_counter() - t0:.0f} s]")

    probe = None
    if steadiness > 0:
        from simspec.timing.steadiness import probe as steady_probe

        def probe() -> dict:
            typer.echo(f"machine steadiness: {steadiness:g} s of GEMM / GEMV windows")
            got = steady_probe(steadiness, inp.plan.threads or 2, say=lambda r: typer.echo(
                f"  {r['time']}  GEMM {r['gemm_gflop_s']:.1f} GFLOP/s   GEMV {r['gemv_gb_s']:.1f} GB/s"))
            s = got["summary"]
            typer.echo(f"  spread GEMM {s['gemm_gflop_s']['spread']}x, GEMV {s['gemv_gb_s']['spread']}x")
            return got

    outputs.begin(out, marker)
    res = validate(inp, models, out, "simspec " + " ".join(sys.argv[1:]), progress, checks, rounds, probe)
    _print_all(res)
    png, page = write(res, out)
    csv, js = res.written
    outputs.finish(out, _set(res, out), "simspec " + " ".join(sys.argv[1:]), marker)
    typer.echo(f"wrote {csv}, {png}, {js} and {page}")


def _set(res, out: Path) -> list[str]:
    """The files of one plan's result, as COMPLETE.json lists them."""
    name = res.plan.name
    pngs = [f"{name}{s}.png" for s in ("", "-serving", "-decomposition", "-pipeline") if (out / f"{name}{s}.png").exists()]
    return [p.name for p in res.written] + pngs + [f"{name}.html"]


def _print_all(res) -> None:
    if res.agreement is not None:
        _print_table(res.table, res.agreement)
    if res.serving is not None:
        _print_serving(res.serving, res.serving_agreement)
        _print_crossover((res.meta.get("serving") or {}).get("crossover"))
        block = (res.meta.get("serving") or {}).get("decomposition")
        if block:
            _print_decomposition(block)
    if res.pipeline is not None:
        _print_pipeline(res.pipeline, res.pipeline_agreement, res.overlap_calls)


def _print_pipeline(df, ag, calls: list[dict]) -> None:
    """Pipeline configs: predicted / measured per config, the agreement, and per gamma whether
    overlapping pays, predicted and measured."""
    typer.echo("")
    typer.echo("pipeline (drafter and target in two processes, one core each): tok/s")
    typer.echo(f"{'config':<40} {'predicted':>10} {'measured':>10} {'error':>8}   tokens/round pred / meas")
    for _, r in df.iterrows():
        typer.echo(f"{r['config']:<40} {r['predicted_tok_s']:10.3f} {r['measured_tok_s']:10.3f} "
                   f"{r['error_pct']:+7.1f}%   {r['predicted_tokens_per_round']:.3f} / "
                   f"{r['measured_tokens_per_round']:.3f}")
    typer.echo(f"median |error| {ag.median_abs_error_pct:.1f}%   max |error| {ag.max_abs_error_pct:.1f}%   "
               f"Spearman rho {ag.spearman_rho:.3f}   regret {ag.regret_pct:.1f}%")
    for c in calls:
        typer.echo(f"{c['dtype']} {c['draft']} g{c['gamma']}: overlap pays? predicted {c['predicted_pays']}, "
                   f"measured {c['measured_pays']} ({'agree' if c['agree'] else 'DISAGREE'})")


SERVING_COLUMNS = (("tok_s", "tok/s", "{:.2f}"), ("ttft_p50_s", "TTFT p50", "{:.3f}"),
                   ("ttft_p99_s", "TTFT p99", "{:.3f}"), ("tpot_p50_s", "TPOT p50", "{:.4f}"),
                   ("tpot_p99_s", "TPOT p99", "{:.4f}"), ("e2e_p50_s", "e2e p50", "{:.3f}"),
                   ("e2e_p99_s", "e2e p99", "{:.3f}"), ("mean_batch", "batch", "{:.2f}"),
                   ("tokens_per_round", "tok/round", "{:.3f}"))


def _print_serving(df, ag: dict) -> None:
    """Serving configs: predicted / measured (error) per metric, then the agreement per metric."""
    typer.echo("")
    typer.echo("serving (continuous batching): predicted / measured (error %); seconds unless said")
    for _, r in df.iterrows():
        typer.echo(f"{r['config']}")
        cells = []
        for m, title, f in SERVING_COLUMNS:
            err = r["error_pct"] if m == "tok_s" else r[f"error_{m}_pct"]
            cells.append(f"{title} {f.format(r[f'predicted_{m}'])} / {f.format(r[f'measured_{m}'])} ({err:+.1f}%)")
        typer.echo("  " + "   ".join(cells[:4]))
        typer.echo("  " + "   ".join(cells[4:]))
    per = ag["metrics"]
    typer.echo("median / max |error| over " + f"{ag['n']} serving configs: "
               + ", ".join(f"{t} {per[m]['median_abs_error_pct']:.1f}% / {per[m]['max_abs_error_pct']:.1f}%"
                           for m, t, _ in SERVING_COLUMNS))
    typer.echo(f"serving throughput: Spearman rho {ag['spearman_rho']:.3f}   regret {ag['regret_pct']:.1f}% "
               f"(predicted best {ag['predicted_best']!r}, measured best {ag['measured_best']!r})")


def _print_crossover(c: dict | None) -> None:
    """Per batch size: the best speculative config's speed-up over plain, predicted / measured,
    and where speculation stops paying."""
    if not c:
        return
    typer.echo("")
    typer.echo("does speculation pay? best speculative config / plain, per max_batch (closed loop)")
    for r in c["batches"]:
        meas = f" / {r['measured_speedup']:.3f}x measured" if "measured_speedup" in r else ""
        typer.echo(f"  max_batch {r['max_batch']:>3}: {r['predicted_speedup']:.3f}x predicted{meas}")

    def at(b) -> str:
        return "never (up to the largest batch)" if b is None else f"max_batch {b}"

    line = f"stops paying at: predicted {at(c['predicted_stops_at'])}"
    if "measured_stops_at" in c:
        line += (f", measured {at(c['measured_stops_at'])} "
                 f"({'within one step' if c['within_one_step'] else 'MORE than one step apart'})")
    typer.echo(line)


def _print_decomposition(block: dict) -> None:
    """Per serving config the decomposed error: (a) acceptance, (b) dynamics, (c) cost per phase
    with its noise, (d) end to end with the noise floor; then the plan's medians."""
    def pct(x) -> str:
        return "   n/a" if x is None or x != x else f"{x:+6.2f}%"

    typer.echo("")
    typer.echo("decomposed error (a) tokens/round (b) policy on live times: tok/s TTFT50 TPOT50 "
               "(c) cost prefill / round [noise] (d) tok/s [noise floor]")
    for label, d in block["configs"].items():
        ph, e = d["cost"]["phase"], d["end_to_end"]["tok_s"]
        cost = " / ".join(f"{pct(ph[p]['error_pct'])} [{ph[p]['noise_pct']:.1f}%]" if p in ph else "n/a"
                          for p in ("prefill", "round"))
        typer.echo(f"{label}  ({d['rounds']} rounds, {d['method']})")
        typer.echo(f"  (a) {pct(d['acceptance']['error_pct'])}  (b) "
                   + " ".join(pct(d["dynamics"][k]) for k in ("tok_s", "ttft_p50_s", "tpot_p50_s"))
                   + f"  (c) {cost}  (d) {pct(e['error_pct'])} [{e['noise_pct']:.1f}%]")
        if d.get("note"):
            typer.echo(f"  note: {d['note']}")
    dyn = block["plan"]["dynamics"]["closed_loop"]
    typer.echo(f"serving dynamics over {block['plan']['closed_loop_configs']} closed-loop configs, median |error|: "
               + ", ".join(f"{t} {dyn[k]['median_abs_error_pct']:.3f}%"
                           for k, t in (("tok_s", "tok/s"), ("ttft_p50_s", "TTFT p50"), ("tpot_p50_s", "TPOT p50"))))


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
