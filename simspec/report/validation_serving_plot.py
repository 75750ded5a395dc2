"""A serving validation's figure (PNG): predicted vs measured per metric, one point per serving
config, and per config the batch size over time, live beside simulated."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from simspec.report.mpl import pyplot, save

METRICS = (("tok_s", "throughput (tok/s)"), ("ttft_p50_s", "TTFT p50 (s)"), ("ttft_p99_s", "TTFT p99 (s)"),
           ("tpot_p50_s", "TPOT p50 (s)"), ("tpot_p99_s", "TPOT p99 (s)"), ("e2e_p50_s", "end-to-end p50 (s)"),
           ("e2e_p99_s", "end-to-end p99 (s)"), ("mean_batch", "mean batch (seqs/round)"),
           ("tokens_per_round", "tokens per round"))


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def _metric(ax, df: pd.DataFrame, m: str, title: str) -> None:
    x, y = df[f"measured_{m}"].astype(float), df[f"predicted_{m}"].astype(float)
    vals = _finite(list(x) + list(y))
    if vals:
        lo, hi = min(vals), max(vals)
        pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
        lo, hi = lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.fill_between([lo, hi], [lo - 0.1 * abs(lo), hi - 0.1 * abs(hi)], [lo + 0.1 * abs(lo), hi + 0.1 * abs(hi)],
                        color="grey", alpha=0.15)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    for i, (_, r) in enumerate(df.iterrows()):
        ax.scatter([r[f"measured_{m}"]], [r[f"predicted_{m}"]], color=f"C{i % 10}", zorder=3,
                   label=str(r["config"]))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("measured (live)", fontsize=7)
    ax.set_ylabel("predicted", fontsize=7)
    ax.tick_params(labelsize=7)


def _timeline(ax, label: str, tl: dict) -> None:
    """Sequences per speculative round over time (a segment per round), prefills as ticks."""
    for side, key, color in (("live", "live_iterations", "C0"), ("simulated", "sim_iterations", "C1")):
        its = tl.get(key) or []
        rounds = [(t, t + dt, b) for kind, t, dt, b in its if kind == "round"]
        if rounds:
            ax.hlines([b for _, _, b in rounds], [a for a, _, _ in rounds], [e for _, e, _ in rounds],
                      color=color, lw=2, alpha=0.8, label=f"{side}: batch per round")
        pre = [(t, b) for kind, t, _, b in its if kind == "prefill"]
        if pre:
            ax.scatter([t for t, _ in pre], [b for _, b in pre], marker="|", color=color, s=60,
                       label=f"{side}: prefill (admitted)")
    ax.set_title(f"{label}: batch size over time", fontsize=9)
    ax.set_xlabel("seconds from the start", fontsize=8)
    ax.set_ylabel("sequences", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")


def serving_figure(df: pd.DataFrame, timelines: dict, path: Path, title: str) -> Path:
    plt = pyplot()
    n = len(df)
    fig = plt.figure(figsize=(11, 9.5 + 2.4 * n), dpi=100)
    grid = fig.add_gridspec(3 + n, 3, height_ratios=[3.0] * 3 + [2.2] * n)
    for i, (m, name) in enumerate(METRICS):
        ax = fig.add_subplot(grid[i // 3, i % 3])
        _metric(ax, df, m, name)
        if i == 0:
            fig.legend(*ax.get_legend_handles_labels(), loc="upper center", fontsize=7, ncol=min(n, 3),
                       bbox_to_anchor=(0.5, 0.985))
    for j, label in enumerate(df["config"]):
        _timeline(fig.add_subplot(grid[3 + j, :]), str(label), timelines.get(label) or {})
    fig.suptitle(title, fontsize=10, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save(fig, path)
