"""Error statistics of a set of (predicted, measured) configurations.

Besides per-config error, what matters for choosing settings is the ranking: Spearman's rho
over configs, and the regret of trusting the simulator's pick (how much slower, measured,
the predicted best is than the measured best).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

REQUIRED = ("config", "predicted_tok_s", "measured_tok_s")

# A serving config's figures: table name -> the key of simspec.sim.metrics.summarize and
# simspec.live.serving.summarize (which share them). mean_batch, sequences per speculative
# round, comes from each side's iteration log.
SUMMARY_KEYS = {"tok_s": "throughput_tok_s", "ttft_p50_s": "ttft_p50_s", "ttft_p99_s": "ttft_p99_s",
                "tpot_p50_s": "tpot_p50_s", "tpot_p99_s": "tpot_p99_s", "e2e_p50_s": "e2e_p50_s",
                "e2e_p99_s": "e2e_p99_s", "tokens_per_round": "mean_tokens_per_round"}
SERVING_METRICS = (*SUMMARY_KEYS, "mean_batch")


@dataclass(frozen=True)
class Agreement:
    n: int
    median_abs_error_pct: float
    max_abs_error_pct: float
    spearman_rho: float
    regret_pct: float
    predicted_best: str
    measured_best: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def error_pct(predicted, measured):
    """(predicted - measured) / measured x 100: a validation's one error formula, for every
    figure of every kind of row. Scalars or pandas Series; NaN where the measured figure is 0."""
    if isinstance(measured, pd.Series):
        return ((predicted - measured) / measured.where(measured != 0) * 100.0).astype(float)
    return (predicted - measured) / measured * 100.0 if measured != 0 else float("nan")


def error_table(rows: list[dict]) -> pd.DataFrame:
    """One row per config (records: simspec.validation.rows' Row.record()) with error_pct, the
    throughput's error."""
    df = pd.DataFrame(rows)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"rows lack {missing}")
    if (df["measured_tok_s"] <= 0).any():
        raise ValueError("a measured throughput is not positive")
    df["error_pct"] = error_pct(df["predicted_tok_s"], df["measured_tok_s"])
    return df


def agreement(df: pd.DataFrame) -> Agreement:
    """Median and max |error|, Spearman's rho, and regret of the predicted best."""
    err = df["error_pct"].abs()
    pred = df["predicted_tok_s"].to_numpy(float)
    meas = df["measured_tok_s"].to_numpy(float)
    rho = float(spearmanr(pred, meas).statistic) if len(df) > 1 else float("nan")
    ip, im = int(np.argmax(pred)), int(np.argmax(meas))
    regret = (1.0 - meas[ip] / meas[im]) * 100.0
    return Agreement(len(df), float(err.median()), float(err.max()), rho, regret,
                     str(df["config"].iloc[ip]), str(df["config"].iloc[im]))


def serving_table(rows: list[dict]) -> pd.DataFrame:
    """error_table's, plus error_<metric>_pct for every serving metric (throughput's is error_pct)."""
    df = error_table(rows)
    for m in SERVING_METRICS:
        if m == "tok_s":
            continue
        df[f"error_{m}_pct"] = error_pct(df[f"predicted_{m}"].astype(float), df[f"measured_{m}"].astype(float))
    return df


def serving_agreement(df: pd.DataFrame) -> dict:
    """Over serving configs: median and max |error| per metric; Spearman's rho and the regret of
    the simulator's pick on throughput (agreement()'s, under their usual names)."""
    out = agreement(df).as_dict()
    per = {}
    for m in SERVING_METRICS:
        err = (df["error_pct"] if m == "tok_s" else df[f"error_{m}_pct"]).abs().dropna()
        per[m] = {"median_abs_error_pct": float(err.median()) if len(err) else float("nan"),
                  "max_abs_error_pct": float(err.max()) if len(err) else float("nan")}
    out["metrics"] = per
    return out


def overlap_calls(df: pd.DataFrame) -> list[dict]:
    """Pipeline configs (one table: simspec.validation.rows.PipelineRow records), per drafter and
    gamma with both modes: does overlapping (PEARL's pre-drafting) pay, predicted and measured,
    and do the two agree (measured and agree: None before the live runs)."""
    keys = [k for k in ("dtype", "draft", "gamma") if k in df.columns]
    out = []
    for group, part in df.groupby(keys, sort=True):
        by = part.set_index("overlap")
        if sorted(by.index) != [False, True]:
            continue  # one mode only (or the same mode twice, named apart)
        p = bool(by.loc[True, "predicted_tok_s"] > by.loc[False, "predicted_tok_s"])
        m = bool(by.loc[True, "measured_tok_s"] > by.loc[False, "measured_tok_s"]) \
            if "measured_tok_s" in by.columns else None
        out.append({**{k: (int(v) if k == "gamma" else v) for k, v in zip(keys, group)},
                    "predicted_pays": p, "measured_pays": m, "agree": None if m is None else p == m})
    return out


def crossover_calls(df: pd.DataFrame) -> dict | None:
    """Closed-loop serving configs, per batch size (max_batch): does the best speculative config
    beat plain decoding, predicted and measured; and the batch size at which it stops (the
    smallest at which it does not; None: it beats plain at every batch size of the plan).
    `within_one_step`: the two stop at the same or adjacent batch sizes of the plan (never
    counts as one step past the largest). None without plain and speculative configs."""
    need = {"draft", "max_batch", "arrival", "predicted_tok_s"}
    if not need <= set(df.columns):
        return None
    closed = df[df["arrival"] == "closed"]
    measured = "measured_tok_s" in closed.columns and closed["measured_tok_s"].notna().all()
    batches, per = [], []
    for b, part in closed.groupby("max_batch", sort=True):
        plain, spec = part[part["draft"] == "none"], part[part["draft"] != "none"]
        if plain.empty or spec.empty:
            continue
        row = {"max_batch": int(b)}
        for side in ("predicted", "measured") if measured else ("predicted",):
            best = spec.loc[spec[f"{side}_tok_s"].idxmax()]
            row |= {f"{side}_best": str(best["config"]) if "config" in spec.columns else None,
                    f"{side}_speedup": float(best[f"{side}_tok_s"] / plain[f"{side}_tok_s"].max()),
                    f"{side}_pays": bool(best[f"{side}_tok_s"] > plain[f"{side}_tok_s"].max())}
        batches.append(int(b))
        per.append(row)
    if not per:
        return None

    def stops(side: str) -> int | None:
        return next((r["max_batch"] for r in per if not r[f"{side}_pays"]), None)

    out = {"batches": per, "predicted_stops_at": stops("predicted")}
    if measured:
        p, m = out["predicted_stops_at"], stops("measured")
        step = {b: i for i, b in enumerate(batches)}
        out |= {"measured_stops_at": m,
                "within_one_step": abs(step.get(p, len(batches)) - step.get(m, len(batches))) <= 1}
    return out
