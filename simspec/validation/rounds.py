"""Repeated, interleaved live runs: R rounds of a plan's configs, each round in its own seeded
random order, so that a slow phase of a shared host (a neighbour on the core for seconds to
minutes) lands on different configs in different rounds instead of on one config's whole run
(randomized multiple interleaved trials, Abedi & Brecht, ICPE 2017).

How the rounds become one figure set per config:
  * a closed-loop serving config's iteration sequence is deterministic (greedy, same prompts,
    same policy): if it is the same in every round (kinds, batch sizes, tokens kept per row), each
    iteration's fastest-state time (the minimum over rounds, as `timeit` takes) forms the
    config's protocol timeline, and its figures are the serving policy replayed on it
    (simspec.validation.replay, summarised by simspec.sim.metrics.serving_figures);
  * a batch-1 config's run is deterministic the same way (greedy, same prompts): if every round
    made the same timed calls (phases in order, tokens kept per round), each call's
    fastest-state time forms the config's protocol run, and its figures are those calls summed
    (per phase, and new tokens over their total) -- the estimator the profile it is priced with
    used for every point (simspec.timing.estimate); the raw median stays beside it;
  * otherwise (Poisson arrivals, or a sequence that moved) the raw per-round figures are kept:
    their median is the measured figure, p10 / p90 across rounds its spread;
  * every config's noise floor is the split-half disagreement: the same estimate from the odd
    rounds and from the even rounds, |a - b| / mean(a, b).

Torch-free: it combines what simspec.validation.live measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import fields, replace

import numpy as np

from simspec.live.stats import PHASES  # the live engine's timed phases (torch-free module)
from simspec.validation.compare import error_pct
from simspec.validation.replay import ReplayError, Workload, replay
from simspec.validation.rows import Figures, ServingFigures, ServingMeasured, Timeline

# the figures a replay reproduces (tokens per round and mean batch are counts, not times)
TIMED = ("tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s")
NAN = float("nan")


def interleaved(n_configs: int, rounds: int, seed: int = 0) -> list[list[int]]:
    """The order the configs run in, round by round (0-based config indices). Same seed, same
    order. Round 1 is a seeded permutation; each later round runs the previous round's second
    half first, in its order, then the first half in a fresh seeded order, so that a config's
    two runs are at least half a round apart: a neighbour's slow phase of a minute cannot land
    on both (two independent permutations put a config last in one round and first in the
    next about once in n, and its rounds then agree with each other, not with the machine)."""
    if rounds < 1:
        raise ValueError(f"rounds {rounds} must be >= 1")
    rng = np.random.default_rng(seed)
    order = [rng.permutation(n_configs).tolist()]
    half = n_configs // 2
    for _ in range(rounds - 1):
        prev = order[-1]
        early = prev[:half]
        order.append(prev[half:] + [early[i] for i in rng.permutation(len(early))])
    return order


def same_sequence(timelines: Sequence[Timeline]) -> str | None:
    """None when every round ran the same iterations (kinds, batch sizes) and kept the same
    tokens per row per round; else what differs, in words."""
    first = timelines[0]
    shape = [(it[0], it[3]) for it in first.iterations]
    for k, t in enumerate(timelines[1:], 2):
        other = [(it[0], it[3]) for it in t.iterations]
        if other != shape:
            i = next((j for j, (a, b) in enumerate(zip(shape, other)) if a != b), min(len(shape), len(other)))
            return (f"round {k} ran another iteration sequence than round 1 (from iteration {i + 1}; "
                    f"{len(other)} vs {len(shape)} iterations)")
        if t.kept != first.kept:
            return f"round {k} kept other tokens per round than round 1"
    return None


def fastest(timelines: Sequence[Timeline]) -> list[float]:
    """Each iteration's fastest-state time: the minimum over rounds (sequences must match)."""
    return np.min(np.array([[float(it[2]) for it in t.iterations] for t in timelines]), axis=0).tolist()


def iteration_spread_pct(timelines: Sequence[Timeline]) -> list[float] | None:
    """Per iteration, the spread of its time across rounds: (p90 - p10) / min x 100
    (None with one round)."""
    if len(timelines) < 2:
        return None
    s = np.array([[float(it[2]) for it in t.iterations] for t in timelines])
    lo = s.min(axis=0)
    spread = (np.percentile(s, 90, axis=0) - np.percentile(s, 10, axis=0)) / np.where(lo > 0, lo, np.nan) * 100.0
    return [round(float(x), 4) for x in spread]


