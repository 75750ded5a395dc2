"""simspec's live engine against transformers' own assisted generation, same models and prompts.

For each shared config (a draft model, prompt lookup, early exit) the same prompts are decoded
greedily by simspec (`simspec.live`) and by `model.generate(...)` with `assistant_model=`,
`prompt_lookup_num_tokens=` or `assistant_early_exit=`; plain greedy `generate` is the
reference. Prints tokens/s side by side and whether each output equals plain greedy, and
writes the table as JSON.

    python benchmarks/vs_transformers.py --target smollm2-135m --draft smollm2-135m \
        --dtype bf16 --prompts 4 --max-new-tokens 64

simspec's side runs its engine as `simspec run` does: the prompt carried by the first round,
drafts clipped to the remaining budget, one-row bf16 linears as matrix-vector products
(simspec.models.gemv); transformers' side runs its generate with stock linears.

Timing: one untimed warm-up per config, then every prompt once (batch 1), the whole generation
(prefill included) on both sides, as wall-clock tok/s and as tokens per CPU-second of this
process (robust to the process being paused or starved on a shared machine). Shared CPUs are
noisy: repeat a run before trusting a difference under ~20%.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def hf_generate(model, ids, new, eos, **kw):
    """transformers' generate as shipped: simspec's one-row linears (models.gemv) and GQA
    attention (models.gqa) off."""
    import torch

    from simspec.models.gemv import stock_linears
    from simspec.models.gqa import stock_attention

    x = torch.tensor([ids])
    with stock_linears(), stock_attention():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                             eos_token_id=eos, pad_token_id=eos if eos is not None else 0, **kw)
    return out[0, len(ids):].tolist()


def timed(fn):
    """Result, wall seconds and CPU seconds of this process (all threads). CPU seconds survive
    the process being paused or starved by others on a shared machine; wall seconds do not."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="smollm2-135m")
    ap.add_argument("--draft", default=None, help="draft model for assistant_model= (default: none)")
    ap.add_argument("--draft-dtype", default=None, help="default: --dtype")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--dataset", default="humaneval")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--lookup", type=int, default=10, help="prompt lookup tokens (transformers' example: 10)")
    ap.add_argument("--exit-layer", type=int, default=None, help="early exit layer (default: 3/4 of layers)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default=None,
                    help="comma list of plain,draft,lookup,early_exit (default: all); the greedy "
                         "reference is then simspec's plain_greedy, untimed")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from simspec.live.engine import generate
    from simspec.live.kv import KV
    from simspec.live.prompts import load_prompts
    from simspec.live.runner import DraftSpec, make_drafter
    from simspec.live.tree import Tree
    from simspec.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    target = load_model(args.target, dtype=args.dtype)
    draft = load_model(args.draft, dtype=args.draft_dtype or args.dtype) if args.draft else None
    tok = target.tokenizer
    eos = tok.eos_token_id
    prompts = [tok(t)["input_ids"] for t in load_prompts(args.dataset, args.prompts)]
    exit_layer = args.exit_layer or (3 * target.dims.layers) // 4

    configs = [("plain", DraftSpec("none"), 0, {})]
    if draft is not None:
        draft.model.generation_config.num_assistant_tokens = args.gamma
        draft.model.generation_config.num_assistant_tokens_schedule = "constant"
        draft.model.generation_config.assistant_confidence_threshold = 0.0
        configs.append((f"draft {draft.name} g={args.gamma}", DraftSpec("model", draft.name), args.gamma,
                        {"assistant_model": draft.model}))
    configs.append((f"prompt lookup g={args.lookup}", DraftSpec("ngram", "3"), args.lookup,
                    {"prompt_lookup_num_tokens": args.lookup, "max_matching_ngram_size": 3}))
    configs.append((f"early exit {exit_layer} g={args.gamma}", DraftSpec("early_exit", str(exit_layer)),
                    args.gamma, {"assistant_early_exit": exit_layer}))

    if args.only:
        keep = {x.strip() for x in args.only.split(",")}
        unknown = keep - {"plain", "draft", "lookup", "early_exit"}
        if unknown:
            raise SystemExit(f"--only: unknown {sorted(unknown)}")
        kinds = {"none": "plain", "model": "draft", "ngram": "lookup", "early_exit": "early_exit"}
        configs = [c for c in configs if kinds[c[1].kind] in keep]

    def ours(spec, gamma, ids, new):
        kv = KV(target.model, 1)
        res = generate(target.model, [ids], new, make_drafter(target, spec, kv, draft),
                       Tree.chain(gamma), eos=eos, target_kv=kv)
        return res.outputs[0], res.stats

    plain_ref = None
    if configs and configs[0][1].kind != "none":  # plain not timed: reference decoded untimed
        from simspec.live.engine import plain_greedy

        plain_ref = [plain_greedy(target.model, ids, args.max_new_tokens, eos) for ids in prompts]
    rows = []
    for name, spec, gamma, kw in configs:
        row = {"config": name}
        for side in ("simspec", "transformers"):
            run = (lambda ids, new=args.max_new_tokens: ours(spec, gamma, ids, new)) if side == "simspec" else (
                lambda ids, new=args.max_new_tokens: (hf_generate(target.model, ids, new, eos, **kw), None))
            try:
                run(prompts[0], 8)  # warm-up
                outs, tokens, seconds, cpu, rounds_tokens = [], 0, 0.0, 0.0, []
                for ids in prompts:
                    (out, stats), dt, dc = timed(lambda: run(ids))
                    outs.append(out)
                    tokens += len(out)
                    seconds += dt
                    cpu += dc
                    if stats is not None:
                        rounds_tokens.append(stats.tokens_per_round)
                if plain_ref is None:
                    plain_ref = outs  # simspec's plain greedy first: the reference
                row[f"{side}_tok_s"] = round(tokens / seconds, 3)
                row[f"{side}_tok_per_cpu_s"] = round(tokens / cpu, 3)
                row[f"{side}_equal_greedy"] = f"{sum(a == b for a, b in zip(outs, plain_ref))}/{len(outs)}"
                if rounds_tokens:
                    row["simspec_tokens_per_round"] = round(sum(rounds_tokens) / len(rounds_tokens), 3)
            except Exception as exc:  # a transformers path this model does not support
                row[f"{side}_tok_s"] = None
                row[f"{side}_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{args.target} {args.dtype}, {len(prompts)} {args.dataset} prompts x {args.max_new_tokens} tokens, "
          f"{torch.get_num_threads()} threads")
    print(f"{'config':32s} {'simspec tok/s':>14s} {'hf tok/s':>10s} {'simspec tok/cpu-s':>18s} {'hf tok/cpu-s':>13s} "
          f"{'simspec=greedy':>15s} {'hf=greedy':>10s} {'tok/round':>10s}")
    for r in rows:
        print(f"{r['config']:32s} {r.get('simspec_tok_s') or '-':>14} {r.get('transformers_tok_s') or '-':>10} "
              f"{r.get('simspec_tok_per_cpu_s') or '-':>18} {r.get('transformers_tok_per_cpu_s') or '-':>13} "
              f"{r.get('simspec_equal_greedy', '-'):>15} {r.get('transformers_equal_greedy', '-'):>10} "
              f"{r.get('simspec_tokens_per_round', '-'):>10}")
    out = args.out or Path("benchmarks/results") / f"vs_transformers-{target.name}-{args.dtype}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out.write_text(json.dumps({"args": meta, "threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
