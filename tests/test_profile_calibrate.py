"""Calibration refits a profile to this machine's timings: exact on synthetic timings (no
clock involved), and the command writes a sidecar that says where the profile came from."""

from __future__ import annotations

import json
import math

import pytest

from profhelpers import write_synthetic
from simspec.profile.calibrate import DECODE_POINTS, HOLDOUT, PREFILL_POINTS, Point, calibrate
from simspec.profile.costmodel import ProfileCostModel
from simspec.profile.schema import read_profile


def _points(cm, slow):
    """The calibration's points 'timed' on a machine whose cost is slow(kind, tokens) x the profile's."""
    fit = [Point("decode", b, q, c, cm.latency_s("decode", b, q, c) * slow("decode", b * q), 0.0)
           for b, q, c in DECODE_POINTS]
    fit += [Point("prefill", b, n, 0, cm.latency_s("prefill", b, n, 0) * slow("prefill", b * n), 0.0)
            for b, n in PREFILL_POINTS]
    hold = [Point(k, b, q, c, cm.latency_s(k, b, q, c) * slow(k, b * q), 0.0) for k, b, q, c in HOLDOUT]
    return fit, hold


@pytest.fixture
def source(tmp_path):
    path = write_synthetic(tmp_path / "p.parquet")
    df, _ = read_profile(path)
    return ProfileCostModel.load(path), df


def test_uniform_slowdown_is_recovered_exactly(source):
    cm, df = source
    fit, hold = _points(cm, lambda kind, t: 1.37)
    new_df, meta, rep = calibrate(cm, df, fit, hold, token_block=1)
    new = ProfileCostModel(new_df, meta, "cal")
    for args in [("decode", 3, 5, 700), ("decode", 16, 32, 4096), ("prefill", 2, 300, 0)]:
        assert new.latency_s(*args) == pytest.approx(1.37 * cm.latency_s(*args), rel=1e-9)
    assert rep["holdout"]["max_rel_error"] < 1e-6
    assert rep["holdout"]["source_median_rel_error"] == pytest.approx(1 - 1 / 1.37, rel=1e-3)
    # early exit / trimmed head keep their share: every timing column was scaled alike
    assert new.latency_s("decode", 1, 1, 512, layers=4, head_rows=64) == pytest.approx(
        1.37 * cm.latency_s("decode", 1, 1, 512, layers=4, head_rows=64), rel=1e-9)


def test_a_slowdown_that_grows_with_tokens_is_followed(source):
    """AVX-512 instead of AMX: small forwards (memory-bound) alike, large ones slower."""
    cm, df = source
    slow = lambda kind, t: 1.0 + 0.5 * math.log2(t) / 5 if kind == "decode" else 2.0  # noqa: E731
    fit, hold = _points(cm, slow)
    new_df, meta, rep = calibrate(cm, df, fit, hold, token_block=1)
    new = ProfileCostModel(new_df, meta, "cal")
    # at a measured tokens count the factor is exact; between them within the curve's bend
    assert new.latency_s("decode", 1, 8, 512) == pytest.approx(slow("decode", 8) * cm.latency_s("decode", 1, 8, 512), rel=1e-9)
    assert new.latency_s("decode", 2, 3, 512) == pytest.approx(slow("decode", 6) * cm.latency_s("decode", 2, 3, 512), rel=0.02)
    assert new.latency_s("prefill", 1, 200, 0) == pytest.approx(2.0 * cm.latency_s("prefill", 1, 200, 0), rel=1e-9)
    assert rep["factors"]["decode"]["1"] == pytest.approx(1.0) and rep["factors"]["decode"]["32"] == pytest.approx(1.5)
    assert rep["holdout"]["max_rel_error"] < 0.02 < rep["holdout"]["source_median_rel_error"]


