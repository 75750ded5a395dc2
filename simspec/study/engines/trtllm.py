"""TensorRT-LLM `speculative_config` (YAML for `trtllm-serve --extra_llm_api_options`).

`draft_len_schedule` maps batch sizes to draft lengths, read two ways (versions.py): 1.2
takes each key as the lowest batch of its range and wants key 1; from 1.3 each key is the
highest batch of its range and speculation is off above the last key. Both want the first
range's length to equal `max_draft_len` and none above it (the llm_args validators).
"""

from __future__ import annotations

from simspec import drafters
from simspec.study.engines import Context, EngineExport, head_vocab_note
from simspec.study.engines import versions as V

NAME = "trtllm"
MAIN = "trtllm_speculative_config.yaml"


def decoding_types(version: str | None = None) -> dict[str, str]:
    """Drafter kind -> `decoding_type`, for the kinds TensorRT-LLM (that version) runs."""
    known = V.values(NAME, "decoding_type", version)
    return {n: k.trtllm_decoding_type for n, k in drafters.KINDS.items()
            if k.trtllm_decoding_type and k.trtllm_decoding_type in known}


def upper_bounds(version: str) -> bool:
    return V.at_least(version, V.TRTLLM_UPPER_BOUND_SCHEDULE)


def schedule(ranges: list[list[int]], version: str) -> dict[int, int]:
    """[[lo, hi, K], ...] -> draft_len_schedule in `version`'s reading (K already clipped)."""
    if upper_bounds(version):
        rs = list(ranges)
        while rs and rs[-1][2] == 0:  # off above the last key: trailing K = 0 ranges are implicit
            rs.pop()
        return {int(hi): int(k) for _lo, hi, k in rs}
    out = {int(lo): int(k) for lo, _hi, k in ranges}
    if 1 not in out:
        out = {1: int(ranges[0][2]), **out}
    return dict(sorted(out.items()))


def lookup(sched: dict[int, int], b: int, version: str) -> int:
    keys = sorted(sched)
    if upper_bounds(version):
        return next((sched[k] for k in keys if b <= k), 0)
    below = [k for k in keys if k <= b]
    return sched[below[-1]] if below else 0


def _yaml(cfg: dict) -> list[str]:
    """The YAML block; strings JSON-quoted (a JSON string is a YAML double-quoted scalar)."""
    import json

    lines = ["speculative_config:"]
    for k, v in cfg.items():
        if isinstance(v, dict):
            v = "{" + ", ".join(f"{a}: {b}" for a, b in v.items()) + "}"
        elif isinstance(v, str):
            v = json.dumps(v)
        lines.append(f"  {k}: {v}")
    return lines


def build(ctx: Context, version: str) -> EngineExport:
    a = ctx.answer
    notes: list[str] = []
    title = f"TensorRT-LLM {version}"
    head = [f"# {title} LLM-API options chosen by `simspec study`: trtllm-serve <model> --extra_llm_api_options {MAIN}"]
    if not a.speculates:
        if a.lacking:
            notes.append(a.lacks_line(title) + ": no speculative config.")
        head.append(f"# {a.lacks_line(title) if a.lacking else 'speculation does not pay here'}: "
                    "run without speculative_config")
        return EngineExport(NAME, version, {MAIN: "\n".join(head) + "\n"}, MAIN, notes, None, None, {})
    if a.fell_back:
        notes.append(f"{title} has no {a.wanted!r} drafter: its export uses {a.kind!r}.")
    ds = ctx.drafter
    entry = drafters.get(a.kind)
    cfg: dict = {"decoding_type": decoding_types()[a.kind]}
    sched = None
    if cfg["decoding_type"] == "MTP":  # its draft length is its layer count (MTPDecodingConfig)
        return _mtp(ctx, version, cfg, head, notes)
    if a.schedule_pays:
        rs = [list(r) for r in a.ranges]
        first = rs[0][2]
        if any(k > first for _, _, k in rs):
            notes.append(f"{title}: draft_len_schedule's first batch range must have the longest draft "
                         f"(= max_draft_len); later ranges clipped to {first}.")
            rs = [[lo, hi, min(k, first)] for lo, hi, k in rs]
        if first == 0:
            sched = None
        else:
            sched = schedule(rs, version)
            cfg["max_draft_len"] = first
            if upper_bounds(version) and rs[-1][2] > 0:
                notes.append(f"{title}: speculation turns off above batch {rs[-1][1]}, the largest simulated "
                             "(draft_len_schedule keys are upper bounds).")
    if sched is None:
        cfg["max_draft_len"] = a.single_k
    if entry.own_checkpoint:
        cfg["speculative_model"] = (ds.name if ds is not None and ds.name else None) or \
            ("<draft model path>" if entry.separate_model else f"<{a.kind} head path>")
    elif ds is not None and ds.prompt_lookup_max and drafters.get(a.kind).arg == "n":  # n-gram window
        cfg["max_matching_ngram_size"] = int(ds.prompt_lookup_max)
    if sched is not None:
        cfg["draft_len_schedule"] = sched
    if ctx.trimmed is not None and entry.head:
        notes.append(head_vocab_note(title, a.kind, ctx.trimmed))
    elif ctx.trimmed is not None:
        notes.append(f"{title}: no trimmed-head option is exported; the drafter runs its full vocabulary.")
    V.check(NAME, version, cfg)
    if cfg["max_draft_len"] == 0:
        head.append("# speculation does not pay here: run without speculative_config")
        return EngineExport(NAME, version, {MAIN: "\n".join(head) + "\n"}, MAIN, notes, None, None, {})
    reading = "highest batch of each range" if upper_bounds(version) else "lowest batch of each range"
    if sched is not None:
        head.append(f"# draft_len_schedule: batch size -> draft length, keys = the {reading}")
    text = "\n".join(head + _yaml(cfg)) + "\n"
    k_at = (lambda b: lookup(sched, b, version)) if sched is not None else (lambda b: cfg["max_draft_len"])
    return EngineExport(NAME, version, {MAIN: text}, MAIN, notes, k_at, None, cfg)


def _mtp(ctx: Context, version: str, cfg: dict, head: list[str], notes: list[str]) -> EngineExport:
    """MTP: `num_nextn_predict_layers` = K (its one layer runs K steps); no per-batch schedule."""
    a, title = ctx.answer, f"TensorRT-LLM {version}"
    cfg["num_nextn_predict_layers"] = a.single_k
    if a.schedule_pays:
        notes.append(f"{title}: MTP's draft length is num_nextn_predict_layers, no draft_len_schedule is "
                     f"exported: one K = {a.single_k} for every batch size.")
    V.check(NAME, version, cfg)
    if a.single_k == 0:
        head.append("# speculation does not pay here: run without speculative_config")
        return EngineExport(NAME, version, {MAIN: "\n".join(head) + "\n"}, MAIN, notes, None, None, {})
    text = "\n".join(head + _yaml(cfg)) + "\n"
    return EngineExport(NAME, version, {MAIN: text}, MAIN, notes, lambda b: a.single_k, None, cfg)
