"""The batch-aware answer: the best gamma (and drafter) for each batch-size bucket.

vLLM picks the number of speculative tokens from the number of running sequences, so each
bucket b is simulated as a saturated replica (closed loop, b users, max_batch = b) and every
gamma 0..G is tried for every drafter of the search, each drafter with the sub-knobs
(exit layer, vocabulary, placement, ...) of its best trial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from simspec.errors import InputError
from simspec.study import results, space
from simspec.study.evaluate import Evaluator
from simspec.study.knobs import Changes
from simspec.study.spec import IntRange, StudySpec


@dataclass
class Point:
    batch: int
    drafter: str       # "none" for gamma = 0
    gamma: int
    throughput_tok_s: float
    tpot_p50_s: float


def batch_sizes(spec: StudySpec, best: dict[str, Any]) -> list[int]:
    sched = spec.file.schedule
    if sched.batch_sizes:
        return sorted(set(sched.batch_sizes))
    mb = spec.file.search.max_batch
    top = (mb.high if isinstance(mb, IntRange) else max(mb)) if mb is not None else \
        int(best.get("max_batch") or spec.base.serving.max_batch)
    out, b = [], 1
    while b < top:
        out.append(b)
        b *= 2
    return out + [top]


def gammas(spec: StudySpec) -> list[int]:
    g = spec.file.search.gamma
    vals = g.values() if isinstance(g, IntRange) else sorted(set(g))
    return [v for v in vals if v > 0]


def drafter_params(spec: StudySpec, study, best: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per drafter kind: the knobs of its best trial (falling back to the overall best's)."""
    out: dict[str, dict[str, Any]] = {}
    trials = results.feasible_trials(study) or results.complete(study)
    sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
    for t in sorted(trials, key=lambda t: (sign * t.values[0], t.number)):
        k = results.knobs(t)
        kind = k.get("drafter")
        if kind and kind not in out:
            out[kind] = k
    for kind in space.drafter_choices(spec):
        if kind not in out:
            out[kind] = {**{k: v for k, v in best.items() if k not in ("drafter", "exit_layer", "vocab", "tree")
                            and not k.startswith("policy")},
                         **space.probe(spec, kind, 1)}
    return out


def saturated(spec: StudySpec, b: int) -> Changes:
    """The scenario changes of bucket b: a closed loop of b users on a replica with max_batch = b."""
    sched = spec.file.schedule
    n = max(sched.min_requests, b * sched.requests_per_slot)
    return {"serving": {"max_batch": b},
            "workload": {"arrival": "closed", "concurrency": b, "rate": None, "requests": n}}


def point_knobs(best: dict[str, Any], kind_knobs: dict[str, Any] | None, kind: str | None, g: int) -> dict[str, Any]:
    """The knobs of one schedule point: the drafter's best sub-knobs, the best trial's
    placement and dtype, gamma g (chain, max_batch left to the bucket)."""
    common = {k: v for k, v in best.items() if k in ("placement", "dtype")}
    if g == 0 or kind is None:
        return {**common, "gamma": 0}
    p = {k: v for k, v in (kind_knobs or {}).items() if not k.startswith("policy")}  # a chain of g
    p = {**p, **common, "gamma": g, "drafter": kind}
    p.pop("tree", None)
    p.pop("max_batch", None)
    return p


def run_schedule(spec: StudySpec, ev: Evaluator, study, best: dict[str, Any], workers: int | None = None,
                 meanwhile: Callable[[], Any] | None = None) -> list[Point]:
    """Every (batch, drafter, gamma) point, simulated by `workers` processes (default: both
    cores of a 2-core machine; forked where the platform forks). The points are independent and
    the simulator deterministic, so they are the same however they are shared out. `meanwhile`
    is called once, while they run (in this process, which would otherwise wait)."""
    per_kind = drafter_params(spec, study, best)
    tasks: list[tuple[int, str, dict[str, Any]]] = []
    for b in batch_sizes(spec, best):
        tasks.append((b, "none", point_knobs(best, None, None, 0)))
        for kind, kp in per_kind.items():
            for g in gammas(spec):
                tasks.append((b, kind, point_knobs(best, kp, kind, g)))
    figures = _simulate_all(spec, ev, tasks, workers, meanwhile)
    return [Point(b, kind, int(p["gamma"]), s[0], s[1]) for (b, kind, p), s in zip(tasks, figures) if s is not None]


