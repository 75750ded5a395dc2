"""SGLang server flags (sglang_args.txt), its adaptive tier file, token map and synthetic run.

SGLang has no batch-size threshold flag. Its adaptive mode (`--speculative-adaptive` with
`--speculative-adaptive-config`) keeps one slot per lowest batch size, each switching among
its `candidate_steps` by observed acceptance; a slot with one candidate is a fixed K for that
batch range, which is how the per-batch answer is written. The adaptive mode runs EAGLE and
EAGLE3 only (topk 1); other algorithms get one static configuration.
"""

from __future__ import annotations

import json

from simspec import drafters
from simspec.study.engines import Context, EngineExport, head_vocab_note
from simspec.study.engines import versions as V
from simspec.study.engines.synthetic import acceptance_length
from simspec.tree_shape import TreeShape

NAME = "sglang"
MAIN = "sglang_args.txt"
ADAPTIVE = "sglang_adaptive_config.json"
TOKEN_MAP_IDS = "sglang_token_map.json"
TOKEN_MAP = "sglang_token_map.pt"
SYNTHETIC = "sglang_synthetic_env.sh"


def algorithms(version: str | None = None) -> dict[str, str]:
    """Drafter kind -> `--speculative-algorithm`, for the kinds SGLang (that version) runs."""
    known = V.values(NAME, "--speculative-algorithm", version)
    return {n: k.sglang_algorithm for n, k in drafters.KINDS.items()
            if k.sglang_algorithm and k.sglang_algorithm in known}


def adaptive_config(ranges: list[list[int]]) -> dict:
    """{"<lowest batch of a range>": {"candidate_steps": [K]}}: batch-size keys are lower
    bounds (adaptive_step_router.py); one candidate per slot pins its K."""
    return {str(lo): {"candidate_steps": [int(k)]} for lo, _hi, k in ranges}


