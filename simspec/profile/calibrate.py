"""Calibrate a profile to this machine in about a minute: time a few well-chosen points, refit.

A full capture takes 4-12 minutes per model; a profile from another processor can be 30% off
(AMX bf16 GEMMs against AVX-512 BF16 ones: the gap grows with the tokens per forward, since
small forwards are bound by memory bandwidth and large ones by the GEMM units). So the
calibration times decode forwards across tokens per forward (b x q from 1 to 32, at two
contexts), a few prefills across prompt tokens, and scales the profile's measured grid by
per-class factors that are piecewise linear in log tokens per forward (decode class: decode
rows and the head-alone rows; prefill class: prefill rows). Every timing column is scaled
alike, so the per-layer / head split (early exit, trimmed heads) keeps its shape. A few more
points, not used in the fit, measure how well the calibrated profile prices this machine.
All points are timed in one run of the timing protocol (simspec.timing: interleaved passes,
fastest pass per point, stopped when odd and even passes agree or the budget ends).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from simspec.profile.costmodel import ProfileCostModel
from simspec.timing import estimate
from simspec.timing.protocol import Protocol, Result, run

# (batch, q, context): tokens per forward 1..32, grouped by (batch, context) to fill each cache once.
# The batch-1 line takes every q up to 8 (verifying gamma 0..7): a calibrated price is exact
# where a factor was measured, and between measured points it inherits the source grid's
# interpolation, which misses this host's kernel steps (one fp32 thread: q 3 -> 4 and 6 -> 7;
# a calibrated 7-token verify read 14% low when only q 4 and 8 were timed).
DECODE_POINTS = ((1, 1, 512), (1, 2, 512), (1, 3, 512), (1, 4, 512), (1, 5, 512), (1, 6, 512), (1, 7, 512),
                 (1, 8, 512), (1, 12, 512), (1, 1, 2048), (4, 1, 512), (4, 4, 512), (8, 4, 512), (16, 2, 2048))
PREFILL_POINTS = ((1, 32), (1, 128), (1, 384), (2, 256))
HOLDOUT = (("decode", 1, 6, 1024), ("decode", 2, 3, 512), ("prefill", 1, 256, 0))
TIME_COLUMNS = ("total_s", "total_median_s", "total_max_s", "layer_s", "head_s", "rest_s")


@dataclass
class Point:
    kind: str
    batch: int
    q: int
    context: int
    measured_s: float
    profiled_s: float = float("nan")  # the source profile's price of it (set by `calibrate`)
    calibrated_s: float = float("nan")
    slower_s: float = float("nan")  # the slower half's estimate (odd vs even passes; measured_s: all)
    noise: float = float("nan")  # (median - min) / min over the point's passes

    @property
    def tokens(self) -> int:
        return self.batch * self.q

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("kind", "batch", "q", "context", "measured_s", "profiled_s",
                                               "calibrated_s", "slower_s", "noise")}


class Factor:
    """A scale factor piecewise linear in log(tokens per forward), constant past its ends."""

    def __init__(self, points: list[Point]) -> None:
        by: dict[int, list[float]] = {}
        for p in points:
            by.setdefault(p.tokens, []).append(math.log(p.measured_s / p.profiled_s))
        self.tokens = sorted(by)
        self.log_ratio = [statistics.fmean(by[t]) for t in self.tokens]

    def __call__(self, tokens: float) -> float:
        return math.exp(float(np.interp(math.log(max(tokens, 1)), np.log(self.tokens), self.log_ratio)))

    def as_dict(self) -> dict:
        return {str(t): round(math.exp(r), 4) for t, r in zip(self.tokens, self.log_ratio)}


def calibrated_frame(df, decode: Factor, prefill: Factor):
    """The profile's rows with every timing column scaled by its class's factor."""
    out = df.copy()
    tokens = out["batch"] * out["q"]
    f = np.where(out["kind"] == "prefill", [prefill(t) for t in tokens], [decode(t) for t in tokens])
    for col in TIME_COLUMNS:
        if col in out:
            out[col] = out[col] * f
    return out


# About a minute and a half at most: passes spread over at least 40 s (slow phases of seconds
# to over a minute), stopped when odd and even passes agree within 2% (median) / 5% (max).
PROTOCOL = Protocol(min_passes=4, max_passes=12, budget_s=90.0, min_seconds=40.0)


@dataclass
class PointSet:
    """What a calibration times: decode (batch, q, context) and prefill (batch, length) points,
    which of them are holdouts, and the points left out to fit a pass in its share of the
    budget (each with its estimated seconds a pass)."""

    decode: list[tuple[int, int, int]]
    prefill: list[tuple[int, int]]
    holdout: set[tuple[str, int, int, int]]
    dropped: list[dict]

    def size(self) -> int:
        return len(self.decode) + len(self.prefill)


def point_set(source: ProfileCostModel | None = None, proto: Protocol = PROTOCOL, scale: float = 1.0) -> PointSet:
    """The calibration's points, cut to what one pass can afford. A pass must fit
    budget / (min_passes + 1) (else the protocol stops on its budget before its halves can agree: on
    one thread a 1.5B fp32 calibration's first pass took 46 s of a 90 s budget). A pass costs
    its points plus, per decode cache (batch, context), two untimed settling forwards at the
    cache's largest q (profile.workloads.settle), each estimated as the source profile's price x
    `scale` (its threads / this run's). Always kept: the batch-1 decode line at context 512
    (1 to 8 and 12 tokens) and the two shortest prefills; then the rest, cheapest first, while they
    fit. A prefill holdout left out is replaced by one between the two shortest (time for it is
    set aside first).
    Without a source profile, the full set."""
    dec_fit = list(DECODE_POINTS)
    dec_hold = [(b, q, c) for k, b, q, c in HOLDOUT if k == "decode"]
    fit_pre = sorted(PREFILL_POINTS, key=lambda p: p[0] * p[1])
    hold_pre = [(b, q) for k, b, q, _ in HOLDOUT if k == "prefill"]
    hold = {("decode", b, q, c) for b, q, c in dec_hold} | {("prefill", b, q, 0) for b, q in hold_pre}
    if source is None:
        return PointSet(dec_fit + dec_hold, fit_pre + hold_pre, hold, [])
    est = lambda kind, b, q, c: source.latency_s(kind, b, q, c) * scale  # noqa: E731

    def group_s(pts: list[tuple[int, int, int]]) -> float:  # its points + two settling forwards
        b, top, c = pts[0][0], max(q for _, q, _ in pts), pts[0][2]
        return sum(est("decode", *p) for p in pts) + 2 * est("decode", b, top, c)

    groups: dict[tuple[int, int, bool], list[tuple[int, int, int]]] = {}
    for is_hold, pts in ((False, dec_fit), (True, dec_hold)):
        for b, q, c in pts:
            groups.setdefault((b, c, is_hold), []).append((b, q, c))
    must = groups.pop((1, 512, False))
    (_, n0), (_, n1) = fit_pre[:2]
    mid = round(math.sqrt(n0 * n1))  # a prefill holdout between the two shortest, should one be left out
    room = proto.budget_s / (max(proto.min_passes, 1) + 1) - group_s(must)  # a pass spare: estimates miss cache fills
    room -= sum(est("prefill", b, n, 0) for b, n in fit_pre[:2]) + est("prefill", 1, mid, 0)
    options = [(group_s(pts), "decode", key, pts) for key, pts in groups.items()]
    options += [(est("prefill", b, n, 0), "prefill", (b, n, False), [(b, n)]) for b, n in fit_pre[2:]]
    options += [(est("prefill", b, n, 0), "prefill", (b, n, True), [(b, n)]) for b, n in hold_pre]
    kept, dropped = set(), []
    for t, kind, key, pts in sorted(options, key=lambda o: o[0]):
        if t <= room:
            kept.add((kind, key))
            room -= t
            continue
        for p in pts:
            shape = {"q": p[1], "context": p[2]} if kind == "decode" else {"length": p[1]}
            dropped.append({"kind": kind, "batch": p[0], **shape, "estimated_s": round(t, 2)})
    decode = [p for p in dec_fit if p in must or ("decode", (p[0], p[2], False)) in kept]
    decode += [p for p in dec_hold if ("decode", (p[0], p[2], True)) in kept]
    hold -= {("decode", b, q, c) for b, q, c in dec_hold if ("decode", (b, c, True)) not in kept}
    pre = fit_pre[:2] + [p for p in fit_pre[2:] if ("prefill", (*p, False)) in kept]
    for b, n in hold_pre:
        if ("prefill", (b, n, True)) in kept:
            pre.append((b, n))
            continue
        hold.discard(("prefill", b, n, 0))
        if (1, mid) not in pre:  # off the fit points, inside their range (its time was set aside)
            pre.append((1, mid))
            hold.add(("prefill", 1, mid, 0))
    return PointSet(decode, pre, hold, dropped)


def measure_points(lm, source: ProfileCostModel, step: Callable[[str], None],
                   proto: Protocol = PROTOCOL, points: PointSet | None = None
                   ) -> tuple[list[Point], list[Point], Result]:
    """(fit points, holdout points, the protocol's result) timed on this machine (priced later by
    `calibrate`, with this machine's GEMM blocking). Every point in one protocol run: on a
    shared host two back-to-back passes disagreed by a median 22% (max 105%)."""
    ps = points or point_set()
    dec, pre, hold = ps.decode, ps.prefill, ps.holdout
    pts, res = time_points(lm, dec, pre, step, proto)
    key = lambda p: (p.kind, p.batch, p.q, p.context)  # noqa: E731
    return [p for p in pts if key(p) not in hold], [p for p in pts if key(p) in hold], res


def time_points(lm, decode_points, prefill_points, step: Callable[[str], None] = lambda s: None,
                proto: Protocol = PROTOCOL) -> tuple[list[Point], Result]:
    """Decode (batch, q, context) and prefill (batch, length) points timed on this machine with
    the timing protocol (decode points first, then prefill, in the result's list): each point's
    fastest pass as measured_s, the slower of its two halves' estimates as slower_s (odd vs
    even passes: pass_spread reads their disagreement), its noise figure as noise."""
    from simspec.profile.forwards import Forward, Forwards

    fws = [Forward("decode", b, q, c) for b, q, c in decode_points] + [Forward("prefill", b, n) for b, n in prefill_points]
    fw = Forwards(lm, fws)
    try:
        res = run(fws, fw, proto, group=Forward.group, step=step, label=Forward.label)
    finally:
        fw.close()
    out = []
    for f in fws:
        halves = estimate.halves(res.samples[f])
        out.append(Point(f.kind, f.batch, f.q, f.context, res.estimate(f),
                         slower_s=max(halves) if halves else float("nan"), noise=res.noise(f)))
    return out, res


def steps(proto: Protocol = PROTOCOL, points: PointSet | None = None) -> int:
    """Progress steps at most: every point once per pass, up to the protocol's max passes."""
    return proto.max_passes * (points or point_set()).size()


def thread_scale(source_meta: dict, threads: int | None) -> float:
    """How much slower than the source's prices this run's points may be, for choosing what a
    pass affords: its threads over this run's (at least 1)."""
    have = source_meta.get("threads")
    if not threads or not isinstance(have, int) or have < 1:
        return 1.0
    return max(1.0, have / threads)


def _errors(points: list[Point]) -> dict:
    errs = [abs(p.calibrated_s - p.measured_s) / p.measured_s for p in points]
    before = [abs(p.profiled_s - p.measured_s) / p.measured_s for p in points]
    return {"points": len(errs), "median_rel_error": round(statistics.median(errs), 4),
            "max_rel_error": round(max(errs), 4), "source_median_rel_error": round(statistics.median(before), 4)}


UNSTEADY = 0.10  # median disagreement of the two passes past which the machine was not steady


def pass_spread(points: list[Point]) -> dict:
    """How far the two halves of the passes (odd vs even) disagree per point (slower / faster - 1):
    on a steady machine a few percent; on a contended host, more than the error a calibration
    removes."""
    spread = [p.slower_s / p.measured_s - 1 for p in points if p.slower_s == p.slower_s]
    if not spread:
        return {"points": 0, "median": None, "max": None, "steady": None}
    med = statistics.median(spread)
    return {"points": len(spread), "median": round(med, 4), "max": round(max(spread), 4), "steady": med <= UNSTEADY}


def with_query_lengths(df, model: ProfileCostModel, qs) -> "object":
    """The profile's rows plus decode rows at the query lengths `qs` its grid lacks, for every
    (batch, context) of the grid (it stays rectangular), each timing column read off the
    source's own surfaces there. A factor measured at such a q then lands on a row of its own
    instead of on an interpolation between two others' (a 7-token verify between 6 and 8)."""
    import pandas as pd

    dec = df[df["kind"] == "decode"]
    missing = sorted(set(int(q) for q in qs) - set(int(q) for q in dec["q"].unique()))
    if not missing or dec.empty:
        return df
    rows = []
    for (b, c), g in dec.groupby(["batch", "context"]):
        template = g.iloc[0].to_dict()
        for q in missing:
            r = dict(template, q=q, repeats=0, **model.decode_split(b, q, c))
            r["total_median_s"] = r["total_max_s"] = r["total_s"]  # read off, not timed: no spread
            rows.append(r)
    add = pd.DataFrame(rows).astype(df.dtypes.to_dict())
    return pd.concat([df, add], ignore_index=True)


def calibrate(source: ProfileCostModel, df, fit: list[Point], hold: list[Point], token_block: int):
    """The calibrated (frame, model, report) from timed points; `token_block`: this machine's
    GEMM row block (the source's may be another processor's). The decode grid first gains the
    batch-1 query lengths the calibration timed (`with_query_lengths`)."""
    meta = dict(source.meta, token_block=token_block)
    df = with_query_lengths(df, source, [p.q for p in fit if p.kind == "decode" and p.batch == 1])
    base = ProfileCostModel(df, meta, source.source)  # the source's grid, priced with this machine's blocking
    for p in fit + hold:
        p.profiled_s = base.latency_s(p.kind, p.batch, p.q, p.context)
    dec = Factor([p for p in fit if p.kind == "decode"])
    pre = Factor([p for p in fit if p.kind == "prefill"])
    new_df = calibrated_frame(df, dec, pre)
    model = ProfileCostModel(new_df, meta, source.source)
    for p in fit + hold:
        p.calibrated_s = model.latency_s(p.kind, p.batch, p.q, p.context)
    report = {"factors": {"decode": dec.as_dict(), "prefill": pre.as_dict()},
              "fit": _errors(fit), "holdout": _errors(hold), "passes": pass_spread(fit + hold),
              "points": [p.as_dict() for p in fit + hold]}
    return new_df, meta, report


def run_calibration(lm, source_path, step: Callable[[str], None] = lambda s: None, proto: Protocol = PROTOCOL,
                    points: PointSet | None = None):
    """Time this machine, return (calibrated frame, sidecar meta, report, seconds); the report's
    "protocol" is the timing protocol's summary, "dropped" the prefills a pass could not afford."""
    from simspec.profile.capture import gemm_row_block
    from simspec.profile.schema import read_profile

    df, _ = read_profile(source_path)
    source = ProfileCostModel.load(source_path)
    t0 = time.perf_counter()
    ps = points or point_set(source, proto)
    fit, hold, res = measure_points(lm, source, step, proto, ps)
    new_df, meta, report = calibrate(source, df, fit, hold, gemm_row_block(lm.device, lm.dtype))
    report["protocol"] = res.summary()  # the calibration's timing (the grid's is the source's "protocol")
    report["dropped"] = ps.dropped
    return new_df, meta, report, time.perf_counter() - t0


def write_calibrated(lm, source_path, out, threads: int, command: str,
                     step: Callable[[str], None] = lambda s: None,
                     proto: Protocol = PROTOCOL, points: PointSet | None = None) -> tuple[object, dict, float]:
    """Calibrate `source_path` on this machine and write the new profile + sidecar at `out`.

    The sidecar is the source's, with this machine's identity, and a `calibrated` block: the
    source (path, sha256, machine, date), the factors, and the fit / holdout residuals."""
    import datetime as dt
    import hashlib
    import json
    from pathlib import Path

    from simspec import machine
    from simspec.atomic import write_text, write_via
    from simspec.models import gemv
    from simspec.profile.capture import device_name, versions
    from simspec.profile.schema import sidecar_path

    source_path, out = Path(source_path), Path(out)
    new_df, meta, report, seconds = run_calibration(lm, source_path, step, proto, points)
    src_meta = json.loads(sidecar_path(source_path).read_text())
    meta = dict(meta)
    meta.update({
        "machine": machine.identify(lm.device, threads),
        "kernels": gemv.record(lm.device, lm.dtype),
        "device": lm.device,
        "device_name": device_name(lm.device),
        "threads": threads,
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "calibrated": {
            "from": str(source_path),
            "from_sha256": hashlib.sha256(source_path.read_bytes()).hexdigest(),
            "from_machine": machine.from_sidecar(src_meta),
            "from_date": src_meta.get("date"),
            "seconds": round(seconds, 1),
            "method": "per-class factors (decode, prefill), piecewise linear in log tokens per forward",
            **report,
        },
    })
    write_via(out, lambda tmp: new_df.to_parquet(tmp, index=False, compression="zstd"))
    write_text(sidecar_path(out), json.dumps(meta, indent=1) + "\n")
    return out, meta["calibrated"], seconds
