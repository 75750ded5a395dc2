"""`simspec run`: real speculative decoding on this device; tokens/s, tokens per round, phases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from simspec.errors import InputError


def run_cmd(
    target: str = typer.Option(..., "--target", help="known name, GGUF file, HF dir or id, tiny:ARCH"),
    draft: str = typer.Option("none", "--draft", help="none | model:NAME | early_exit:L | ngram[:N]"),
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
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the JSON result here"),
) -> None:
    """Decode dataset prompts with a drafter; report tokens/s, tokens per round, time per phase."""
    import torch

    from simspec.live.prompts import load_prompts
    from simspec.live.draft_spec import DraftSpec
    from simspec.live.runner import check_config, run_config, vocab_rows
    from simspec.live.tree import Tree
    from simspec.models import load_model

    spec = DraftSpec.parse(draft)
    for flag, value, low in (("--gamma", gamma, 0), ("--prompts", prompts, 1),
                             ("--max-new-tokens", max_new_tokens, 1), ("--batch", batch, 1)):
        if value < low:
            raise InputError(None, flag, f"{value} must be >= {low}")
    if temperature < 0:
        raise InputError(None, "--temperature", f"{temperature} must be >= 0")
    try:
        shape = Tree.parse(tree) if tree else Tree.chain(gamma if spec.kind != "none" else 0)
    except ValueError as exc:
        raise InputError(None, "--tree", str(exc)) from None
    if check_greedy and temperature > 0:
        raise InputError(None, "--check-greedy", "only meaningful with --temperature 0")
    if threads is not None:
        if threads < 1:
            raise InputError(None, "--threads", f"{threads} must be >= 1")
        torch.set_num_threads(threads)
    texts = load_prompts(dataset, prompts)
    say = (lambda s: print(s, file=sys.stderr)) if as_json else typer.echo

    say(f"loading {target} ({dtype}) ...")
    tgt = load_model(target, dtype=dtype, device=device)
    dm = None
    if spec.kind == "model":
        say(f"loading draft {spec.model} ({dtype}) ...")
        dm = load_model(spec.model, dtype=dtype, device=device)
    check_config(tgt, spec, shape, vocab, temperature, dm)

    tok = tgt.tokenizer
    def encode(text: str) -> list[int]:
        if chat:
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
            return list(ids["input_ids"] if isinstance(ids, dict) else ids)
        return tok(text)["input_ids"]
    ids = [encode(t) for t in texts]
    rows = None
    if vocab is not None:  # calibration: token counts over the dataset's prompts (up to 500)
        calib = [tok(t)["input_ids"] for t in load_prompts(dataset, 500)]
        rows = vocab_rows(calib, vocab, tgt.dims.vocab)
    eos = None if ignore_eos else tok.eos_token_id

    say(f"decoding {len(ids)} prompts x {max_new_tokens} tokens, batch {batch} ...")
    report = run_config(
        tgt, spec, shape, ids, max_new_tokens, batch=batch, draft=dm, rows=rows,
        temperature=temperature, seed=seed, eos=eos, check_greedy=check_greedy,
        progress=lambda n: say(f"  {n}/{len(ids)} prompts done"),
    )
    s = report.stats
    weights = tgt.weights_bytes
    result = {
        "target": tgt.name, "draft": str(spec), "dtype": dtype, "device": device,
        "tree": list(shape.branching), "vocab": vocab, "batch": batch, "temperature": temperature,
        "dataset": dataset, "prompts": len(ids), "max_new_tokens": max_new_tokens,
        "threads": torch.get_num_threads(), **s.as_dict(),
        # gpt-fast's roofline figure: target weights streamed per second of decoding
        "target_weight_gb_s": round(weights * s.rounds / s.decode_seconds / 1e9, 3) if s.decode_seconds else None,
        "cpu_seconds": round(report.extra["cpu_seconds"], 3),
        "tok_per_cpu_s": round(s.new_tokens / report.extra["cpu_seconds"], 3) if report.extra["cpu_seconds"] else None,
        "greedy_equal": None if report.greedy_equal is None else sum(report.greedy_equal),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result))
    else:
        _print(result, report)
    if out is not None:
        say(f"wrote {out}")


def _print(r: dict, report) -> None:
    mode = "greedy" if r["temperature"] == 0 else f"sampling T={r['temperature']}"
    shape = "none" if not r["tree"] else (
        f"chain gamma={len(r['tree'])}" if all(c == 1 for c in r["tree"]) else "tree " + ",".join(map(str, r["tree"])))
    vocab = f", head K={r['vocab']}" if r["vocab"] else ""
    typer.echo(f"target {r['target']} {r['dtype']} | draft {r['draft']}{vocab} | {shape} | batch {r['batch']} | {mode}")
    typer.echo(f"  new tokens      {r['new_tokens']} ({r['prompts']} prompts, {r['rounds']} rounds)")
    typer.echo(f"  tok/s           {r['tok_s']:.2f}  (after the first round {r['decode_tok_s']:.2f})")
    if r["tok_per_cpu_s"]:
        typer.echo(f"  tok/cpu-s       {r['tok_per_cpu_s']:.2f}  ({r['cpu_seconds']:.1f} CPU s over {r['threads']} threads)")
    typer.echo(f"  tokens/round    {r['tokens_per_round']:.3f}  (ragged rounds: {r['ragged_rounds']})")
    sec, total = r["seconds"], r["seconds_total"] or 1.0
    typer.echo("  time            " + " | ".join(
        f"{k} {sec[k]:.2f} s ({100 * sec[k] / total:.0f}%)" for k in ("prefill", "draft", "verify", "other"))
        + "   (prefill: the first round, which carries the prompt)")
    if r["target_weight_gb_s"] is not None:
        typer.echo(f"  target weights  {r['target_weight_gb_s']:.2f} GB/s streamed (weights x verify passes / decode s)")
    if report.greedy_equal is not None:
        n, k = len(report.greedy_equal), sum(report.greedy_equal)
        verdict = "identical to" if k == n else "DIFFERENT from"
        typer.echo(f"  greedy check    {verdict} plain greedy on {k}/{n} prompts")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