def flags(ctx: Context, version: str, notes: list[str], files: dict[str, str]) -> tuple[list[str], dict, int]:
    """The flag lines, the flags as {flag: value}, and the static num-steps (0: no speculation)."""
    a = ctx.answer
    title = f"SGLang {version}"
    lines = [f"# SGLang {version} server flags chosen by `simspec study` (python -m sglang.launch_server ...)."]
    if not a.speculates:
        if a.lacking:
            notes.append(a.lacks_line(title) + ": no speculative config.")
        lines.append(f"# {a.lacks_line(title) if a.lacking else 'speculation does not pay here'}: "
                     "run without --speculative-algorithm")
        return lines, {}, 0
    if a.fell_back:
        notes.append(f"{title} has no {a.wanted!r} drafter: its flags use {a.kind!r}.")
    algo = algorithms()[a.kind]
    has = V.writable(NAME, version)
    ds = ctx.drafter
    fl: dict = {"--speculative-algorithm": algo}
    entry = drafters.get(a.kind)
    if entry.own_checkpoint:  # NEXTN (MTP) reads its layers from the target's checkpoint
        fl["--speculative-draft-model-path"] = (ds.name if ds is not None and ds.name else None) or \
            ("<draft model path>" if entry.separate_model else f"<{a.kind} head path>")
    adaptive = a.schedule_pays and algo in V.SGLANG_ADAPTIVE_ALGORITHMS and \
        {"--speculative-adaptive", "--speculative-adaptive-config"} <= has
    tree = TreeShape.parse(ctx.best["tree"]) if ctx.best.get("tree", "chain") != "chain" else None
    steps = a.max_k if adaptive else a.single_k
    if entry.parallel:  # one block per round: the verify length, the seed token included
        fl["--speculative-num-draft-tokens"] = steps + 1
        notes.append(f"{title}: {algo} drafts a block of --speculative-num-draft-tokens - 1 = {steps} tokens "
                     "in one forward; its block size must match the drafter's training.")
    elif tree is not None and not adaptive and not a.fell_back and tree.max_depth == steps:
        fl["--speculative-num-steps"] = tree.max_depth
        fl["--speculative-eagle-topk"] = tree.branching[0]
        fl["--speculative-num-draft-tokens"] = tree.size
    else:
        fl["--speculative-num-steps"] = steps
        fl["--speculative-eagle-topk"] = 1
        fl["--speculative-num-draft-tokens"] = steps + 1
    if adaptive:
        files[ADAPTIVE] = json.dumps(adaptive_config(a.ranges), indent=2) + "\n"
        fl["--speculative-adaptive"] = None
        fl["--speculative-adaptive-config"] = ADAPTIVE
        lines.append("# per-batch K as adaptive slots: " + ", ".join(f"{lo}-{hi}:{k}" for lo, hi, k in a.ranges))
    elif a.schedule_pays:
        why = (f"{title} has no per-batch adaptive config (since 0.5.16)" if algo in V.SGLANG_ADAPTIVE_ALGORITHMS
               else f"SGLang's adaptive mode runs EAGLE/EAGLE3 only, not {algo}")
        notes.append(f"{why}: one K = {a.single_k} for every batch size.")
        lines.append(f"# one K = {a.single_k} for every batch size ({why})")
    else:
        lines.append(f"# one K = {a.single_k} for every batch size")
    mb = ctx.best.get("max_batch")
    if mb is not None:
        fl["--max-running-requests"] = int(mb)
    if ctx.trimmed is not None and entry.head:
        notes.append(head_vocab_note(title, a.kind, ctx.trimmed))
    elif ctx.trimmed is not None:
        if ctx.hot_ids:
            files[TOKEN_MAP_IDS] = json.dumps(ctx.hot_ids) + "\n"
            fl["--speculative-token-map"] = TOKEN_MAP
            lines.append(f"# trimmed vocabulary K = {ctx.trimmed}: the {len(ctx.hot_ids)} ids of {TOKEN_MAP_IDS} "
                         f"({ctx.hot_ids_source}); SGLang reads a torch file:")
            lines.append(f"#   python -c \"import json, torch; torch.save(json.load(open('{TOKEN_MAP_IDS}')), "
                         f"'{TOKEN_MAP}')\"")
        else:
            notes.append(f"SGLang: the trimmed vocabulary K = {ctx.trimmed} wins, but no trace gives its token ids: "
                         "build --speculative-token-map from your own calibration text.")
    V.check(NAME, version, fl)
    lines += [k if v is None else f"{k} {v}" for k, v in fl.items()]
    return lines, fl, steps


def build(ctx: Context, version: str) -> EngineExport:
    notes: list[str] = []
    files: dict[str, str] = {}
    lines, fl, steps = flags(ctx, version, notes, files)
    out = EngineExport(NAME, version, {MAIN: "\n".join(lines) + "\n", **files}, MAIN, notes, None, None, fl)
    if not fl:
        return out
    adaptive = "--speculative-adaptive" in fl
    out.k_at = (lambda b: ctx.answer.k_at(b)) if adaptive else (lambda b: steps)
    if ctx.rates is not None and "SGLANG_SIMULATE_ACC_LEN" in V.writable(NAME, version) and not adaptive \
            and fl.get("--speculative-eagle-topk") == 1:
        acc = acceptance_length(ctx.rates, steps)
        out.files[SYNTHETIC] = "\n".join([
            f"# SGLang {version}: serve with acceptance fixed to simspec's ({ctx.rates_source}), then compare",
            "# with `simspec predict` (synthetic_prediction.csv). Mean tokens per round, bonus included:",
            f"export SGLANG_SIMULATE_ACC_LEN={acc}",
            "# newer SGLang also reads SGLANG_SIMULATE_ACC_METHOD=match-expected (the mean exactly; older",
            "# builds draw normal(mean, 1) per round and round it, which shifts the mean near the bounds)",
            f"# then launch with the flags of {MAIN}",
        ]) + "\n"
        out.synthetic = SYNTHETIC
    elif ctx.rates is not None:
        what = ("an adaptive config (one length cannot match every K)" if adaptive else
                "a token tree" if "--speculative-eagle-topk" in fl else
                f"{fl['--speculative-algorithm']} (the variable is read in the EAGLE verify path)")
        notes.append(f"SGLang {version}: no SGLANG_SIMULATE_ACC_LEN form for {what}.")
    return out
