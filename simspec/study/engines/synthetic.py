"""Checking a prediction on a real cluster: acceptance fixed to what the study assumed.

vLLM (`rejection_sample_method = "synthetic"`) accepts draft token i with the per-position
rates it is given, and SGLang (`SGLANG_SIMULATE_ACC_LEN`) forces a mean accepted length, both
without looking at the drafter's tokens. Served that way, a deployment runs the real model
costs with simspec's acceptance; if its throughput/TPOT then misses `simspec predict`'s table,
the serving model is wrong; if it matches but the real drafter's run does not, the drafter
accepts differently from the trace. Numbers, not torch: study/ stays torch-free.

Rates: `conditional` is P(token j accepted | 1..j-1 accepted) from the drafter's acceptance
(trace replay: simspec.trace.summary.per_position; i.i.d.: a; per position: the list, its last
rate reused deeper; rank probabilities: P(rank 0)). vLLM wants the unconditional ones,
S_j = P(first j all accepted) = prod_{i<=j} a_i (vllm/config/speculative.py @ 002e77c1:
"Per-position *unconditional* acceptance rates"); SGLang the mean length 1 + sum_j S_j.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simspec.config import resolve_data_path
from simspec.config.scenario import AcceptanceSpec
from simspec.errors import InputError
from simspec.study import schedule, trial
from simspec.study.engines.answer import Answer
from simspec.study.spec import StudySpec


def conditional_rates(spec: StudySpec, knobs: dict[str, Any], depth: int) -> tuple[list[float], str]:
    """Per-position conditional acceptance (len `depth`) of the drafter in `knobs`, and where
    it comes from. `knobs` are one schedule point's (schedule.point_knobs)."""
    acc = trial.scenario(spec, {**knobs, "gamma": max(depth, 1)}).acceptance
    if acc is None:
        raise InputError(spec.where, "acceptance", "no acceptance to fix a synthetic run to")
    if acc.trace is not None:
        from simspec.trace.schema import load_trace
        from simspec.trace.summary import per_position

        path = resolve_data_path(acc.trace, spec.where)
        tr = load_trace(path, spec.where)
        rates = [0.0 if math.isnan(x) else x for x in per_position(tr, acc.drafter, depth)]
        return rates, f"trace {acc.trace}, column {acc.drafter}"
    if acc.per_position is not None:
        a = list(acc.per_position)
        a += [a[-1]] * (depth - len(a))
        return [float(x) for x in a[:depth]], "per_position acceptance"
    if acc.iid is not None:
        return [float(acc.iid)] * depth, "i.i.d. acceptance"
    return [float(acc.rank_probs[0])] * depth, "rank_probs (P(rank 0) along a chain)"


def unconditional(rates: list[float], k: int) -> list[float]:
    """S_1..S_k = cumulative products: vLLM's synthetic_acceptance_rates."""
    out, s = [], 1.0
    for a in rates[:k]:
        s *= a
        out.append(round(s, 6))
    return out


def acceptance_length(rates: list[float], k: int) -> float:
    """Mean tokens per round (accepted + the bonus): SGLang's SGLANG_SIMULATE_ACC_LEN."""
    return round(1.0 + sum(unconditional(rates, k)), 4)


@dataclass
class Row:
    batch: int
    engine: str
    k: int
    throughput_tok_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    tokens_per_round: float
    study_throughput_tok_s: float  # the study's own figure (its acceptance model), nan if none


class Predictor:
    """Simulates the exported config at each batch bucket with acceptance replaced by the
    per-position rates (what a synthetic run serves). Results are cached per (K, batch)."""

    def __init__(self, spec: StudySpec, ev, best: dict[str, Any], kind_knobs: dict[str, Any] | None,
                 answer: Answer, rates: list[float] | None, pts: list) -> None:
        self.spec, self.ev, self.best, self.kp, self.answer, self.rates = spec, ev, best, kind_knobs, answer, rates
        self._study = {(p.batch, p.gamma): p.throughput_tok_s for p in pts
                       if p.drafter == (answer.kind if p.gamma else "none")}
        self._cache: dict[tuple[int, int], dict] = {}

    def figures(self, k: int, b: int) -> dict:
        key = (k, b)
        if key not in self._cache:
            p = schedule.point_knobs(self.best, self.kp, self.answer.kind, k)
            fixed = [{"acceptance": AcceptanceSpec(per_position=[float(x) for x in self.rates[:k]])}] \
                if k > 0 and self.rates else []
            self._cache[key] = self.ev.run(self.ev.scenario(p, *fixed, schedule.saturated(self.spec, b)))
        return self._cache[key]

    def rows(self, engine: str, k_at) -> list[Row]:
        out = []
        for b in self.answer.per:
            k = k_at(b) if k_at is not None else 0
            s = self.figures(k, b)
            st = self._study.get((b, k), float("nan"))
            out.append(Row(b, engine, k, s["throughput_tok_s"], s["tpot_p50_s"], s["tpot_p99_s"],
                           s["mean_tokens_per_round"], st))
        return out


def rows_csv(rows: list[Row]) -> str:
    cols = ("batch", "engine", "k", "throughput_tok_s", "tpot_p50_s", "tpot_p99_s", "tokens_per_round",
            "study_throughput_tok_s")
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(str(getattr(r, c)) if not isinstance(getattr(r, c), float) else repr(getattr(r, c))
                              for c in cols))
    return "\n".join(lines) + "\n"
