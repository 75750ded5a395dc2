"""Validation statistics against hand computation."""

import numpy as np
import pandas as pd
import pytest

from simspec.validation.compare import agreement, error_table
from simspec.report.validation_plot import scatter


def rows(pred, meas):
    return [{"config": f"c{i}", "predicted_tok_s": p, "measured_tok_s": m} for i, (p, m) in enumerate(zip(pred, meas))]


def test_errors_and_perfect_ranking():
    df = error_table(rows([11, 20, 27], [10, 20, 30]))
    assert df["error_pct"].tolist() == pytest.approx([10.0, 0.0, -10.0])
    a = agreement(df)
    assert a.median_abs_error_pct == pytest.approx(10.0) and a.max_abs_error_pct == pytest.approx(10.0)
    assert a.spearman_rho == pytest.approx(1.0)
    assert a.regret_pct == 0.0 and a.predicted_best == a.measured_best == "c2"


def test_regret_when_pick_is_wrong():
    # the simulator prefers c0 (measured 8) over c1 (measured 10): 20% regret
    a = agreement(error_table(rows([12, 11, 5], [8, 10, 4])))
    assert a.predicted_best == "c0" and a.measured_best == "c1"
    assert a.regret_pct == pytest.approx(20.0)


def test_spearman_matches_rank_formula():
    rng = np.random.default_rng(0)
    pred, meas = rng.random(12) * 10 + 1, rng.random(12) * 10 + 1
    a = agreement(error_table(rows(pred, meas)))
    rp, rm = pred.argsort().argsort(), meas.argsort().argsort()
    n = len(pred)
    brute = 1 - 6 * ((rp - rm) ** 2).sum() / (n * (n * n - 1))
    assert a.spearman_rho == pytest.approx(brute)


def test_bad_rows():
    with pytest.raises(ValueError):
        error_table([{"config": "a", "predicted_tok_s": 1.0}])
    with pytest.raises(ValueError):
        error_table(rows([1.0], [0.0]))


def test_scatter_png(tmp_path):
    p = scatter(error_table(rows([11, 20, 27], [10, 20, 30])), tmp_path / "v.png", "t")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
