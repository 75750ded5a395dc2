"""Engine configs from a study's answer: vLLM `speculative_config` JSON, SGLang flags.

Only keys vLLM's SpeculativeConfig accepts are written (VLLM_KEYS; a test holds the export
to it). Early-exit drafting has no vLLM or SGLang method, so an engine export falls back to
the best drafter the engine can run, and says so.
"""

from __future__ import annotations

from typing import Any

from simspec import drafters
from simspec.study.schedule import Point, best_per_bucket, ranges
from simspec.tree_shape import TreeShape

# vLLM SpeculativeConfig fields this exporter may write.
VLLM_KEYS = frozenset({
    "method", "model", "num_speculative_tokens", "num_speculative_tokens_per_batch_size",
    "draft_tensor_parallel_size", "disable_by_batch_size", "prompt_lookup_min",
    "prompt_lookup_max", "speculative_token_tree",
})


def engine_drafter(best_kind: str | None, pts: list[Point], engine_methods: dict) -> str | None:
    """The study's drafter if the engine has it, else the engine-runnable drafter whose
    schedule delivers the most (summed over buckets)."""
    if best_kind in engine_methods:
        return best_kind
    scores = {}
    for kind in engine_methods:
        per = best_per_bucket(pts, kind)
        if any(p.drafter == kind for p in per.values()):
            scores[kind] = sum(p.throughput_tok_s for p in per.values())
    return max(scores, key=scores.get) if scores else None


def vllm_methods() -> dict[str, str]:
    """Drafter kind -> vLLM `method`, for the kinds vLLM runs."""
    return {n: k.vllm_method for n, k in drafters.KINDS.items() if k.vllm_method}


def sglang_algorithms() -> dict[str, str]:
    return {n: k.sglang_algorithm for n, k in drafters.KINDS.items() if k.sglang_algorithm}


def token_tree(shape: list[int]) -> str:
    """vLLM's `speculative_token_tree`: every node as its path of child indices."""
    return str(TreeShape(tuple(shape)).paths())


def vllm_config(best: dict[str, Any], drafter_spec, pts: list[Point], notes: list[str]) -> dict[str, Any]:
    methods = vllm_methods()
    kind = engine_drafter(best.get("drafter"), pts, methods)
    per = best_per_bucket(pts, kind)
    sched = ranges(per)
    gmax = max((r[2] for r in sched), default=0)
    if kind is None or gmax == 0:
        notes.append("vLLM: speculation does not pay at any simulated batch size; run without `speculative_config`.")
        return {}
    if best.get("drafter") != kind:
        notes.append(f"vLLM has no {best.get('drafter')!r} drafter: its export uses {kind!r}, the best runnable one.")
    cfg: dict[str, Any] = {"method": methods[kind]}
    ds = drafter_spec(kind)
    entry = drafters.get(kind)
    if entry.separate_model:
        cfg["model"] = (ds.name if ds is not None and ds.name else None) or "<draft model path>"
    cfg["num_speculative_tokens"] = gmax
    cfg["num_speculative_tokens_per_batch_size"] = sched
    if methods[kind] == "ngram":  # vLLM's prompt lookup window
        cfg["prompt_lookup_min"] = (ds.prompt_lookup_min if ds is not None and ds.prompt_lookup_min else 1)
        cfg["prompt_lookup_max"] = (ds.prompt_lookup_max if ds is not None and ds.prompt_lookup_max else gmax)
    if best.get("tree", "chain") != "chain" and best.get("drafter") == kind:
        cfg["speculative_token_tree"] = token_tree(list(TreeShape.parse(best["tree"]).branching))
    zero_from = [r[0] for r in sched if r[2] == 0 and r[0] > 1]
    if zero_from and all(r[2] == 0 for r in sched if r[0] >= zero_from[0]):
        cfg["disable_by_batch_size"] = zero_from[0]
    bad = set(cfg) - VLLM_KEYS
    assert not bad, bad
    return cfg


def sglang_args(best: dict[str, Any], drafter_spec, pts: list[Point], notes: list[str]) -> str:
    algorithms = sglang_algorithms()
    kind = engine_drafter(best.get("drafter"), pts, algorithms)
    mb = best.get("max_batch")
    lines = ["# SGLang server flags chosen by `simspec study` (one config: SGLang has no per-batch schedule)."]
    per = best_per_bucket(pts, kind)
    if kind is None or not per:
        lines.append("# speculation does not pay here: run without --speculative-algorithm")
        return "\n".join(lines) + "\n"
    # The bucket the server will sit at: the chosen max batch (or the largest simulated).
    at = max((b for b in per if mb is None or b <= int(mb)), default=min(per))
    p = per[at]
    if best.get("drafter") != kind:
        notes.append(f"SGLang has no {best.get('drafter')!r} drafter: its flags use {kind!r}.")
    if p.gamma == 0:
        lines.append(f"# at batch {at} speculation does not pay: run without --speculative-algorithm")
        return "\n".join(lines) + "\n"
    ds = drafter_spec(kind)
    flags = [f"--speculative-algorithm {algorithms[kind]}"]
    if drafters.get(kind).separate_model:
        flags.append(f"--speculative-draft-model-path {(ds.name if ds is not None and ds.name else '<draft model path>')}")
    tree = TreeShape.parse(best["tree"]) if best.get("tree", "chain") != "chain" else None
    use_tree = tree is not None and best.get("drafter") == kind and tree.max_depth == p.gamma
    if use_tree:
        flags += [f"--speculative-num-steps {tree.max_depth}", f"--speculative-eagle-topk {tree.branching[0]}",
                  f"--speculative-num-draft-tokens {tree.size}"]
    else:
        flags += [f"--speculative-num-steps {p.gamma}", "--speculative-eagle-topk 1",
                  f"--speculative-num-draft-tokens {p.gamma + 1}"]
    if mb is not None:
        flags.append(f"--max-running-requests {int(mb)}")
    lines.append(f"# tuned for batch {at}; per-batch best gamma: "
                 + ", ".join(f"{b}:{q.gamma}" for b, q in per.items()))
    if best.get("vocab") and best.get("drafter") == kind:
        lines.append(f"# trimmed vocabulary K={best['vocab']}: pass its hot-token map with --speculative-token-map <file>")
    lines += flags
    return "\n".join(lines) + "\n"
