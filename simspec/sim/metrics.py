"""The summary a user reads: throughput, TTFT, TPOT, end-to-end latency, device use.

`serving_figures` is the one definition of the serving figures, for a simulated run
(`summarize`, over Records) and a live one (simspec.live.serving.summarize): a validation
compares figures computed by the same lines from two sets of timestamps.
"""

from __future__ import annotations

import numpy as np

from simspec.sim.records import Records


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def serving_figures(arrival: np.ndarray, first_token: np.ndarray, finish: np.ndarray,
                    tokens: np.ndarray, rounds: np.ndarray, accepted: np.ndarray, elapsed: float,
                    prefill_tokens: int = 1) -> dict:
    """Figures over the finished requests (finish not NaN). prefill_tokens: tokens per request
    the prefill makes outside any round (1; 0 when the prefill is itself the first round)."""
    finish = np.asarray(finish, dtype=float)
    tokens = np.asarray(tokens, dtype=np.int64)
    done = ~np.isnan(finish)
    first_token = np.asarray(first_token, dtype=float)
    arrival = np.asarray(arrival, dtype=float)
    ttft = (first_token - arrival)[done]
    e2e = (finish - arrival)[done]
    multi = done & (tokens > 1)
    tpot = (finish - first_token)[multi] / (tokens[multi] - 1)
    out_tokens = int(tokens[done].sum())
    decode_tokens = int((tokens[done] - prefill_tokens).sum())
    n_rounds = int(np.asarray(rounds, dtype=np.int64)[done].sum())
    n_done = int(done.sum())
    nan = float("nan")
    return {
        "throughput_tok_s": out_tokens / elapsed if elapsed > 0 else nan,
        "request_throughput_req_s": n_done / elapsed if elapsed > 0 else nan,
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50), "tpot_p99_s": _pct(tpot, 99),
        "e2e_p50_s": _pct(e2e, 50), "e2e_p99_s": _pct(e2e, 99),
        "mean_tokens_per_round": decode_tokens / n_rounds if n_rounds else nan,
        "mean_accepted_per_round": int(np.asarray(accepted, dtype=np.int64)[done].sum()) / n_rounds if n_rounds else nan,
        "requests": n_done,
        "output_tokens": out_tokens,
    }


def summarize(rec: Records, sim_time: float, busy: dict[str, float], cost_per_hour: float,
              wall_s: float, prefill_tokens: int = 1) -> dict:
    """One flat dict of figures (JSON-ready): the serving figures, then the simulator's own."""
    summary = serving_figures(rec.arrival, rec.first_token, rec.finish, rec.tokens, rec.rounds,
                              rec.accepted, sim_time, prefill_tokens)
    out_tokens = summary["output_tokens"]
    summary["sim_time_s"] = sim_time
    summary["wall_s"] = wall_s
    summary["cost_per_mtok"] = (cost_per_hour * sim_time / 3600.0) / out_tokens * 1e6 if out_tokens else float("nan")
    for name, b in busy.items():
        summary[f"busy_{name}"] = b / sim_time if sim_time > 0 else float("nan")
    return summary
