"""vLLM `--speculative-config` JSON, and its synthetic-acceptance twin.

The schedule is `num_speculative_tokens_per_batch_size`: inclusive [start, end, K] ranges,
with `num_speculative_tokens` the most any range asks for (vLLM sizes its buffers by it and
clamps each range's K to it). Before that key existed, one K is exported.
"""

from __future__ import annotations

import json

from simspec import drafters
from simspec.study.engines import Context, EngineExport, head_vocab_note
from simspec.study.engines import versions as V
from simspec.study.engines.synthetic import unconditional
from simspec.trace.suffix import PARAMS as SUFFIX_PARAMS, SuffixParams
from simspec.tree_shape import TreeShape

NAME = "vllm"
MAIN = "vllm_speculative_config.json"
SYNTHETIC = "vllm_synthetic_config.json"


def methods(version: str | None = None) -> dict[str, str]:
    """Drafter kind -> vLLM `method`, for the kinds vLLM (that version of it, when given) runs."""
    known = V.values(NAME, "method", version)
    return {n: k.vllm_method for n, k in drafters.KINDS.items() if k.vllm_method and k.vllm_method in known}


def token_tree(shape: list[int]) -> str:
    """vLLM's `speculative_token_tree`: every node as its path of child indices."""
    return str(TreeShape(tuple(shape)).paths())


def suffix_params(ds) -> SuffixParams:
    """The study's [drafters.suffix] suffix_decoding_* keys, vLLM's defaults for the rest."""
    given = {f: getattr(ds, key, None) for key, f, *_ in SUFFIX_PARAMS}
    return SuffixParams(**{f: v for f, v in given.items() if v is not None})


def config(ctx: Context, version: str, notes: list[str]) -> dict:
    a = ctx.answer
    title = f"vLLM {version}"
    if not a.speculates:
        why = a.lacks_line(title) if a.lacking else f"{title}: speculation does not pay at any simulated batch size"
        notes.append(f"{why}; run without `speculative_config`.")
        return {}
    if a.fell_back:
        notes.append(f"{title} has no {a.wanted!r} drafter: its export uses {a.kind!r}, the best it runs.")
    has = V.writable(NAME, version)
    method = methods()[a.kind]
    cfg: dict = {"method": method}
    ds = ctx.drafter
    entry = drafters.get(a.kind)
    if entry.own_checkpoint:  # a draft model or an EAGLE-3 / DFlash head; MTP layers are the target's
        cfg["model"] = (ds.name if ds is not None and ds.name else None) or \
            ("<draft model path>" if entry.separate_model else f"<{a.kind} head path>")
        cfg["draft_tensor_parallel_size"] = 1  # simspec simulates the drafter on one device
    tree = None
    if ctx.best.get("tree", "chain") != "chain" and not a.fell_back and a.kind == a.wanted:
        t = TreeShape.parse(ctx.best["tree"])
        if t.max_depth == a.single_k and not a.schedule_pays:
            tree = t
    if tree is not None and "speculative_token_tree" in has:
        paths = token_tree(list(tree.branching))
        cfg["num_speculative_tokens"] = len(tree.paths())
        cfg["speculative_token_tree"] = paths
        notes.append(f"{title}: token tree {ctx.best['tree']} ({len(tree.paths())} nodes); vLLM's tree path is "
                     "EAGLE's proposer (PR #20401): check that your method honours it.")
    else:
        if tree is not None:
            notes.append(f"{title} has no token tree (`speculative_token_tree` gone since 0.21.0): exporting the "
                         f"chain of {a.single_k}.")
        if a.schedule_pays and "num_speculative_tokens_per_batch_size" in has:
            cfg["num_speculative_tokens"] = a.max_k
            cfg["num_speculative_tokens_per_batch_size"] = a.ranges
        else:
            if a.schedule_pays:
                notes.append(f"{title} has no per-batch schedule (`num_speculative_tokens_per_batch_size`, "
                             f"since 0.24.0): one K = {a.single_k} for every batch size.")
            cfg["num_speculative_tokens"] = a.single_k
    if method in V.PROMPT_LOOKUP_METHODS:  # vLLM's prompt lookup window (both default to 5 there)
        cfg["prompt_lookup_min"] = (ds.prompt_lookup_min if ds is not None and ds.prompt_lookup_min else 1)
        cfg["prompt_lookup_max"] = (ds.prompt_lookup_max if ds is not None and ds.prompt_lookup_max
                                    else max(entry.default_n or 1, cfg["prompt_lookup_min"]))
    if method == "suffix":  # vLLM's own names; num_speculative_tokens is the most a round drafts
        for key, field, *_ in SUFFIX_PARAMS:
            cfg[key] = getattr(suffix_params(ds), field)
    if ctx.trimmed is not None and entry.head:
        notes.append(head_vocab_note(title, a.kind, ctx.trimmed))
    elif ctx.trimmed is not None:
        notes.append(f"{title} has no trimmed-head option: its drafter runs the full vocabulary, not the "
                     f"K = {ctx.trimmed} the study chose (expect less speed-up than predicted).")
    V.check(NAME, version, cfg)
    return cfg


def dumps(cfg: dict) -> str:
    """The JSON file: one key per line, each value compact (a schedule stays one line)."""
    if not cfg:
        return "{}\n"
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in cfg.items())
    return "{\n" + body + "\n}\n"


def k_at(cfg: dict):
    if not cfg:
        return None
    sched = cfg.get("num_speculative_tokens_per_batch_size")
    if not sched:
        return lambda b: int(cfg["num_speculative_tokens"])

    def at(b: int) -> int:
        for lo, hi, k in sched:
            if lo <= b <= hi:
                return min(k, cfg["num_speculative_tokens"])
        return sched[-1][2] if b > sched[-1][1] else sched[0][2]
    return at


def build(ctx: Context, version: str) -> EngineExport:
    notes: list[str] = []
    cfg = config(ctx, version, notes)
    out = EngineExport(NAME, version, {MAIN: dumps(cfg)}, MAIN, notes, k_at(cfg), None, cfg)
    has = V.writable(NAME, version)
    if cfg and ctx.rates is not None and {"rejection_sample_method", "synthetic_acceptance_rates"} <= has \
            and "speculative_token_tree" not in cfg:
        syn = dict(cfg)
        syn["rejection_sample_method"] = "synthetic"
        syn["synthetic_acceptance_rates"] = unconditional(ctx.rates, int(cfg["num_speculative_tokens"]))
        V.check(NAME, version, syn)
        out.files[SYNTHETIC] = dumps(syn)
        out.synthetic = SYNTHETIC
    elif cfg:
        notes.append(f"vLLM {version}: no synthetic-acceptance config (`synthetic_acceptance_rates` since 0.21.0"
                     + ("; not with a token tree" if "speculative_token_tree" in cfg else "") + ").")
    return out
