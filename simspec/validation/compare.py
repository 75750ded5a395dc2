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
