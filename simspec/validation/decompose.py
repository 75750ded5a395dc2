"""The decomposed error report of a serving validation: where a prediction's error comes from.

  (a) acceptance     tokens per round, the simulator's replay of the trace against the live run
  (b) dynamics       the serving policy replayed on the live run's own iteration times against
                     the live figures (simspec.validation.replay): policy and accounting alone,
                     no cost model; ~0 for a closed loop, a few tenths of a percent for Poisson
                     (the loop's wake-up after an idle wait is its own)
  (c) cost           predicted against measured seconds per iteration, by phase (prefill, round)
                     and by batch / query tokens / context bucket, with each iteration's spread
                     across rounds beside it; the phase totals (prefill, draft, verify) too
  (d) end to end     the table's errors with the run's noise floor (split-half disagreement)

Per config (`decompose`) and over the plan (`plan_summary`). Torch-free.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from simspec.validation.compare import error_pct
from simspec.validation.replay import ReplayError, ReplayStep, Workload, replay
from simspec.validation.rounds import TIMED
from simspec.validation.rows import PHASES, ServingRow

NAN = float("nan")


def context_bucket(context: float) -> int:
    """The power of two at or below a mean context (the bucket's lower edge; 0 below 1)."""
    return 0 if context < 1 else 2 ** int(math.floor(math.log2(context)))


def _median(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.median(v)) if v else NAN


def _stats(pred: list[float], meas: list[float], noise: list[float], paired: bool) -> dict:
    """One group: iterations, mean predicted and measured seconds, the error of the means, the
    per-iteration ratio's p10 / p50 / p90 (paired iterations only) and the median noise."""
    p, m = float(np.mean(pred)), float(np.mean(meas))
    out = {"n": len(meas), "n_predicted": len(pred), "predicted_s": p, "measured_s": m, "error_pct": error_pct(p, m),
           "noise_pct": _median(noise)}
    if paired:
        r = np.asarray(meas) / np.asarray(pred)
        out |= {"ratio_p10": float(np.percentile(r, 10)), "ratio_p50": float(np.median(r)),
                "ratio_p90": float(np.percentile(r, 90))}
    return out


def cost(sim: Sequence[Sequence], live: Sequence[Sequence], steps: Sequence[ReplayStep] | None,
         noise: Sequence[float] | None) -> dict:
    """Part (c). `sim`, `live`: iteration rows [kind, start, seconds, batch]; `steps`: the live
    iterations' shapes (the replay's), `noise`: each live iteration's spread across rounds (%).
    When the two sequences match (kinds and batch sizes) iterations pair one to one and group by
    phase and by (phase, batch, query tokens, context bucket); otherwise each side groups by
    (phase, batch) on its own and only groups both have are compared."""
    matched = steps is not None and [(k, b) for k, _, _, b in sim] == [(k, b) for k, _, _, b in live]
    by_phase: dict = defaultdict(lambda: ([], [], []))
    by_bucket: dict = defaultdict(lambda: ([], [], []))
    if matched:
        for i, (s, l, st) in enumerate(zip(sim, live, steps)):
            x = noise[i] if noise is not None else NAN
            bucket = (st.kind, st.batch, st.query, context_bucket(st.context))
            for key, table in ((st.kind, by_phase), (bucket, by_bucket)):
                table[key][0].append(float(s[2]))
                table[key][1].append(float(l[2]))
                table[key][2].append(x)
    else:
        for side, rows in ((0, sim), (1, live)):
            for i, (k, _, sec, b) in enumerate(rows):
                x = [noise[i] if noise is not None and side == 1 else NAN]
                by_phase[k][side].append(float(sec))
                by_bucket[(k, b, None, None)][side].append(float(sec))
                if side == 1:
                    by_phase[k][2].extend(x)
                    by_bucket[(k, b, None, None)][2].extend(x)
    phase = {k: _stats(*v, matched) for k, v in sorted(by_phase.items()) if v[0] and v[1]}
    buckets = [{"phase": k[0], "batch": k[1], "query": k[2], "context": k[3], **_stats(*v, matched)}
               for k, v in sorted(by_bucket.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0, kv[0][3] or 0))
               if v[0] and v[1]]
    return {"matched": matched, "phase": phase, "buckets": buckets}


