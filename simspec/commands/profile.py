"""`simspec profile`: time a model's phases on a device, or check a profile against live timings."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from simspec.errors import InputError


class _LineProgress:
    """Progress for a non-terminal (log file, CI): one line every ~10% of the points."""

    def __init__(self, total: int, label: str) -> None:
        import time

        self.total, self.label, self.done, self.t0 = total, label, 0, time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, _desc: str, total: int) -> int:
        return 0

    def update(self, _task: int, advance: int = 1, description: str = "") -> None:
        import time

        self.done += advance
        if self.done == self.total or self.done % max(self.total // 10, 1) == 0:
            el = time.perf_counter() - self.t0
            print(f"{self.label}: {self.done}/{self.total} points, {el:.0f} s ({description})",
                  flush=True)


def _progress(total: int, label: str):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    if not Console().is_terminal:
        return _LineProgress(total, label)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.description}"), transient=False)


def _setup_torch(threads: int) -> None:
    import torch

    from simspec.models.allocator import retain_freed_memory

    if threads < 1:
        raise InputError(None, "--threads", f"{threads} must be >= 1")
    torch.set_num_threads(threads)
    retain_freed_memory()


def _check_out(out: Path, kernels: bool) -> None:
    """The profile, its sidecar (and kernel table) can be written: before minutes of timing."""
    from simspec.outputs import check_file

    for p in (out, out.with_suffix(".json")) + ((out.with_name(out.stem + ".kernels.parquet"),) if kernels else ()):
        check_file("--out", p)


def profile_cmd(
    model: Optional[str] = typer.Option(None, "--model", help="known name, GGUF file, HF dir or id"),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N"),
    dtype: str = typer.Option("bf16", help="bf16 or fp32"),
    threads: int = typer.Option(2, help="torch CPU threads (recorded in the sidecar)"),
    out: Optional[Path] = typer.Option(None, help="default: profiles/<machine>/<model>-<dtype>.parquet (e.g. intel-xeon, nvidia-h200)"),
    quick: bool = typer.Option(False, "--quick", help="a small grid (tests, smoke runs)"),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", help="drop grid batch sizes above N (compute-bound fp32 on CPU: 4)"),
    max_prefill_batch: Optional[int] = typer.Option(
        None, "--max-prefill-batch",
        help="also time prefills of up to N prompts at once (powers of two above the grid's 4; "
             "a serving run at max_batch N admits that many together; default: priced by a fitted form)"),
    max_q: Optional[int] = typer.Option(
        None, "--max-q", help="time query lengths only up to the grid's first at or above N (a plan's largest "
        "gamma + 1: a capture fitted to one plan)"),
    also_q: Optional[str] = typer.Option(
        None, "--q", help="also time these query lengths, comma-separated: a plan's verify sizes the grid "
        "lacks (a 2-2-1 tree verifies 11; CPU GEMMs are not monotone in rows, so 11 is not between 8 and 12)"),
    max_context: Optional[int] = typer.Option(
        None, "--max-context", help="time cached contexts only up to the grid's first at or above N"),
    max_prefill_len: Optional[int] = typer.Option(
        None, "--max-prefill-len", help="time prompt lengths only up to the grid's first at or above N"),
    kernels: bool = typer.Option(False, "--kernels", help="also save a per-operator table"),
    check: Optional[Path] = typer.Option(None, "--check", help="check this profile live"),
    calibrate: Optional[Path] = typer.Option(
        None, "--calibrate", help="refit this profile to this machine from ~1 minute of timings; writes --out"),
    points: int = typer.Option(30, help="--check: random off-grid points"),
    repeats: Optional[int] = typer.Option(
        None, help="--check: exactly this many timing-protocol passes (default: until the halves agree)"),
    seed: int = typer.Option(0, help="random seed of --check's points and of the passes' order"),
    greedy_tokens: int = typer.Option(64, help="--check: tokens of the live greedy decode"),
    passes: Optional[int] = typer.Option(
        None, "--passes", help="timing protocol: at most this many interleaved passes over the points "
        "(default: capture 8, --quick 6, --check 10, --calibrate 12)"),
    min_passes: Optional[int] = typer.Option(
        None, "--min-passes", help="timing protocol: passes before the halves' agreement may stop it (default 4)"),
    budget_s: Optional[float] = typer.Option(
        None, "--budget-s", help="timing protocol: stop before a pass would end past this many seconds "
        "(default: capture 1800, --quick 60, --check 900, --calibrate 90)"),
    min_seconds: Optional[float] = typer.Option(
        None, "--min-seconds", help="timing protocol: agreement counts only after the passes span this long, "
        "longer than the host's slow phases (default: capture and --check 120, --calibrate 40, --quick 0)"),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", help="timing protocol: stop when odd and even passes' fastest times disagree by at "
        "most this (relative) at the median point (default 0.02) ..."),
    tolerance_max: Optional[float] = typer.Option(
        None, "--tolerance-max", help="... and by at most this at the worst point (default 0.05)"),
    merge: Optional[List[Path]] = typer.Option(
        None, "--merge", help="merge captures of one model on this machine (repeat: --merge A --merge B --out C): "
        "per point the fastest run of all their passes"),
) -> None:
    """Profile a model (Parquet + JSON sidecar), or --check FILE: live holdout error, or
    --calibrate FILE --out NEW: the profile refitted to this machine. Every timing runs the
    timing protocol: interleaved passes over the points, the fastest per point, until odd and
    even passes agree within --tolerance or --budget-s ends (the output says which). --merge A
    --merge B --out C: two captures (say, one stopped by its budget and one taken later) as one
    profile, each point's fastest run of all their passes.

    Example: simspec profile --model smollm2-135m --dtype fp32 --max-batch 16 --budget-s 600"""
    if merge:
        return _merge(merge, out)
    flags = dict(max_passes=passes, min_passes=min_passes, budget_s=budget_s, min_seconds=min_seconds,
                 tolerance=tolerance, tolerance_max=tolerance_max, seed=seed)
    if check is not None:
        from simspec.profile.check import PROTOCOL as CHECK

        return _check(check, device, points, repeats, seed, greedy_tokens, protocol_from(CHECK, flags))
    if calibrate is not None:
        from simspec.profile.calibrate import PROTOCOL as CALIBRATE

        return _calibrate(calibrate, out, device, threads, protocol_from(CALIBRATE, flags))
    if model is None:
        raise InputError(None, "--model", "required (or use --check FILE)")
    from simspec.models import load_model
    from simspec.profile.capture import PROTOCOL, QUICK_PROTOCOL, run_capture
    from simspec.profile.grid import FULL, QUICK

    proto = protocol_from(QUICK_PROTOCOL if quick else PROTOCOL, flags)
    extra_q = with_values((), also_q, "--q") if also_q is not None else ()  # before any model loads

    from simspec.profile.timer import cuda_unavailable

    reason = cuda_unavailable(device)
    if reason:
        raise InputError(None, "--device", reason)
    _setup_torch(threads)
    lm = load_model(model, dtype=dtype, device=device)
    if out is None:  # one folder per machine family: profile = "auto" chooses among them
        from simspec import machine

        out = Path("profiles") / machine.slug(machine.identify(device, probe=False)) / f"{lm.name}-{dtype}.parquet"
    if out.suffix != ".parquet":
        raise InputError(str(out), "--out", "must end in .parquet")
    _check_out(out, kernels)
    grid = QUICK if quick else FULL
    if max_batch is not None:
        kept = tuple(b for b in grid.batch if b <= max_batch)
        if len(kept) < 2:
            raise InputError(None, "--max-batch", f"{max_batch} leaves fewer than 2 of the grid's batch sizes {grid.batch}")
        grid = dataclasses.replace(grid, batch=kept, prefill_batch=tuple(b for b in grid.prefill_batch if b <= max_batch)
                                   if sum(b <= max_batch for b in grid.prefill_batch) >= 2 else grid.prefill_batch)
    if max_prefill_batch is not None:
        if max_prefill_batch < 1:
            raise InputError(None, "--max-prefill-batch", f"{max_prefill_batch} must be >= 1")
        more, b = [], max(grid.prefill_batch) * 2
        while b <= max_prefill_batch:
            more.append(b)
            b *= 2
        grid = dataclasses.replace(grid, prefill_batch=grid.prefill_batch + tuple(more))
    for flag, axis, cap in (("--max-q", "q", max_q), ("--max-context", "context", max_context),
                            ("--max-prefill-len", "prefill_len", max_prefill_len)):
        if cap is not None:
            grid = dataclasses.replace(grid, **{axis: capped_axis(getattr(grid, axis), cap, flag)})
    if extra_q:
        grid = dataclasses.replace(grid, q=tuple(sorted(set(grid.q) | set(extra_q))))
    command = "simspec " + shlex.join(sys.argv[1:])
    n = grid.with_vocab(lm.dims.vocab).points()
    with _progress(n * proto.max_passes, f"profiling {lm.name} {dtype}") as bar:
        task = bar.add_task("", total=n * proto.max_passes)
        path, seconds, res = run_capture(
            lm, grid, out, threads, command, spec=model, step=lambda s: bar.update(task, advance=1, description=s),
            proto=proto)
    typer.echo(f"captured {n} points in {seconds:.0f} s: {res.line()}")
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")
    if kernels:
        from simspec.atomic import write_via
        from simspec.profile.kernels import kernel_table

        kpath = path.with_name(path.stem + ".kernels.parquet")
        table = kernel_table(lm)
        write_via(kpath, lambda tmp: table.to_parquet(tmp, index=False))
        typer.echo(f"wrote {kpath}")


def with_values(values: tuple[int, ...], text: str, flag: str) -> tuple[int, ...]:
    """A grid axis with the comma-separated positive integers of `text` added, sorted, no
    duplicates; InputError naming `flag` for anything else."""
    try:
        extra = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(None, flag, f"{text!r} is not a comma-separated list of integers") from None
    if not extra or min(extra) < 1:
        raise InputError(None, flag, f"{text!r}: give one or more integers >= 1")
    return tuple(sorted(set(values) | set(extra)))


def capped_axis(values: tuple[int, ...], cap: int, flag: str) -> tuple[int, ...]:
    """A grid axis cut after its first value at or above `cap`, so that the capture still
    brackets every point up to `cap` (interpolated, not extrapolated); InputError if fewer
    than two values would remain (the cost model interpolates between neighbours)."""
    if cap < 1:
        raise InputError(None, flag, f"{cap} must be >= 1")
    kept = []
    for v in values:
        kept.append(v)
        if v >= cap:
            break
    if len(kept) < 2:
        raise InputError(None, flag, f"{cap} leaves fewer than 2 of the grid's values {values}")
    return tuple(kept)


def protocol_from(default, flags: dict):
    """The timing protocol: `default` with the flags given (None: not given), or InputError
    naming the flag and why."""
    names = {"max_passes": "--passes", "min_passes": "--min-passes", "budget_s": "--budget-s",
             "min_seconds": "--min-seconds", "tolerance": "--tolerance", "tolerance_max": "--tolerance-max",
             "seed": "--seed"}
    given = {k: v for k, v in flags.items() if v is not None}
    proto = dataclasses.replace(default, **given)
    if "max_passes" in given and "min_passes" not in given:
        proto = dataclasses.replace(proto, min_passes=min(proto.min_passes, max(proto.max_passes, 1)))
    if "budget_s" in given and "min_seconds" not in given:
        proto = dataclasses.replace(proto, min_seconds=min(proto.min_seconds, proto.budget_s))
    if "tolerance" in given and "tolerance_max" not in given:
        proto = dataclasses.replace(proto, tolerance_max=max(proto.tolerance_max, proto.tolerance))
    for key, why in proto.problems():
        raise InputError(None, names.get(key, key), why)
    return proto


def _merge(sources: list[Path], out: Optional[Path]) -> None:
    from simspec.atomic import write_text, write_via
    from simspec.profile.merge import merge
    from simspec.profile.schema import sidecar_path

    if out is None or out.suffix != ".parquet":
        raise InputError(str(out) if out else None, "--out", "give the merged profile's path, ending in .parquet")
    if any(out.resolve() == s.resolve() for s in sources):
        raise InputError(str(out), "--out", "would overwrite a profile being merged")
    _check_out(out, False)
    df, meta = merge(sources, "simspec " + shlex.join(sys.argv[1:]))  # every input error before writing
    write_via(out, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))
    write_text(sidecar_path(out), json.dumps(meta, indent=1) + "\n")
    typer.echo(f"merged {len(sources)} captures ({meta['protocol']['passes']} passes in all) into {out}: "
               + ", ".join(f"{m['path']} gave {m['fastest_points']} of {len(df)} points' fastest run"
                           for m in meta["merged"]))


def _calibrate(source: Path, out: Optional[Path], device: str, threads: int, proto) -> None:
    from simspec import machine
    from simspec.models import load_model
    from simspec.profile import calibrate as cal
    from simspec.profile.schema import read_profile

    _, meta = read_profile(source)
    if out is None:
        out = Path("profiles") / machine.slug(machine.here()) / source.name
    if out.suffix != ".parquet":
        raise InputError(str(out), "--out", "must end in .parquet")
    if out.resolve() == source.resolve():
        raise InputError(str(out), "--out", "would overwrite the profile being calibrated")
    _check_out(out, False)
    _setup_torch(threads)
    lm = load_model(meta.get("spec", meta["model"]), dtype=meta["dtype"], device=device)
    command = "simspec " + shlex.join(sys.argv[1:])
    from simspec.profile.costmodel import ProfileCostModel

    points = cal.point_set(ProfileCostModel.load(source), proto, cal.thread_scale(meta, threads))
    with _progress(cal.steps(proto, points), f"calibrating {lm.name} {lm.dtype}") as bar:
        task = bar.add_task("", total=cal.steps(proto, points))
        path, report, seconds = cal.write_calibrated(
            lm, source, out, threads, command, step=lambda s: bar.update(task, advance=1, description=s),
            proto=proto, points=points)
    fit, hold = report["fit"], report["holdout"]
    typer.echo(f"calibrated {source} to this machine ({machine.label(machine.here())}) in {seconds:.0f} s")
    for d in report["dropped"]:
        what = (f"prefill {d['batch']} x {d['length']}" if d["kind"] == "prefill"
                else f"decode b={d['batch']} q={d['q']} ctx={d['context']}")
        typer.echo(f"  left out     {what} (its share of a pass about {d['estimated_s']:.1f} s: over the pass's share "
                   f"of --budget-s)")
    typer.echo(f"  timing       {report['protocol']['passes']} interleaved passes, stopped by "
               f"{report['protocol']['stop']} (tolerance {proto.tolerance:.0%} / {proto.tolerance_max:.0%})")
    typer.echo("  factors (measured / profiled, by tokens per forward): decode "
               + ", ".join(f"{t}: {f:.3f}" for t, f in report["factors"]["decode"].items())
               + "; prefill " + ", ".join(f"{t}: {f:.3f}" for t, f in report["factors"]["prefill"].items()))
    typer.echo(f"  fit points   {fit['points']}: median |error| {fit['median_rel_error']:.1%}, max {fit['max_rel_error']:.1%} "
               f"(source profile: median {fit['source_median_rel_error']:.1%})")
    typer.echo(f"  holdout      {hold['points']}: median |error| {hold['median_rel_error']:.1%}, max {hold['max_rel_error']:.1%} "
               f"(source profile: median {hold['source_median_rel_error']:.1%})")
    passes = report["passes"]
    if passes["points"]:
        typer.echo(f"  two halves   {passes['points']}: the slower of odd and even passes reads {passes['median']:.1%} "
                   f"above the faster (median; max {passes['max']:.1%})")
        if not passes["steady"]:
            typer.echo(f"warning: the machine was not steady while calibrating (odd and even passes disagree by a median "
                       f"{passes['median']:.1%}, over {cal.UNSTEADY:.0%}): calibrate again when it is quiet "
                       "(python benchmarks/machine_steadiness.py shows it)", err=True)
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")


def _check_report(path: Path, seed: int) -> Path:
    return path.with_name(path.stem + (".check.json" if seed == 0 else f".check-seed{seed}.json"))


def _check(path: Path, device: str, points: int, repeats: int, seed: int,
           greedy_tokens: int, proto) -> None:
    from rich.console import Console
    from rich.table import Table

    from simspec.models import load_model
    from simspec.profile.check import check_steps, run_check, summarize
    from simspec.profile.costmodel import ProfileCostModel

    cm = ProfileCostModel.load(path)
    meta = cm.meta
    if points < 30:
        raise InputError(None, "--points", f"{points}: a check needs at least 30 points")
    from simspec.outputs import check_file

    check_file("--check", _check_report(path, seed))  # its report is written beside it: before the timing
    _setup_torch(int(meta["threads"]))
    lm = load_model(meta.get("spec", meta["model"]), dtype=meta["dtype"], device=device)
    if meta["sha256"] and lm.sha256 and lm.sha256 != meta["sha256"]:
        raise InputError(str(path), "sha256", f"profile was made from {meta['sha256'][:16]}, "
                         f"the loaded model is {lm.sha256[:16]}")
    if repeats is not None and repeats < 1:
        raise InputError(None, "--repeats", f"{repeats} must be >= 1")
    n = check_steps(points, proto) if not repeats else check_steps(points, dataclasses.replace(proto, max_passes=repeats))
    with _progress(n, f"checking {path.name}") as bar:
        task = bar.add_task("", total=n)
        results, res = run_check(lm, cm, points, repeats, seed,
                                 step=lambda s: bar.update(task, advance=1, description=s), proto=proto)
    table = Table("kind", "batch", "q", "context", "layers", "K", "measured ms", "predicted ms", "error", "noise")
    for r in results:
        table.add_row(r.kind, str(r.batch), str(r.q), str(r.context), str(r.layers or "all"),
                      str(r.head_rows or "all"), f"{r.measured_s * 1e3:.1f}",
                      f"{r.predicted_s * 1e3:.1f}", f"{r.rel_error:+.1%}".replace("+", ""), f"{r.noise:.0%}")
    Console().print(table)
    typer.echo(f"timing: {res.line()}")
    s = summarize(results)
    h, p = s["holdout"], s["partial"]
    typer.echo(f"holdout ({h['points']} off-grid points): median error {h['median_rel_error']:.1%}, "
               f"max {h['max_rel_error']:.1%}")
    typer.echo(f"rest + l x layer + head(K) vs direct ({p['points']} points): median error "
               f"{p['median_rel_error']:.1%}, max {p['max_rel_error']:.1%}")
    if "drift" in s:
        d, w = s["drift"], s["drift"]["holdout_without_drift"]
        typer.echo(f"drift: {d['points']} grid points timed again run {d['median']:+.1%} against the "
                   f"profile (the machine now vs at capture; the errors above include it); "
                   f"holdout without it: median {w['median_rel_error']:.1%}, max {w['max_rel_error']:.1%}")
    from simspec.profile.greedy import greedy_check

    typer.echo("live plain greedy decode, batch 1 ...")
    g = greedy_check(lm, cm, new_tokens=greedy_tokens) if lm.tokenizer is not None else None
    if g is not None:
        typer.echo(f"greedy decode (prompt {g.prompt_tokens} tokens, {g.new_tokens} new): live "
                   f"{g.live_tok_s:.2f} tok/s (fastest of {len(g.runs_tok_s)} runs; median "
                   f"{g.live_median_tok_s:.2f}), predicted {g.predicted_tok_s:.2f} tok/s, "
                   f"error {g.rel_error:.1%}")
    out = _check_report(path, seed)
    import datetime as dt

    from simspec.atomic import write_text

    write_text(out, json.dumps({
        "profile": str(path), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "simspec " + " ".join(sys.argv[1:]), "repeats": repeats, "seed": seed,
        "summary": s, "protocol": res.summary(), "greedy": None if g is None else g.to_dict(),
        "points": [r.to_dict() for r in results],
    }, indent=1) + "\n")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_cmd)
