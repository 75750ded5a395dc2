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


def error_table(rows: list[dict]) -> pd.DataFrame:
    """One row per config with error_pct = (predicted - measured) / measured x 100."""
    df = pd.DataFrame(rows)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"rows lack {missing}")
    if (df["measured_tok_s"] <= 0).any():
        raise ValueError("a measured throughput is not positive")
    df["error_pct"] = (df["predicted_tok_s"] - df["measured_tok_s"]) / df["measured_tok_s"] * 100.0
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
        pred, meas = df[f"predicted_{m}"].astype(float), df[f"measured_{m}"].astype(float)
        df[f"error_{m}_pct"] = ((pred - meas) / meas.where(meas != 0) * 100.0).astype(float)
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
