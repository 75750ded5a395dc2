"""A serving validation's decomposed error (PNG): one row of bars per config in four panels,
(a) acceptance, (b) serving dynamics, (c) cost per iteration by phase, (d) end to end, the
run's noise floor drawn beside (c) and (d) as whiskers: an error inside its whisker is noise."""

from __future__ import annotations

import math
from pathlib import Path

from simspec.report.mpl import pyplot, save

DYNAMICS = (("tok_s", "throughput"), ("ttft_p50_s", "TTFT p50"), ("tpot_p50_s", "TPOT p50"))
PHASES = (("prefill", "prefill"), ("round", "round"))


def _num(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) else float("nan")


def _bars(ax, labels: list[str], series: list[tuple[str, list[float], list[float] | None]], title: str) -> None:
    n, k = len(labels), max(1, len(series))
    h = 0.8 / k
    for j, (name, vals, noise) in enumerate(series):
        ys = [i - 0.4 + h * (j + 0.5) for i in range(n)]
        vals = [0.0 if math.isnan(v) else v for v in vals]
        xerr = None if noise is None else [0.0 if math.isnan(x) else x for x in noise]
        bars = ax.barh(ys, vals, height=h, xerr=xerr, color=f"C{j}", label=name, capsize=2,
                       error_kw={"elinewidth": 0.8, "ecolor": "black"})
        ax.bar_label(bars, fmt="%+.2f%%", fontsize=6, padding=2)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("error, % (predicted vs measured)", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")


def decomposition_figure(block: dict, path: Path, title: str) -> Path:
    """`block`: the JSON's serving.decomposition ({"plan": ..., "configs": {label: ...}})."""
    per = block["configs"]
    labels = list(per)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 3.0 + 0.9 * len(labels)), dpi=100)
    (a, b), (c, d) = axes
    _bars(a, labels, [("tokens per round", [_num(per[x]["acceptance"]["error_pct"]) for x in labels], None)],
          "(a) acceptance: simulator's replay vs live tokens per round")
    _bars(b, labels, [(t, [_num(per[x]["dynamics"][m]) for x in labels], None) for m, t in DYNAMICS],
          "(b) serving dynamics: policy replayed on live iteration times vs live")

    def phase(x: str, p: str, key: str) -> float:
        return _num(per[x]["cost"]["phase"].get(p, {}).get(key))

    _bars(c, labels, [(t, [phase(x, p, "error_pct") for x in labels], [phase(x, p, "noise_pct") for x in labels])
                      for p, t in PHASES],
          "(c) cost per iteration by phase (whisker: median spread across rounds)")
    _bars(d, labels, [(t, [_num(per[x]["end_to_end"][m]["error_pct"]) for x in labels],
                       [_num(per[x]["end_to_end"][m]["noise_pct"]) for x in labels]) for m, t in DYNAMICS],
          "(d) end to end (whisker: split-half noise floor)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save(fig, path)