def disagreement_pct(a: float, b: float) -> float:
    """|a - b| / mean(a, b) x 100: how far two halves' estimates are apart."""
    m = (a + b) / 2.0
    return abs(a - b) / m * 100.0 if m and not (math.isnan(a) or math.isnan(b)) else NAN


def spread(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if not len(v):
        return {"median": NAN, "p10": NAN, "p90": NAN}
    return {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}


def replay_figures(w: Workload, seconds: Sequence[float], starts: Sequence[float] | None = None) -> tuple[dict, list]:
    """(ServingFigures' fields, iteration rows) of the policy replayed on these iteration times."""
    r = replay(w, seconds, starts)
    rows = [s.row() for s in r.steps]
    return ServingFigures.summary(r.figures, rows), rows


def _median(values: Sequence[float]) -> float:
    """The median across rounds, to 9 decimals: the mean of two figures already rounded (a phase's
    seconds) can sit on a rounding edge that the JSON's 15 digits would move, and --measured must
    write the same table again."""
    return round(float(np.median(values)), 9)


def _halves(rounds: list) -> tuple[list, list]:
    """Odd rounds (1, 3, ...) and even rounds (2, 4, ...)."""
    return rounds[0::2], rounds[1::2]


def combine_serving(per_round: list[tuple[ServingMeasured, Timeline]],
                    workload: Callable[[Timeline], Workload], closed: bool) -> tuple[ServingMeasured, Timeline, dict]:
    """One serving config's rounds as (measured figures, the live timeline they stand for, the
    rounds record the JSON keeps). `workload(timeline)`: the replay's workload of a round."""
    measured = [m for m, _ in per_round]
    timelines = [t for _, t in per_round]
    raw = {m: [float(getattr(x, m)) for x in measured] for m in (*TIMED, "tokens_per_round", "mean_batch")}
    dynamics = {m: [] for m in TIMED}
    failed = None
    for m, t in per_round:  # part (b): each round's own times through the policy, against its own figures
        try:
            fig, _ = replay_figures(workload(t), [it[2] for it in t.iterations], [it[1] for it in t.iterations])
        except ReplayError as exc:  # a finding, not a reason to lose an hour's measurements
            failed = f"the serving policy could not replay a round's live record ({exc})"
            fig = dict.fromkeys(TIMED, NAN)
        for k in TIMED:
            dynamics[k].append(error_pct(fig[k], float(getattr(m, k))))
    R = len(per_round)
    why = same_sequence(timelines) if R > 1 else None
    if failed and why is None and R > 1:
        why = failed
    info: dict = {"rounds": R, "per_round": raw, "spread": {m: spread(v) for m, v in raw.items()},
                  "dynamics_error_pct": dynamics, "identical": None if R == 1 else why is None, "note": why or failed,
                  "iteration_spread_pct": iteration_spread_pct(timelines) if R > 1 and why is None else None}
    if R == 1:
        info["method"] = "single round"
        info["split_half_pct"] = {m: NAN for m in TIMED}
        return measured[0], timelines[0], info
    if closed and why is None:
        info["method"] = "fastest-state"
        base = timelines[0]
        w = workload(base)
        fig, rows = replay_figures(w, fastest(timelines))
        odd, even = _halves(timelines)
        a, _ = replay_figures(w, fastest(odd))
        b, _ = replay_figures(w, fastest(even))
        info["split_half_pct"] = {m: disagreement_pct(a[m], b[m]) for m in TIMED}
        elapsed = rows[-1][1] + rows[-1][2]
        out = replace(_totals(measured), **fig, elapsed_s=round(elapsed, 4))
        return out, Timeline(base.arrivals, rows, base.kept), info
    info["method"] = "raw median"
    if why is not None:  # expected with Poisson arrivals (a wake-up moves an admission), a finding in a closed loop
        info["note"] = f"{why}: raw figures (median across rounds)" if closed else \
            f"{why} (Poisson arrivals: raw figures, median across rounds)"
    odd, even = _halves(measured)
    info["split_half_pct"] = {m: disagreement_pct(float(np.median([getattr(x, m) for x in odd])),
                                                  float(np.median([getattr(x, m) for x in even]))) for m in TIMED}
    med = {m: _median(v) for m, v in raw.items()}
    k = int(np.argsort(raw["tok_s"])[(R - 1) // 2])  # the median round's timeline stands for the config
    info["timeline_round"] = k + 1
    return replace(_totals(measured), **med, elapsed_s=measured[k].elapsed_s), timelines[k], info


def _totals(measured: list[ServingMeasured]) -> ServingMeasured:
    """Round 1's counts, the median phase seconds, the wall and CPU seconds of all rounds, and
    the outputs equal to the trace in every round (the fewest)."""
    first = measured[0]
    phases = {f"{k}_s": round(float(np.median([getattr(m, f"{k}_s") for m in measured])), 4)
              for k in ("prefill", "draft", "verify", "other")}
    return replace(first, **phases, wall_s=round(sum(m.wall_s for m in measured), 2),
                   cpu_s=round(sum(m.cpu_s for m in measured), 2),
                   outputs_equal_trace=min(m.outputs_equal_trace for m in measured))


def combine_plain(per_round: list[Figures]) -> tuple[Figures, dict]:
    """A batch-1 or pipeline config's rounds: the median of each timed figure across rounds (counts
    from round 1, wall and CPU seconds summed, the fewest outputs equal to the trace), with the
    spread and split-half disagreement of throughput."""
    R = len(per_round)
    tok = [float(m.tok_s) for m in per_round]
    info = {"rounds": R, "method": "single round" if R == 1 else "raw median",
            "per_round": {"tok_s": tok, "tokens_per_round": [float(m.tokens_per_round) for m in per_round]},
            "spread": {"tok_s": spread(tok)}, "split_half_pct": {"tok_s": NAN}}
    if R == 1:
        return per_round[0], info
    odd, even = _halves(tok)
    info["split_half_pct"] = {"tok_s": disagreement_pct(float(np.median(odd)), float(np.median(even)))}
    first, changes = per_round[0], {}
    for f in fields(first):
        vals = [getattr(m, f.name) for m in per_round]
        if f.name in ("wall_s", "cpu_s"):
            changes[f.name] = round(sum(vals), 2)
        elif f.name == "outputs_equal_trace":
            changes[f.name] = min(vals)
        elif isinstance(vals[0], float):
            changes[f.name] = _median(vals)
    return replace(first, **changes), info


def combine_batch1(per_round: list[tuple[Figures, Timeline]]) -> tuple[Figures, dict]:
    """A batch-1 config's rounds, each (measured figures, its timed calls as a Timeline:
    simspec.validation.live.calls_timeline): fastest-state when every round made the same calls,
    else combine_plain's raw median (with the reason in `note`)."""
    measured = [m for m, _ in per_round]
    timelines = [t for _, t in per_round]
    out, info = combine_plain(measured)
    if len(per_round) == 1:
        return out, info
    info["raw_median"] = {"tok_s": out.tok_s, **{f"{k}_s": getattr(out, f"{k}_s") for k in PHASES}}
    why = same_sequence(timelines)
    if why is not None:
        info["note"] = f"{why}: raw figures (median across rounds)"
        return out, info
    names = [it[0] for it in timelines[0].iterations]
    odd, even = _halves(timelines)
    a, b = (_call_figures(names, fastest(h), out.new_tokens)["tok_s"] for h in (odd, even))
    spread_calls = iteration_spread_pct(timelines)
    info.update(method="fastest-state", split_half_pct={"tok_s": disagreement_pct(a, b)}, calls=len(names),
                call_spread_pct_median=round(float(np.median(spread_calls)), 4) if spread_calls else NAN)
    return replace(out, **_call_figures(names, fastest(timelines), out.new_tokens)), info


def _call_figures(names: Sequence[str], seconds: Sequence[float], new_tokens: int) -> dict:
    """Throughput and per-phase seconds of one run's calls."""
    phases = dict.fromkeys(PHASES, 0.0)
    for name, sec in zip(names, seconds):
        phases[name] += float(sec)
    total = sum(phases.values())
    return {"tok_s": round(new_tokens / total, 9) if total else 0.0, **{f"{k}_s": round(v, 4) for k, v in phases.items()}}


def run_interleaved(n_configs: int, rounds: int, seed: int, measure: Callable[[int, int], object],
                    progress: Callable[[int, int, int, object | None], None] | None = None) -> list[list]:
    """Measure every config `rounds` times in interleaved() order: measure(config, round) for
    each, round by round (1-based rounds, 0-based configs). Per config, its results in round
    order. `progress(round, position in the round, config, result or None before it runs)`."""
    out: list[list] = [[] for _ in range(n_configs)]
    for r, perm in enumerate(interleaved(n_configs, rounds, seed), 1):
        for pos, i in enumerate(perm, 1):
            if progress:
                progress(r, pos, i, None)
            res = measure(i, r)
            out[i].append(res)
            if progress:
                progress(r, pos, i, res)
    return out