def decompose(row: ServingRow, w: Workload | None) -> dict:
    """One serving config's decomposed error (parts a-d). `w`: the replay's workload of the
    row's live timeline (None: no tokens kept were recorded; no shapes for part c)."""
    p, m, info = row.predicted, row.measured, row.rounds or {}
    live = row.live.iterations if row.live is not None else []
    acc = {"predicted_tokens_per_round": p.tokens_per_round, "measured_tokens_per_round": m.tokens_per_round,
           "error_pct": error_pct(p.tokens_per_round, m.tokens_per_round)}
    steps = None
    if w is not None:
        acc |= {"live_decode_tokens": sum(sum(k) for k in w.kept), "live_row_rounds": sum(len(k) for k in w.kept)}
        try:
            steps = replay(w, [it[2] for it in live], [it[1] for it in live]).steps
        except ReplayError:  # no shapes: cost groups by (phase, batch) on each side (rounds' note says why)
            steps = None
    dyn = info.get("dynamics_error_pct") or {}
    dynamics = {k: _median(dyn.get(k, [])) for k in TIMED} | {"per_round": dyn}
    c = cost(row.sim.iterations if row.sim is not None else [], live, steps, info.get("iteration_spread_pct"))
    c["phase_totals"] = {k: {"predicted_s": getattr(p, f"{k}_s"), "measured_s": getattr(m, f"{k}_s"),
                             "error_pct": error_pct(getattr(p, f"{k}_s"), getattr(m, f"{k}_s"))} for k in PHASES}
    split = info.get("split_half_pct") or {}
    e2e = {k: {"predicted": getattr(p, k), "measured": getattr(m, k),
               "error_pct": error_pct(getattr(p, k), getattr(m, k)), "noise_pct": split.get(k, NAN)} for k in TIMED}
    return {"rounds": info.get("rounds", 1), "method": info.get("method", "single round"), "note": info.get("note"),
            "acceptance": acc, "dynamics": dynamics, "cost": c, "end_to_end": e2e}


def _abs(values: list[float]) -> dict:
    v = [abs(x) for x in values if not math.isnan(x)]
    return {"n": len(v), "median_abs_error_pct": float(np.median(v)) if v else NAN,
            "max_abs_error_pct": float(max(v)) if v else NAN}


def plan_summary(per_config: dict[str, dict], closed: set[str]) -> dict:
    """Over the plan's serving configs: each part's median and max |error| (dynamics over the
    closed-loop configs and over all), cost per phase, and the end-to-end errors beside the
    median noise floor."""
    ds = list(per_config.values())
    loop = [d for label, d in per_config.items() if label in closed]
    out = {"configs": len(ds), "closed_loop_configs": len(loop),
           "acceptance": _abs([d["acceptance"]["error_pct"] for d in ds]),
           "dynamics": {"closed_loop": {k: _abs([d["dynamics"][k] for d in loop]) for k in TIMED},
                        "all": {k: _abs([d["dynamics"][k] for d in ds]) for k in TIMED}}}
    phases = sorted({k for d in ds for k in d["cost"]["phase"]})
    groups = {k: [d["cost"]["phase"][k] for d in ds if k in d["cost"]["phase"]] for k in phases}
    out["cost"] = {k: _abs([g["error_pct"] for g in gs]) | {"median_noise_pct": _median(g["noise_pct"] for g in gs)}
                   for k, gs in groups.items()}
    out["end_to_end"] = {k: _abs([d["end_to_end"][k]["error_pct"] for d in ds])
                         | {"median_noise_pct": _median(d["end_to_end"][k]["noise_pct"] for d in ds)} for k in TIMED}
    return out
