"""--check's summary separates the machine's drift since the capture from the model's error."""

import pytest

pytest.importorskip("torch")


def test_check_summary_separates_machine_drift():
    from simspec.profile.check import CheckPoint, summarize

    pts = [CheckPoint("decode", 1, 3, 100, None, None, 1.10, 1.00),  # +10% slow machine
           CheckPoint("prefill", 1, 50, 0, None, None, 2.42, 2.00),  # +10% drift, +10% model
           CheckPoint("grid", 1, 1, 128, None, None, 0.55, 0.50),
           CheckPoint("grid", 2, 4, 512, None, None, 1.10, 1.00),
           CheckPoint("grid", 4, 8, 512, None, None, 3.30, 3.00),
           CheckPoint("partial", 1, 1, 512, 3, 64, 0.2, 0.2)]
    s = summarize(pts)
    assert s["holdout"]["points"] == 2 and s["partial"]["points"] == 1
    assert s["holdout"]["max_rel_error"] == pytest.approx(0.42 / 2.42)
    assert s["drift"]["points"] == 3 and s["drift"]["median"] == pytest.approx(0.10)
    w = s["drift"]["holdout_without_drift"]
    assert w["max_rel_error"] == pytest.approx(0.22 / 2.42) and w["median_rel_error"] == pytest.approx(0.11 / 2.42)
