"""vLLM's spec-decode counters (a /metrics scrape saved to a file) -> per-position acceptance.

The names are vLLM v1's (vllm/v1/spec_decode/metrics.py, class SpecDecodingProm, with the
labels `model_name` and `engine` of vllm/v1/metrics/loggers.py; prometheus_client appends
`_total` to a counter's samples):

    vllm:spec_decode_num_drafts_total                 rounds that drafted (one per request per step)
    vllm:spec_decode_num_draft_tokens_total           draft tokens proposed
    vllm:spec_decode_num_accepted_tokens_total        draft tokens accepted
    vllm:spec_decode_num_accepted_tokens_per_pos_total{position="k"}
                                                      rounds whose draft token k was accepted

SpecDecodingStats.observe_draft adds 1 to positions 0..n-1 of a round that accepted n, so
position k counts the rounds with at least k+1 accepted: a chain survival count
(simspec.imported.record). Counters of several label sets (engines of a data-parallel
deployment) are summed, and the import says which; several `model_name`s are refused (one
model's acceptance at a time). vLLM v0's spec-decode gauges (rates, no per-position counts)
are not read.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from simspec.errors import InputError
from simspec.imported import prometheus
from simspec.imported.record import Acceptance, from_counts

SOURCE = ("vllm-project/vllm vllm/v1/spec_decode/metrics.py (SpecDecodingProm; read at commit 016a8587) and "
          "vllm/v1/metrics/loggers.py (labelnames model_name, engine)")
DRAFTS = "vllm:spec_decode_num_drafts"
DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
ACCEPTED = "vllm:spec_decode_num_accepted_tokens"
PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos"
FAMILIES = (DRAFTS, DRAFT_TOKENS, ACCEPTED, PER_POS)
_SCRAPE_SLACK = 0.01  # counters are read one by one while the engine runs: a live scrape may disagree this much


def _count(s: prometheus.Sample, file: str) -> int:
    if not math.isfinite(s.value) or s.value < 0:
        raise InputError(file, f"line {s.line}", f"{s.name}: a count must be a finite number >= 0 (got {s.value:g})")
    if s.value != int(s.value):
        raise InputError(file, f"line {s.line}", f"{s.name}: a count must be a whole number (got {s.value:g})")
    return int(s.value)


def _hint(text: str) -> str:
    if "accept len" in text or re.search(r"^\s*\d+\s*$", text, re.M):
        return " (it looks like an SGLang log: try --format sglang)"
    if "per_position" in text:
        return " (it looks like a per-position list: try --format list)"
    return ""


def read(text: str, file: str) -> Acceptance:
    """Per-position acceptance from a scrape's spec-decode counters; one InputError naming
    the file, the line (or the missing counter) and the reason otherwise."""
    if "vllm:spec_decode" not in text:
        raise InputError(file, None, f"no vllm:spec_decode_* counters: not a vLLM metrics scrape{_hint(text)}")
    expo = prometheus.parse(text, file, keep="vllm:spec_decode")
    for fam in FAMILIES:  # Prometheus text declares the family as <name>_total, OpenMetrics as <name>
        declared = expo.types.get(f"{fam}_total") or expo.types.get(fam)
        if declared is not None and declared[0] != "counter":
            raise InputError(file, f"line {declared[1]}", f"{fam} is declared {declared[0]!r}, expected a counter")
    totals = {f"{fam}_total": fam for fam in FAMILIES}
    seen: dict[tuple, int] = {}
    models: dict[str, int] = {}
    # series key (labels other than position) -> family -> count, or position -> count
    engines: dict[tuple, dict] = defaultdict(dict)
    lines: dict[tuple, int] = {}
    for s in expo.samples:
        if s.name not in totals:
            continue
        if (s.name, s.labels) in seen:
            raise InputError(file, f"line {s.line}", f"duplicate series {s.series()} (first at line {seen[(s.name, s.labels)]})")
        seen[(s.name, s.labels)] = s.line
        model = s.label("model_name")
        if model is not None:
            models.setdefault(model, s.line)
            if len(models) > 1:
                first = next(iter(models))
                raise InputError(file, f"line {s.line}", f"a second model_name {model!r} (first {first!r} at line "
                                                         f"{models[first]}): import one model's counters at a time")
        fam = totals[s.name]
        key = tuple(kv for kv in s.labels if kv[0] != "position")
        n = _count(s, file)
        if fam == PER_POS:
            pos = s.label("position")
            if pos is None or not pos.isascii() or not pos.isdigit() or len(pos) > 6:
                raise InputError(file, f"line {s.line}",
                                 f"{s.name}: needs a label position=\"<k>\" with k = 0, 1, ... (got {pos!r})")
            known = engines[key].setdefault(PER_POS, {})
            if int(pos) in known:
                raise InputError(file, f"line {s.line}", f"duplicate series {s.series()}: position {int(pos)} "
                                                         f"is given at line {lines[(key, int(pos))]} too")
            known[int(pos)] = n
            lines[(key, int(pos))] = s.line
        else:
            engines[key][fam] = n
            lines[(key, fam)] = s.line
    if not engines:
        raise InputError(file, f"{DRAFTS}_total", "missing: no vLLM v1 spec-decode counters in the file "
                                                   "(vLLM v0's spec-decode gauges hold rates, not per-position counts)")
    drafts = draft_tokens = accepted = 0
    reached: list[int] | None = None
    notes: list[str] = []
    for key, got in engines.items():
        where = "{" + ",".join(f'{k}="{v}"' for k, v in key) + "}" if key else ""
        for fam in FAMILIES:
            if fam not in got:
                raise InputError(file, f"{fam}_total{where}", "missing: vLLM exports the four spec-decode counters together")
        pos = got[PER_POS]
        if sorted(pos) != list(range(len(pos))):
            gap = min(set(range(len(pos) + 1)) - set(pos))
            raise InputError(file, f"{PER_POS}_total{where}",
                             f"positions must run 0, 1, ... without a gap (position {gap} is missing)")
        counts = [pos[k] for k in range(len(pos))]
        _check(file, key, got, counts, lines)
        if reached is None:
            reached = counts
        elif len(counts) != len(reached):
            raise InputError(file, f"line {lines[(key, 0)]}", f"{where} has {len(counts)} positions, another label set "
                                                              f"{len(reached)}: one speculative config at a time")
        else:
            reached = [a + b for a, b in zip(reached, counts)]
        drafts += got[DRAFTS]
        draft_tokens += got[DRAFT_TOKENS]
        accepted += got[ACCEPTED]
    assert reached is not None
    acc = from_counts(drafts, reached)
    gamma = len(reached)
    acc.counts.update(draft_tokens=draft_tokens, accepted_tokens=accepted,
                      label_sets=[dict(k) for k in engines])
    if len(engines) > 1:
        notes.append(f"summed over {len(engines)} label sets (engines): "
                     + "; ".join(",".join(f"{k}={v}" for k, v in key) for key in engines))
    if sum(reached) != accepted:
        notes.append(f"the per-position counts sum to {sum(reached)}, {ACCEPTED}_total is {accepted} (a live scrape "
                     "reads counters one by one); per_position comes from the per-position counts")
    if draft_tokens < drafts * gamma:
        notes.append(f"{draft_tokens} draft tokens over {drafts} drafts of up to {gamma}: "
                     f"{1 - draft_tokens / (drafts * gamma):.1%} of positions were not drafted (shortened drafts) "
                     "and count as not accepted")
    acc.notes = notes
    return acc


def _check(file: str, key: tuple, got: dict, counts: list[int], lines: dict) -> None:
    """One label set's counters against each other: what observe_draft makes always true."""
    drafts, tokens, accepted = got[DRAFTS], got[DRAFT_TOKENS], got[ACCEPTED]
    g = len(counts)
    if drafts == 0:
        raise InputError(file, f"line {lines[(key, DRAFTS)]}", f"{DRAFTS}_total is 0: nothing was drafted yet "
                                                                "(scrape after the engine has served requests)")
    if accepted > tokens:
        raise InputError(file, f"line {lines[(key, ACCEPTED)]}", f"{accepted} accepted tokens > {tokens} draft tokens "
                                                                  f"(line {lines[(key, DRAFT_TOKENS)]})")
    if tokens > drafts * g:
        raise InputError(file, f"line {lines[(key, DRAFT_TOKENS)]}", f"{tokens} draft tokens > {drafts} drafts x "
                                                                      f"{g} positions (line {lines[(key, DRAFTS)]})")
    if counts[0] > drafts:
        raise InputError(file, f"line {lines[(key, 0)]}", f"position 0 accepted {counts[0]} times in {drafts} drafts "
                                                           f"(line {lines[(key, DRAFTS)]})")
    for k in range(1, g):
        if counts[k] > counts[k - 1]:
            raise InputError(file, f"line {lines[(key, k)]}", f"position {k} accepted {counts[k]} times, more than "
                                                               f"position {k - 1} ({counts[k - 1]}, line {lines[(key, k - 1)]}): "
                                                               "per-position counts must not increase (a token is "
                                                               "accepted only after the one before it)")
    total = sum(counts)
    if abs(total - accepted) > max(1, _SCRAPE_SLACK * accepted):
        raise InputError(file, f"line {lines[(key, ACCEPTED)]}", f"{ACCEPTED}_total is {accepted} but the per-position "
                                                                  f"counts sum to {total}: they count the same tokens")