_TASK: tuple | None = None  # (spec, evaluator) a forked worker inherits


def _one(task: tuple[int, str, dict[str, Any]]) -> tuple[float, float] | None:
    spec, ev = _TASK
    b, _, p = task
    try:
        s = ev.evaluate(p, saturated(spec, b))
    except InputError:
        return None  # a point the space cannot simulate (e.g. a drafter's gamma out of its range)
    return s["throughput_tok_s"], s["tpot_p50_s"]


def _simulate_all(spec: StudySpec, ev: Evaluator, tasks: list, workers: int | None,
                  meanwhile: Callable[[], Any] | None = None) -> list[tuple[float, float] | None]:
    global _TASK
    import multiprocessing as mp

    if workers is None:
        try:
            workers = min(2, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            workers = min(2, os.cpu_count() or 1)
    _TASK = (spec, ev)
    try:
        if workers < 2 or len(tasks) < 2 * workers or "fork" not in mp.get_all_start_methods():
            if meanwhile is not None:
                meanwhile()
            return [_one(t) for t in tasks]
        with mp.get_context("fork").Pool(workers) as pool:
            pending = pool.map_async(_one, tasks, chunksize=max(1, len(tasks) // (4 * workers)))
            if meanwhile is not None:
                meanwhile()
            return pending.get()
    finally:
        _TASK = None


def best_per_bucket(pts: list[Point], drafter: str | None = None) -> dict[int, Point]:
    """Highest throughput per batch size (ties: the smaller gamma); `drafter` restricts to
    plain decoding plus that one drafter (an engine runs one drafter)."""
    out: dict[int, Point] = {}
    for p in pts:
        if drafter is not None and p.drafter not in ("none", drafter):
            continue
        cur = out.get(p.batch)
        if cur is None or p.throughput_tok_s > cur.throughput_tok_s * (1 + 1e-9) or (
                abs(p.throughput_tok_s - cur.throughput_tok_s) <= 1e-9 * cur.throughput_tok_s and p.gamma < cur.gamma):
            out[p.batch] = p
    return dict(sorted(out.items()))


def ranges(best: dict[int, Point]) -> list[list[int]]:
    """[[lo, hi, gamma], ...]: bucket b covers b .. next bucket - 1; equal neighbours merge."""
    bs = sorted(best)
    out: list[list[int]] = []
    for i, b in enumerate(bs):
        hi = bs[i + 1] - 1 if i + 1 < len(bs) else b
        g = best[b].gamma
        if out and out[-1][2] == g:
            out[-1][1] = hi
        else:
            out.append([b, hi, g])
    return out


POINT_COLUMNS = ("batch", "drafter", "gamma", "throughput_tok_s", "tpot_p50_s")


def points_csv(pts: list[Point]) -> str:
    """schedule.csv: every simulated (batch, drafter, gamma) point, what `simspec export` and
    `simspec predict` re-read instead of simulating the schedule again."""
    lines = [",".join(POINT_COLUMNS)]
    lines += [f"{p.batch},{p.drafter},{p.gamma},{p.throughput_tok_s!r},{p.tpot_p50_s!r}" for p in pts]
    return "\n".join(lines) + "\n"


def read_points(path) -> list[Point]:
    """The points of a schedule.csv; a malformed file is an InputError naming it."""
    import csv
    from pathlib import Path

    from simspec.limits import read_bytes

    p = Path(path)
    # only a regular file of bounded size (limits.read_bytes); undecodable bytes fail as bad rows
    rows = list(csv.DictReader(read_bytes(p).decode("utf-8", errors="replace").splitlines()))
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            out.append(Point(int(r["batch"]), str(r["drafter"]), int(r["gamma"]),
                             float(r["throughput_tok_s"]), float(r["tpot_p50_s"])))
        except (KeyError, TypeError, ValueError):
            raise InputError(str(p), f"line {i}", f"expected the columns {', '.join(POINT_COLUMNS)}") from None
    if not out:
        raise InputError(str(p), None, "the schedule holds no points")
    return out
