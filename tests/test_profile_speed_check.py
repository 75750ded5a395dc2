"""What the timing protocol leaves behind, checked without timing anything: the per-phase speed
check over given measurements (it names the phase a median would hide), the sidecar's optional
protocol block, and the protocol flags refused before any model loads. Running the protocol
itself through capture, --check and --calibrate reads the machine's clock: that is
benchmarks/profile_protocol.py (it prints figures); tests/test_timing_protocol.py checks the
protocol's estimate and stop rule on fake clocks."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from profhelpers import write_synthetic  # noqa: E402
from simspec.profile.costmodel import ProfileCostModel  # noqa: E402


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
    assert ok.summary().endswith("[the timing stopped by budget, odd and even passes 22.0% apart (median; "
                                 "max 105.0%): the host was not steady]")
    # halves within tolerance, but 12 short passes spanned less than agreement needs: not "unsteady"
    ok.protocol = {"stop": "max_passes", "halves_disagreement": {"median": 0.004, "max": 0.03},
                   "tolerance": 0.02, "tolerance_max": 0.05, "seconds": 9.6, "min_seconds": 15.0}
    assert ok.summary().endswith("[the timing stopped by max_passes, odd and even passes 0.4% apart (median; "
                                 "max 3.0%): the passes spanned 10 s, under the 15 s agreement needs]")
    ok.protocol |= {"halves_disagreement": {"median": 0.004, "max": 0.071}}  # one point's halves apart
    assert ok.summary().endswith("max 7.1%): the host was not steady]")
    # slow forwards: the budget ended the timing before the passes agreement needs
    ok.protocol = {"stop": "budget", "halves_disagreement": {"median": 0.007, "max": 0.031}, "tolerance": 0.02,
                   "tolerance_max": 0.05, "passes": 3, "min_passes": 4, "seconds": 38.0, "min_seconds": 15.0}
    assert ok.summary().endswith("(median; max 3.1%): 3 passes fit, under the 4 agreement needs]")


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


def test_a_grid_cut_to_a_plan_is_checked_inside_it():
    """A profile captured with --max-batch 2 --max-q 4 --max-prefill-len 32 is timed at batch 2,
    q 4 and 32-token prompts instead of extrapolated batch 4 / q 5 / 128 (duplicates once)."""
    from simspec.profile.speedcheck import DECODE, PREFILL, within_grid

    assert within_grid(None) == (list(DECODE), list(PREFILL))
    grid = {"batch": [1, 2], "q": [1, 2, 4], "context": [128, 512], "prefill_batch": [1, 2], "prefill_len": [16, 32]}
    decode, prefill = within_grid(grid)
    assert decode == [(1, 1, 512), (2, 1, 512), (1, 4, 512), (2, 4, 512)]
    assert prefill == [(1, 32), (2, 32)]
    assert within_grid({"batch": [1], "q": [1], "context": [64], "prefill_batch": [1], "prefill_len": [16]}) == \
        ([(1, 1, 64)], [(1, 16)])
