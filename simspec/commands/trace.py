"""`simspec trace`: capture acceptance traces from real generations, or summarise one."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from simspec import limits
from simspec.errors import InputError

HELP = """Record what candidate drafters would have had accepted on a target's greedy generations.

Examples:

  simspec trace --target qwen2.5-coder-1.5b --drafter qwen2.5-coder-0.5b --exit-layers 7,14,21,26
      --vocab 4096,8192,16384,32768,full --dataset humaneval --prompts 100 --max-new-tokens 128
      --out traces/qwen2.5-coder-1.5b__humaneval.parquet

  # the live runs' numerics for a validation plan's `traces` entry: 4 of those prompts at batch 1,
  # trimmed heads keeping the same K rows as the 100-prompt trace
  simspec trace --target qwen2.5-coder-1.5b --drafter qwen2.5-coder-0.5b --exit-layers 26 --vocab 8192,full
      --prompts 4 --batch 1 --dtype bf16 --calibration-from traces/qwen2.5-coder-1.5b__humaneval.parquet
      --out traces/qwen2.5-coder-1.5b__humaneval-b1-bf16.parquet

  # a long-prompt workload: ShareGPT first turns of 2,000-6,000 characters
  simspec trace --target qwen2.5-coder-1.5b --drafter qwen2.5-coder-0.5b --exit-layers 24,26
      --dataset sharegpt --prompt-chars 2000-6000 --prompts 8 --batch 1
      --out traces/qwen2.5-coder-1.5b__sharegpt-long.parquet

  simspec trace --summary traces/qwen2.5-coder-1.5b__humaneval.parquet
