"""`simspec run`: real speculative decoding on this device; tokens/s, tokens per round, phases."""

from __future__ import annotations

from simspec import strict_json
import sys
from pathlib import Path
from typing import Optional

import typer


def run_cmd(
    target: str = typer.Option(..., "--target", help="known name, GGUF file, HF dir or id, tiny:ARCH"),
    draft: str = typer.Option("none", "--draft", help="none | model:NAME | early_exit:L | ngram[:N] (eagle3, mtp, parallel: simulation only)"),
    gamma: int = typer.Option(4, "--gamma", help="draft tokens per round (chain)"),
    tree: Optional[str] = typer.Option(None, "--tree", help="children per depth, e.g. 2,2,1 (replaces --gamma)"),
    vocab: Optional[int] = typer.Option(None, "--vocab", help="trimmed drafter head: K most frequent tokens"),
    dtype: str = typer.Option("bf16", "--dtype", help="bf16 or fp32"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N"),
    dataset: str = typer.Option("humaneval", "--dataset", help="humaneval | sharegpt | FILE.jsonl"),
    prompts: int = typer.Option(4, "--prompts", help="number of prompts"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="new tokens per prompt"),
    batch: int = typer.Option(1, "--batch", help="static batch size"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; > 0 rejection sampling"),
    seed: int = typer.Option(0, "--seed"),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="always generate --max-new-tokens"),
    chat: bool = typer.Option(False, "--chat", help="wrap prompts in the tokenizer's chat template"),
    check_greedy: bool = typer.Option(False, "--check-greedy", help="compare with plain greedy decoding"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    synthetic: Optional[str] = typer.Option(
        None, "--synthetic", help="forced acceptance, per-position rates e.g. 0.8,0.7,0.6 (seeded by --seed): "
        "real kernels, shapes and KV traffic, meaningless output text (vLLM's rejection_sample_method=synthetic)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the JSON result here"),
) -> None:
    """Decode dataset prompts with a drafter; report tokens/s, tokens per round, time per phase."""
    from simspec import limits
    from simspec.atomic import write_text
    from simspec.live.run import RunSettings, run

    for flag, value, limit, low in (("--gamma", gamma, limits.GAMMA, 0), ("--prompts", prompts, limits.PROMPTS, 1),
                                    ("--max-new-tokens", max_new_tokens, limits.TOKEN_LEN, 1),
                                    ("--batch", batch, limits.MAX_BATCH, 1)):
        limits.check_flag(flag, value, limit, low)  # before a model loads

    from simspec.drafters import DraftSpec

    kind = DraftSpec.parse(draft).entry
    if kind is not None:
        kind.check_live(None, "--draft")  # a kind simspec cannot run: one line, before a model loads
    if out is not None:  # before the models load and decode
        from simspec.outputs import check_file

        check_file("--out", out)
    say = (lambda s: print(s, file=sys.stderr)) if as_json else typer.echo
    result = run(RunSettings(
        target=target, draft=draft, gamma=gamma, tree=tree, vocab=vocab, dtype=dtype, device=device,
        dataset=dataset, prompts=prompts, max_new_tokens=max_new_tokens, batch=batch,
        temperature=temperature, seed=seed, ignore_eos=ignore_eos, chat=chat, check_greedy=check_greedy,
        threads=threads, synthetic=synthetic), say)
    if out is not None:
        write_text(out, strict_json.dumps(result, indent=2) + "\n")
    if as_json:
        print(strict_json.dumps(result))
    else:
        _print(result)
    if out is not None:
        say(f"wrote {out}")


def _print(r: dict) -> None:
    mode = "greedy" if r["temperature"] == 0 else f"sampling T={r['temperature']}"
    shape = "none" if not r["tree"] else (
        f"chain gamma={len(r['tree'])}" if all(c == 1 for c in r["tree"]) else "tree " + ",".join(map(str, r["tree"])))
    vocab = f", head K={r['vocab']}" if r["vocab"] else ""
    typer.echo(f"target {r['target']} {r['dtype']} | draft {r['draft']}{vocab} | {shape} | batch {r['batch']} | {mode}")
    typer.echo(f"  new tokens      {r['new_tokens']} ({r['prompts']} prompts, {r['rounds']} rounds)")
    typer.echo(f"  tok/s           {r['tok_s']:.2f}  (after the first round {r['decode_tok_s']:.2f})")
    if r["tok_per_cpu_s"]:
        typer.echo(f"  tok/cpu-s       {r['tok_per_cpu_s']:.2f}  ({r['cpu_seconds']:.1f} CPU s over {r['threads']} threads)")
    typer.echo(f"  tokens/round    {r['tokens_per_round']:.3f}  (ragged rounds: {r['ragged_rounds']})"
               + (f"  forced: {r['synthetic']} (output text meaningless)" if r.get("synthetic") else ""))
    sec, total = r["seconds"], r["seconds_total"] or 1.0
    typer.echo("  time            " + " | ".join(
        f"{k} {sec[k]:.2f} s ({100 * sec[k] / total:.0f}%)" for k in ("prefill", "draft", "verify", "other"))
        + "   (prefill: the first round, which carries the prompt)")
    if r["target_weight_gb_s"] is not None:
        typer.echo(f"  target weights  {r['target_weight_gb_s']:.2f} GB/s streamed (weights x verify passes / decode s)")
    if r["greedy_equal"] is not None:
        n, k = r["prompts"], r["greedy_equal"]
        verdict = "identical to" if k == n else "DIFFERENT from"
        typer.echo(f"  greedy check    {verdict} plain greedy on {k}/{n} prompts")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
