"""SGLang's accept lengths -> per-position acceptance (per-round lengths) or a mean (log lines).

SGLang's accept length is the tokens one verify step emits for one request, the bonus token
included (Scheduler.update_spec_metrics adds `num_accepted_tokens + bs`), so a round emits
1..gamma+1. Two inputs:

* per-round lengths, one whole number per line (`#` comments allowed): their histogram gives
  the survival count at every position exactly (rounds with at least k+1 drafts accepted);
* SGLang's server log: its `Decode batch, ... accept len: X, ...` lines
  (python/sglang/srt/managers/scheduler_metrics_mixin.py, log_decode_stats) each hold the mean
  over `decode_log_interval` steps of every running request. A mean does not determine the
  per-position curve (many curves share a mean), so such a file is imported as mean-only:
  recorded with its statement, refused where a scenario needs per-position acceptance.

gamma (draft tokens per round, `--speculative-num-steps`): the --gamma flag, else a
`speculative_num_steps=N` the log's server_args line carries, else the longest round observed.
"""

from __future__ import annotations

import math
import re

from simspec import limits
from simspec.errors import InputError
from simspec.imported.record import Acceptance, from_counts

SOURCE = ("python/sglang/srt/managers/scheduler_metrics_mixin.py (log_decode_stats: 'accept len: %.2f'; "
          "update_spec_metrics: accepted + 1 bonus per request per step)")
_LOG = re.compile(r"accept len:\s*(\S+?),?(?:\s|$)")
_STEPS = re.compile(r"speculative_num_steps=(\d+)")
_TOPK = re.compile(r"speculative_eagle_topk=(\d+)")
_WHOLE = re.compile(r"[+-]?\d+")


def _hint(text: str) -> str:
    if "vllm:spec_decode" in text:
        return " (it looks like a vLLM metrics scrape: try --format vllm)"
    if "per_position" in text:
        return " (it looks like a per-position list: try --format list)"
    return ""


def _gamma(text: str, gamma: int | None, file: str, notes: list[str]) -> int | None:
    if gamma is not None:
        return gamma
    m = _STEPS.search(text)
    if m is None:
        return None
    g = int(m.group(1)[:8])
    line = text.count("\n", 0, m.start()) + 1
    if g < 1:
        raise InputError(file, f"line {line}", f"speculative_num_steps={g}: no draft tokens per round")
    limits.check(g, limits.GAMMA, file, f"line {line}")
    notes.append(f"gamma {g} from the log's speculative_num_steps (line {line})")
    topk = _TOPK.search(text)
    if topk is not None and int(topk.group(1)[:8]) > 1:
        notes.append(f"speculative_eagle_topk={topk.group(1)}: a tree; the accepted path's length is recorded, "
                     "not the tree's shape or ranks")
    return g


def read(text: str, file: str, gamma: int | None = None) -> Acceptance:
    notes: list[str] = []
    g = _gamma(text, gamma, file, notes)
    lines = text.split("\n")
    if any("accept len:" in ln for ln in lines):
        return _log(lines, file, g, notes)
    lengths: list[int] = []
    for n, raw in enumerate(lines, start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if not _WHOLE.fullmatch(s):
            try:
                x = float(s)
            except ValueError:
                x = None
            if x is not None and math.isfinite(x) and x != int(x):
                raise InputError(file, f"line {n}", f"{s[:40]!r} is not a whole number: a per-round accept length is "
                                                    "(a per-request mean, as SGLang's spec_accept_length, says nothing "
                                                    "per position)")
            raise InputError(file, f"line {n}", f"{s[:40]!r} is not an accept length (one whole number per line, "
                                                f"or SGLang's 'accept len:' log lines){_hint(text)}")
        if len(s.lstrip("+-")) > 6:
            raise InputError(file, f"line {n}", f"{s[:40]} is not an accept length: above the limit of "
                                                f"{limits.GAMMA.value + 1} ({limits.GAMMA.name}, plus the bonus token)")
        v = int(s)
        if v < 1:
            raise InputError(file, f"line {n}", f"{v} is not an accept length: SGLang's counts the bonus token, so "
                                                "every round emits at least 1")
        top = (g if g is not None else limits.GAMMA.value) + 1
        if v > top:
            what = f"gamma {g} + the bonus token" if g is not None else \
                f"the limit of {limits.GAMMA.value} {limits.GAMMA.name} + the bonus token"
            raise InputError(file, f"line {n}", f"accept length {v} > {top} ({what})")
        lengths.append(v)
    if not lengths:
        raise InputError(file, None, f"no accept lengths in the file{_hint(text)}")
    depth = g if g is not None else max(lengths) - 1
    if g is None:
        notes.append(f"gamma {depth}: the longest round observed (give --gamma for the configured draft length)")
    if depth < 1:
        raise InputError(file, None, "every round emitted 1 token (nothing accepted) and no --gamma was given: "
                                     "the draft length is unknown")
    hist = [0] * (depth + 2)
    for v in lengths:
        hist[v] += 1
    reached, above = [], 0
    for k in range(depth, 0, -1):  # rounds with >= k accepted = lengths >= k + 1
        above += hist[k + 1]
        reached.append(above)
    reached.reverse()
    acc = from_counts(len(lengths), reached, depth)
    acc.counts["accept_length_histogram"] = {str(v): hist[v] for v in range(1, depth + 2) if hist[v]}
    acc.notes = notes
    return acc


def _log(lines: list[str], file: str, g: int | None, notes: list[str]) -> Acceptance:
    values = []
    for n, raw in enumerate(lines, start=1):
        if "accept len:" not in raw:
            continue
        m = _LOG.search(raw)
        try:
            v = float(m.group(1)) if m else math.nan
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise InputError(file, f"line {n}", "'accept len:' is not followed by a number")
        if v < 1:
            raise InputError(file, f"line {n}", f"accept len {v:g} < 1: SGLang's counts the bonus token")
        if g is not None and v > g + 1:
            raise InputError(file, f"line {n}", f"accept len {v:g} > gamma {g} + the bonus token")
        values.append(v)
    mean = sum(values) / len(values)
    notes.append(f"mean only: {len(values)} 'accept len' log lines, each the mean over SGLang's decode_log_interval, "
                 "weighted equally (the steps behind each are not logged); per-position acceptance cannot be "
                 "derived from a mean")
    return Acceptance(None, g, mean - 1.0, {"log_lines": len(values)}, notes)
