"""Capture, --check, --calibrate and the speed check time through the timing protocol: checked
with a fake model (`FakeForwards`: scripted times, no torch forward, no clock dependence) and on
synthetic profiles; the per-phase speed check names the phase a median would hide."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

from profhelpers import write_synthetic  # noqa: E402
from simspec.profile import forwards  # noqa: E402
from simspec.profile.costmodel import ProfileCostModel  # noqa: E402
from simspec.profile.timer import Split  # noqa: E402
from simspec.timing.protocol import Protocol  # noqa: E402


def fast_time(f) -> float:
    """A made-up fast-state time per point, growing with the tokens and the context."""
    return 1e-3 * (1 + f.batch * f.q + f.context / 1000 + (f.rows or 0) / 1e4)


class FakeForwards:
    """Forwards' interface over no model: the n-th measurement of a point reads 2x its fast time
    when n is even (pass 1, 3, ...: a host in a slow phase every other pass) -- except that
    `pass_one_slow_only` makes only the first pass slow."""

    made: list["FakeForwards"] = []
    pass_one_slow_only = False

    def __init__(self, lm, points, seed=0, settle_q=None, around=None):
        self.points, self.settle_q, self.around = list(points), settle_q, around
        self.splits: dict = {}
        self.log: list = []
        FakeForwards.made.append(self)

    def __call__(self, f) -> float:
        n = len(self.splits.get(f, []))
        slow = n == 0 if self.pass_one_slow_only else n % 2 == 0
        t = fast_time(f) * (2.0 if slow else 1.0)
        self.splits.setdefault(f, []).append(Split(t, t / 10, t / 5, t / 2))
        self.log.append(f)
        return t

    def measured(self, f):
        return forwards.measured(self.splits[f])

    def close(self) -> None:
        pass


@pytest.fixture()
def fake(monkeypatch):
    from simspec.profile import capture, check

    FakeForwards.made.clear()
    FakeForwards.pass_one_slow_only = False
    for mod in (forwards, capture, check):
        monkeypatch.setattr(mod, "Forwards", FakeForwards)
    return FakeForwards


LM = SimpleNamespace(dims=SimpleNamespace(vocab=1000), model=None, device="cpu")


def test_capture_rows_are_each_points_fastest_pass_with_the_protocol_beside(fake):
    from simspec.profile.capture import capture
    from simspec.profile.grid import QUICK

    fake.pass_one_slow_only = True
    rows, res = capture(LM, QUICK, proto=Protocol(min_passes=4, max_passes=6, budget_s=600.0))
    g = QUICK.with_vocab(1000)
    assert len(rows) == g.points() and res.stop == "agreed" and res.passes == 4
    by = {(r["kind"], r["batch"], r["q"], r["context"], r["rows"]): r for r in rows}
    r = by["decode", 4, 16, 1024, 1000]
    assert r["total_s"] == pytest.approx(1e-3 * (1 + 64 + 1.024)) and r["repeats"] == 4
    assert r["total_max_s"] == pytest.approx(2 * r["total_s"]) and r["layer_s"] == pytest.approx(r["total_s"] / 10)
    assert by["head", 16, 1, 0, 500]["total_s"] == pytest.approx(1e-3 * (1 + 16 + 0.05))  # vocab // 2 rows
    # a pass runs the points sharing a KV cache together: each (batch, context) block contiguous
    for order in res.orders:
        blocks = [f.group() for f in order]
        changes = sum(a != b for a, b in zip(blocks, blocks[1:]))
        assert changes == len(set(blocks)) - 1
    s = res.summary()
    assert s["passes"] == 4 and s["stop"] == "agreed" and s["noise"]["max"] == pytest.approx(0.0)


def test_calibration_points_carry_the_halves_and_the_noise(fake):
    from simspec.profile.calibrate import pass_spread, time_points

    pts, res = time_points(LM, [(1, 1, 512), (1, 4, 512)], [(1, 32)],
                           proto=Protocol(min_passes=4, max_passes=6, budget_s=600.0))
    # odd passes slow, even fast: the halves never agree, so it ran to max_passes
    assert res.stop == "max_passes" and res.passes == 6
    for p in pts:
        fast = fast_time(SimpleNamespace(batch=p.batch, q=p.q, context=p.context, rows=None))
        assert p.measured_s == pytest.approx(fast) and p.slower_s == pytest.approx(2 * fast)
        assert p.noise == pytest.approx(0.5)  # median of 3 x 1.0 and 3 x 2.0 is 1.5
    spread = pass_spread(pts)
    assert spread["median"] == pytest.approx(1.0) and spread["steady"] is False


def test_check_times_every_point_once_per_pass(fake, tmp_path):
    from simspec.profile.check import check_steps, run_check, summarize

    cm = ProfileCostModel.load(write_synthetic(tmp_path / "p.parquet"))
    labels: list[str] = []
    results, res = run_check(LM, cm, points=30, repeats=3, step=labels.append)
    assert res.passes == 3 and res.stop == "max_passes"  # --repeats: exactly that many passes
    kinds = [r.kind for r in results]
    assert kinds.count("decode") + kinds.count("prefill") == 30 and kinds.count("grid") == 6
    assert kinds.count("partial") == 10
    assert len(labels) == 3 * len(results) <= check_steps(30, Protocol(max_passes=3))
    (fw,) = fake.made
    assert all(fw.log.count(f) == 3 for f in fw.points)
    part = next(r for r in results if r.kind == "partial")
    assert part.predicted_s == pytest.approx(cm.latency_s("decode", part.batch, part.q, part.context,
                                                          layers=part.layers, head_rows=part.head_rows))
    for r in results:  # the fastest pass (the fake's even passes), its noise figure beside
        assert r.measured_s == pytest.approx(1e-3 * (1 + r.batch * r.q + r.context / 1000
                                                     + (r.head_rows or 0) / 1e4 * (r.kind == "partial")))
        assert r.noise == pytest.approx(1.0)  # median of 2.0, 1.0, 2.0
    assert summarize(results)["holdout"]["points"] == 30


def _speed(tmp_path, slow):
    """The speed check's points 'timed' on a machine whose cost is slow(phase) x the profile's."""
    from simspec.profile.calibrate import Point
    from simspec.profile.speedcheck import DECODE, PREFILL, phase, priced_check

    cm = ProfileCostModel.load(write_synthetic(tmp_path / "p.parquet"))
    pts = [Point("decode", b, q, c, 0.0) for b, q, c in DECODE] + [Point("prefill", b, n, 0, 0.0) for b, n in PREFILL]
    for p in pts:
        p.measured_s = cm.latency_s(p.kind, p.batch, p.q, p.context) * slow(phase(p))
        p.noise = 0.03
    return priced_check("p.parquet", cm, pts)


def test_speed_check_flags_a_prefill_miss_the_median_hides(tmp_path):
    """The issue's case: every point within 1% but a 128-token prefill 55% above the profile.
    The median over the points reads ~1.0x; the per-phase check names the prefill."""
    c = _speed(tmp_path, lambda ph: 1.55 if ph == "prefill b1" else 1.01)
    assert c.ratio == pytest.approx(1.01, abs=1e-9)  # what the median-only check reported
    assert c.off and c.off_phases() == ["prefill b1"]
    line = c.line()
    assert "off in prefill b1 " in line and "len128 1.55x" in line and "noise 3%" in line
    assert "--calibrate p.parquet" in line
    d = c.as_dict()
    assert d["off_phases"] == ["prefill b1"] and d["phases"]["prefill b1"][0]["ratio"] == pytest.approx(1.55)
    assert set(d["phases"]) == {"decode b1", "decode b4", "verify b1", "verify b4", "prefill b1", "prefill b4"}
    assert json.loads(json.dumps(d["phases"])) == d["phases"]


def test_speed_check_names_every_phase_off_and_passes_a_machine_within_tolerance(tmp_path):
    c = _speed(tmp_path, lambda ph: {"verify b4": 1.36, "decode b4": 0.8}.get(ph, 1.0))
    assert c.off_phases() == ["decode b4", "verify b4"]
    ok = _speed(tmp_path, lambda ph: 1.1)
    assert not ok.off and ok.off_phases() == []
    assert "within 15% in every phase" in ok.summary() and "verify b4 1.10x" in ok.summary()
    assert "not steady" not in ok.summary()
    ok.protocol = {"stop": "budget", "halves_disagreement": {"median": 0.22, "max": 1.05}}
    assert ok.summary().endswith("[the timing stopped by budget, odd and even passes 22% apart: the host was not steady]")


def test_a_sidecar_protocol_block_is_optional_but_checked(tmp_path):
    from simspec.errors import InputError
    from simspec.profile.schema import read_profile

    path = write_synthetic(tmp_path / "p.parquet")
    _, meta = read_profile(path)  # a profile from before the protocol: no block, reads as before
    assert "protocol" not in meta
    side = path.with_suffix(".json")
    m = json.loads(side.read_text())
    m["protocol"] = {"name": "x", "passes": 4, "stop": "agreed"}
    side.write_text(json.dumps(m))
    assert read_profile(path)[1]["protocol"]["passes"] == 4
    m["protocol"] = "fastest of 2"
    side.write_text(json.dumps(m))
    with pytest.raises(InputError, match="protocol"):
        read_profile(path)


def test_protocol_flags_are_checked_before_any_timing(tmp_path):
    from test_profile_cli import assert_one_line_exit_2, run_cli

    for args, needle in ((("--passes", "0"), "--passes"), (("--tolerance", "-0.1"), "--tolerance"),
                         (("--budget-s", "0"), "--budget-s")):
        assert_one_line_exit_2(run_cli("profile", "--model", "tiny:llama", "--quick", *args,
                                       "--out", str(tmp_path / "x.parquet"), cache=tmp_path), needle)
    assert not (tmp_path / "x.parquet").exists()
