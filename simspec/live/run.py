"""`simspec run` without the CLI: check the settings, load models and prompts, decode, and
return the result (the JSON object `simspec run --json` prints).

Every setting is checked before a model loads, and both models are loaded and checked
against each other before anything decodes, so a wrong flag costs no model load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from simspec.errors import InputError
from simspec.drafters import DraftSpec
from simspec.live.prompts import load_prompts
from simspec.live.runner import check_config, run_config, vocab_rows
from simspec.live.synthetic import SyntheticAcceptance, parse_rates
from simspec.live.tree import Tree


@dataclass(frozen=True)
class RunSettings:
    """One `simspec run`: what to decode, with which drafter, on which device (CLI flag names)."""

    target: str
    draft: str = "none"
    gamma: int = 4
    tree: str | None = None
    vocab: int | None = None
    dtype: str = "bf16"
    device: str = "cpu"
    dataset: str = "humaneval"
    prompts: int = 4
    max_new_tokens: int = 64
    batch: int = 1
    temperature: float = 0.0
    seed: int = 0
    ignore_eos: bool = False
    chat: bool = False
    check_greedy: bool = False
    threads: int | None = None
    synthetic: str | None = None  # per-position rates "0.8,0.7": forced acceptance (live/synthetic.py)


def _checked(s: RunSettings) -> tuple[DraftSpec, Tree, list[float] | None]:
    """The drafter, tree shape and synthetic rates of the settings, or InputError naming the flag."""
    spec = DraftSpec.parse(s.draft)
    for flag, value, low in (("--gamma", s.gamma, 0), ("--prompts", s.prompts, 1),
                             ("--max-new-tokens", s.max_new_tokens, 1), ("--batch", s.batch, 1)):
        if value < low:
            raise InputError(None, flag, f"{value} must be >= {low}")
    if not (s.temperature >= 0 and math.isfinite(s.temperature)):  # nan fails the first test
        raise InputError(None, "--temperature", f"{s.temperature} must be a finite number >= 0")
    try:
        shape = Tree.parse(s.tree) if s.tree else Tree.chain(s.gamma if spec.kind != "none" else 0)
    except ValueError as exc:
        raise InputError(None, "--tree", str(exc)) from None
    if s.check_greedy and s.temperature > 0:
        raise InputError(None, "--check-greedy", "only meaningful with --temperature 0")
    if s.threads is not None and s.threads < 1:
        raise InputError(None, "--threads", f"{s.threads} must be >= 1")
    rates = None
    if s.synthetic is not None:
        rates = parse_rates(s.synthetic)
        if s.temperature > 0:
            raise InputError(None, "--synthetic", "forces greedy verification: give --temperature 0")
        if s.check_greedy:
            raise InputError(None, "--synthetic", "forced acceptance is not greedy decoding: drop --check-greedy")
        if spec.kind == "none":
            raise InputError(None, "--synthetic", "needs a drafter (--draft): plain decoding accepts nothing")
    return spec, shape, rates


def run(s: RunSettings, say: Callable[[str], None]) -> dict:
    """Decode the dataset's prompts with the settings' drafter; tokens/s, tokens per round,
    seconds per phase, and the target's weight bandwidth. `say` gets the progress lines."""
    from simspec.models import load_model

    spec, shape, rates = _checked(s)
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    texts = load_prompts(s.dataset, s.prompts)

    say(f"loading {s.target} ({s.dtype}) ...")
    tgt = load_model(s.target, dtype=s.dtype, device=s.device)
    dm = None
    if spec.kind == "model":
        say(f"loading draft {spec.model} ({s.dtype}) ...")
        dm = load_model(spec.model, dtype=s.dtype, device=s.device)
    check_config(tgt, spec, shape, s.vocab, s.temperature, dm)

    tok = tgt.tokenizer

    def encode(text: str) -> list[int]:
        if s.chat:
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
            return list(ids["input_ids"] if isinstance(ids, dict) else ids)
        return tok(text)["input_ids"]

    ids = [encode(t) for t in texts]
    rows = None
    if s.vocab is not None:  # calibration: token counts over the dataset's prompts (up to 500)
        calib = [tok(t)["input_ids"] for t in load_prompts(s.dataset, 500)]
        rows = vocab_rows(calib, s.vocab, tgt.dims.vocab)
    # synthetic acceptance: the output text means nothing, so neither does a stop token in it
    eos = None if s.ignore_eos or rates is not None else tok.eos_token_id
    synthetic = SyntheticAcceptance.per_position(rates, shape.max_depth, s.seed) if rates is not None else None

    say(f"decoding {len(ids)} prompts x {s.max_new_tokens} tokens, batch {s.batch} ...")
    report = run_config(
        tgt, spec, shape, ids, s.max_new_tokens, batch=s.batch, draft=dm, rows=rows,
        temperature=s.temperature, seed=s.seed, eos=eos, check_greedy=s.check_greedy,
        progress=lambda n: say(f"  {n}/{len(ids)} prompts done"), synthetic=synthetic,
    )
    st, cpu = report.stats, report.extra["cpu_seconds"]
    return {
        "target": tgt.name, "draft": str(spec), "dtype": s.dtype, "device": s.device,
        "tree": list(shape.branching), "vocab": s.vocab, "batch": s.batch, "temperature": s.temperature,
        "dataset": s.dataset, "prompts": len(ids), "max_new_tokens": s.max_new_tokens,
        "threads": torch.get_num_threads(), **st.as_dict(),
        # gpt-fast's roofline figure: target weights streamed per second of decoding
        "target_weight_gb_s": round(tgt.weights_bytes * st.rounds / st.decode_seconds / 1e9, 3)
        if st.decode_seconds else None,
        "cpu_seconds": round(cpu, 3),
        "tok_per_cpu_s": round(st.new_tokens / cpu, 3) if cpu else None,
        "greedy_equal": None if report.greedy_equal is None else sum(report.greedy_equal),
        # forced acceptance: shapes, KV traffic and timings are real, the output text is not
        "synthetic": synthetic.source if synthetic is not None else None,
    }