def test_calibrate_command_writes_a_sidecar_naming_its_source(tmp_path):
    pytest.importorskip("torch")
    from test_profile_cli import run_cli

    src = tmp_path / "t.parquet"
    r = run_cli("profile", "--model", "tiny:llama:2", "--quick", "--dtype", "fp32", "--threads", "1",
                "--out", str(src), cache=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "amd" / "t.parquet"
    r = run_cli("profile", "--calibrate", str(src), "--out", str(out), "--threads", "1", "--budget-s", "20",
                "--passes", "4", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    cal = meta["calibrated"]
    assert cal["from"] == str(src) and len(cal["from_sha256"]) == 64
    assert cal["fit"]["points"] == len(DECODE_POINTS) + len(PREFILL_POINTS) and cal["holdout"]["points"] == len(HOLDOUT)
    assert meta["machine"]["cpu"] and "isa" in meta["machine"]
    # every point's slower half (odd vs even passes), how far the halves disagree, the protocol
    passes, pts = cal["passes"], cal["points"]
    assert passes["points"] == len(pts) and all(p["slower_s"] >= p["measured_s"] > 0 for p in pts)
    assert all(p["noise"] >= 0 for p in pts)
    assert cal["protocol"]["passes"] >= 2 and cal["protocol"]["stop"] in ("agreed", "budget", "max_passes")
    assert "two halves" in r.stdout and "interleaved passes, stopped by" in r.stdout
    df, _ = read_profile(out)
    sdf = read_profile(src)[0]
    key = ["kind", "batch", "q", "context", "rows"]
    # the source's grid, rescaled, plus decode rows at the batch-1 q values it lacked
    assert set(map(tuple, sdf[key].values.tolist())) <= set(map(tuple, df[key].values.tolist()))
    timed_q = {q for b, q, c in DECODE_POINTS if b == 1}
    added = df[~df.set_index(key).index.isin(sdf.set_index(key).index)]
    assert set(added["kind"]) <= {"decode"} and set(added["q"]) == timed_q - set(sdf[sdf.kind == "decode"]["q"])
    r = run_cli("profile", "--calibrate", str(src), "--out", str(src), cache=tmp_path)
    assert r.returncode == 2 and "would overwrite" in r.stderr


def test_pass_spread_is_the_two_passes_disagreement():
    from simspec.profile.calibrate import UNSTEADY, pass_spread

    pts = [Point("decode", 1, 1, 512, 1.0, slower_s=1.02), Point("decode", 1, 2, 512, 2.0, slower_s=2.1),
           Point("prefill", 1, 32, 0, 4.0, slower_s=6.0)]
    rep = pass_spread(pts)
    assert rep["points"] == 3 and rep["median"] == pytest.approx(0.05) and rep["max"] == pytest.approx(0.5)
    assert rep["steady"] is (0.05 <= UNSTEADY)
    noisy = pass_spread([Point("decode", 1, 1, 512, 1.0, slower_s=1.3)] * 3)
    assert noisy["steady"] is False
    assert pass_spread([Point("decode", 1, 1, 512, 1.0)])["points"] == 0  # one pass: nothing to compare


def test_a_pass_keeps_to_its_share_of_the_budget(source):
    """A pass's estimated cost (its points + two settling forwards per decode cache, at the
    source's prices x the thread scale) stays within budget / (min_passes + 1): the batch-1 line at
    context 512 and the two shortest prefills always, the rest cheapest first while they fit,
    and whatever was left out would not have fit. An unaffordable prefill holdout is replaced by
    one between the two shortest fit lengths (its time set aside). No source: the full set."""
    from simspec.profile.calibrate import PROTOCOL, point_set, thread_scale
    from simspec.timing.protocol import Protocol

    cm, _ = source
    full = point_set()
    assert full.prefill == sorted(PREFILL_POINTS, key=lambda p: p[0] * p[1]) + [(1, 256)] and not full.dropped
    assert full.decode == list(DECODE_POINTS) + [(b, q, c) for k, b, q, c in HOLDOUT if k == "decode"]
    assert point_set(cm, PROTOCOL).decode == full.decode  # the synthetic profile's prices: all afford

    def pass_s(ps, scale):  # brute force: every point, and per (batch, context, holdout?) cache 2 settles
        t = sum(cm.latency_s("prefill", b, n, 0) for b, n in ps.prefill)
        caches = {}
        for b, q, c in ps.decode:
            t += cm.latency_s("decode", b, q, c)
            key = (b, c, ("decode", b, q, c) in ps.holdout)
            caches[key] = max(caches.get(key, 0), q)
        t += sum(2 * cm.latency_s("decode", b, q, c) for (b, c, _), q in caches.items())
        return t * scale

    must = [p for p in DECODE_POINTS if p[0] == 1 and p[2] == 512]
    base = point_set(cm, Protocol(min_passes=4, budget_s=4e-9, min_seconds=0.0))  # affords nothing more
    assert base.decode == must and base.prefill == [(1, 32), (1, 128), (1, 64)]
    assert base.holdout == {("prefill", 1, 64, 0)} and len(base.dropped) == 10
    for scale in (1.0, 2.0):
        floor = pass_s(base, scale)
        for extra in (0.3, 1.0, 3.0):
            share = floor * (1 + extra)
            ps = point_set(cm, Protocol(min_passes=4, budget_s=5 * share, min_seconds=0.0), scale)
            assert set(must) <= set(ps.decode) and ps.prefill[:2] == [(1, 32), (1, 128)]
            assert pass_s(ps, scale) <= share * (1 + 1e-9) or ps.decode == must
            for d in ps.dropped:  # left out: it would not have fit beside what was kept
                assert d["estimated_s"] > share - pass_s(ps, scale) - 0.01
            assert {("prefill", 1, 256, 0), ("prefill", 1, 64, 0)} & ps.holdout
    assert thread_scale({"threads": 2}, 1) == 2.0 and thread_scale({"threads": 1}, 2) == 1.0
    assert thread_scale({}, 1) == 1.0


def test_a_timed_q_the_source_grid_lacks_gets_rows_of_its_own(source):
    """A factor measured at a q between two grid values lands exactly there: the calibrated
    grid gains rows at that q (read off the source's surfaces, every batch and context), so a
    machine whose cost steps up between q 6 and 8 is priced right at 7, not interpolated."""
    cm, df = source
    df = df[~((df.kind == "decode") & df.q.isin([5, 7]))].reset_index(drop=True)  # a grid of 1-4, 6, 8, ...
    cm = ProfileCostModel(df, cm.meta, "src")
    dec_q = sorted(set(df[df.kind == "decode"]["q"]))
    assert 7 not in dec_q and 6 in dec_q and 8 in dec_q
    step = lambda kind, t: 1.8 if t == 7 else 1.0  # noqa: E731  (only 7-token forwards are slower)
    fit, hold = _points(cm, step)
    fit.append(Point("decode", 1, 7, 512, cm.latency_s("decode", 1, 7, 512) * 1.8, 0.0))
    fit.append(Point("decode", 1, 6, 512, cm.latency_s("decode", 1, 6, 512), 0.0))
    new_df, meta, rep = calibrate(cm, df, fit, hold, token_block=1)
    new = ProfileCostModel(new_df, meta, "cal")
    assert 7 in set(new_df[new_df.kind == "decode"]["q"])
    assert new.latency_s("decode", 1, 7, 512) == pytest.approx(1.8 * cm.latency_s("decode", 1, 7, 512), rel=1e-9)
    assert new.latency_s("decode", 1, 6, 512) == pytest.approx(cm.latency_s("decode", 1, 6, 512), rel=1e-9)
    # the same factor at another context of the grid (the factor goes by tokens per forward)
    assert new.latency_s("decode", 1, 7, 2048) == pytest.approx(1.8 * cm.latency_s("decode", 1, 7, 2048), rel=1e-9)
