"""Predicted-vs-measured scatter (PNG), with the y = x line and a +-10% band."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simspec.report.mpl import pyplot, save


def scatter(df: pd.DataFrame, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    x, y = df["measured_tok_s"], df["predicted_tok_s"]
    lo, hi = 0.9 * min(x.min(), y.min()), 1.1 * max(x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15, label="±10%")
    ax.scatter(x, y, zorder=3)
    for _, r in df.iterrows():
        ax.annotate(str(r["config"]), (r["measured_tok_s"], r["predicted_tok_s"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured tokens/s (live)")
    ax.set_ylabel("predicted tokens/s (simspec)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save(fig, path)
