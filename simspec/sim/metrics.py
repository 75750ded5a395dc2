"""The summary a user reads: throughput, TTFT, TPOT, end-to-end latency, device use."""

from __future__ import annotations

import numpy as np

from simspec.sim.records import Records


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def summarize(rec: Records, sim_time: float, busy: dict[str, float], cost_per_hour: float,
              wall_s: float, prefill_tokens: int = 1) -> dict:
    """One flat dict of figures (JSON-ready). prefill_tokens: tokens per request the prefill
    makes outside any round (1; 0 when the prefill is itself the first round)."""
    done = ~np.isnan(rec.finish)
    ttft = (rec.first_token - rec.arrival)[done]
    e2e = (rec.finish - rec.arrival)[done]
    multi = done & (rec.tokens > 1)
    tpot = ((rec.finish - rec.first_token)[multi] / (rec.tokens[multi] - 1))
    out_tokens = int(rec.tokens[done].sum())
    decode_tokens = int((rec.tokens[done] - prefill_tokens).sum())
    rounds = int(rec.rounds[done].sum())
    thr = out_tokens / sim_time if sim_time > 0 else float("nan")
    summary = {
        "throughput_tok_s": thr,
        "request_throughput_req_s": int(done.sum()) / sim_time if sim_time > 0 else float("nan"),
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50), "tpot_p99_s": _pct(tpot, 99),
        "e2e_p50_s": _pct(e2e, 50), "e2e_p99_s": _pct(e2e, 99),
        "mean_tokens_per_round": decode_tokens / rounds if rounds else float("nan"),
        "mean_accepted_per_round": int(rec.accepted[done].sum()) / rounds if rounds else float("nan"),
        "requests": int(done.sum()),
        "output_tokens": out_tokens,
        "sim_time_s": sim_time,
        "wall_s": wall_s,
        "cost_per_mtok": (cost_per_hour * sim_time / 3600.0) / out_tokens * 1e6 if out_tokens else float("nan"),
    }
    for name, b in busy.items():
        summary[f"busy_{name}"] = b / sim_time if sim_time > 0 else float("nan")
    return summary