"""


def _span(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit() or int(lo) > int(hi):
        raise InputError(None, "--prompt-chars", f"{text!r} is not LO-HI with 0 <= LO <= HI, e.g. 2000-6000")
    return int(lo), int(hi)


def _ints(text: str, key: str, allow_full: bool = False) -> list:
    out: list = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if allow_full and part == "full":
            out.append(None)
            continue
        try:
            out.append(int(part.lower().replace("k", "")) * (1024 if part.lower().endswith("k") else 1))
        except ValueError:
            raise InputError(None, key, f"{part!r} is not an integer" + (" or 'full'" if allow_full else "")) from None
    return out


def _floats(text: str, key: str) -> list[float]:
    try:
        vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(None, key, f"{text!r} is not a comma-separated list of numbers") from None
    if not all(v > 0 and math.isfinite(v) for v in vals):  # nan fails `v > 0`
        raise InputError(None, key, f"temperatures must be finite numbers > 0 (got {text!r})")
    return vals


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (readable at any terminal width, and in a log)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def print_summary(path: Path, gmax: int) -> None:
    from simspec.trace.schema import load_trace
    from simspec.trace.summary import coverage, summary_rows

    trace = load_trace(path)
    m = trace.meta
    unsaid = "not recorded in the sidecar"
    partial = f" (a stopped capture: {trace.n_seq} of {m['prompts']} prompts)" if m.get("complete") is False else ""
    typer.echo(f"{path}: target {m.get('target', unsaid)} ({m.get('dtype', 'dtype ' + unsaid)}), "
               f"dataset {m.get('dataset', unsaid)}{partial}, "
               f"{trace.n_seq} sequences, {int(trace.output_len.sum())} positions, "
               f"mean prompt {trace.prompt_len.mean():.0f} / output {trace.output_len.mean():.0f} tokens")
    rows = summary_rows(trace, gmax)
    typer.echo("\nmean tokens per round, greedy chain of g draft tokens (exact replay, bonus token included)")
    typer.echo(_table(["drafter", *[f"g={g}" for g in range(1, gmax + 1)]],
                      [[r["drafter"], *[f"{r[f'g{g}']:.3f}" for g in range(1, gmax + 1)]] for r in rows]))
    betas = sorted({k for r in rows for k in r if k.startswith("beta@")})
    depth = len(rows[0]["per_position"]) if rows else 0
    typer.echo("\nper-position acceptance P(j-th draft accepted | earlier ones were), top-k agreement, mean beta")
    typer.echo(_table(["drafter", *[f"j={j}" for j in range(1, depth + 1)], "top1", "top4", *betas],
                      [[r["drafter"], *[f"{a:.3f}" for a in r["per_position"]], f"{r['top1']:.3f}", f"{r['top4']:.3f}",
                        *[f"{r.get(b, float('nan')):.3f}" for b in betas]] for r in rows]))
    cov = coverage(trace)
    if cov:
        typer.echo("\ntrimmed-set coverage of the target's generated tokens: "
                   + ", ".join(f"K={k}: {v:.3f}" for k, v in cov.items()))
    secs = m.get("capture_seconds")
    if secs:
        typer.echo("capture time (s): " + ", ".join(f"{k} {v}" for k, v in secs.items()))


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def trace(
        summary: Optional[Path] = typer.Option(None, "--summary", help="Summarise this trace file instead of capturing."),
        gmax: int = typer.Option(8, "--g-max", help="Summary: chains g = 1..G."),
        target: Optional[str] = typer.Option(None, "--target", help="Target model (known name, GGUF, HF dir or id)."),
        drafter: List[str] = typer.Option([], "--drafter", help="A separate drafter model (repeatable)."),
        exit_layers: str = typer.Option("", "--exit-layers", help="Early-exit drafters: layers, e.g. 7,14,21,26."),
        vocab: str = typer.Option("full", "--vocab", help="Head sizes K, e.g. 4096,8192,full (applies to every drafter)."),
        temperatures: str = typer.Option("1.0", "--temperatures", help="Temperatures for beta columns."),
        dataset: str = typer.Option("humaneval", "--dataset", help="humaneval | humaneval-fix (a second 'check your solution' turn) | sharegpt | FILE.jsonl ({\"prompt\": ...} lines)."),
        prompts: int = typer.Option(100, "--prompts", min=1),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
        batch: int = typer.Option(16, "--batch", min=1, help="Sequences decoded together."),
        dtype: str = typer.Option("bf16", "--dtype"),
        device: str = typer.Option("cpu", "--device"),
        chat: bool = typer.Option(True, "--chat/--no-chat", help="Apply the target's chat template when it has one."),
        seed: int = typer.Option(0, "--seed"),
        prompt_chars: Optional[str] = typer.Option(
            None, "--prompt-chars", help="Trace only prompts of LO-HI characters, e.g. 2000-6000 (sharegpt or "
                                         ".jsonl: a long-prompt workload)."),
        calibration_from: Optional[Path] = typer.Option(
            None, "--calibration-from",
            help="Reuse this trace's kept-token order for --vocab K (a trimmed head keeps the same K rows "
                 "as there; e.g. a batch-1 trace of a few of its prompts)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output Parquet (a .json sidecar is written beside it)."),
    ) -> None:
        if summary is not None:
            limits.check_flag("--g-max", gmax, limits.G_MAX)
            print_summary(summary, gmax)
            return
        if target is None or out is None:
            raise InputError(None, "--target" if target is None else "--out", "capturing needs --target and --out (or use --summary FILE)")
        limits.check_flag("--prompts", prompts, limits.PROMPTS)
        limits.check_flag("--max-new-tokens", max_new_tokens, limits.TOKEN_LEN)
        limits.check_flag("--batch", batch, limits.MAX_BATCH)
        span = _span(prompt_chars) if prompt_chars else None  # before torch loads: a typo fails fast
        from simspec import outputs
        from simspec.trace.schema import sidecar_path

        outputs.check_file("--out", out)  # and a place it cannot write, before the capture
        outputs.check_file("--out", sidecar_path(out))
        from simspec.trace.capture import CaptureSpec, capture

        spec = CaptureSpec(
            target=target, dataset=dataset, prompts=prompts, max_new_tokens=max_new_tokens,
            drafters=list(drafter), exit_layers=_ints(exit_layers, "--exit-layers"),
            vocabs=_ints(vocab, "--vocab", allow_full=True) or [None],
            temperatures=_floats(temperatures, "--temperatures"), batch=batch, dtype=dtype,
            device=device, seed=seed, chat=chat,
            calibration_from=str(calibration_from) if calibration_from else None,
            prompt_chars=span,
        )
        typer.echo(f"tracing {target} on {dataset} ({prompts} prompts, {max_new_tokens} new tokens) ...", err=True)
        cmd = "simspec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        pq, side, meta = capture(spec, out, cmd, log=lambda s: typer.echo(s, err=True))
        typer.echo(f"capture time {meta['capture_seconds']['total']:.0f} s "
                   f"(generate {meta['capture_seconds']['generate']:.0f} s, score {meta['capture_seconds']['score']:.0f} s)")
        typer.echo(f"wrote {pq} ({pq.stat().st_size / 1e6:.2f} MB) and {side}")
