"""On a conditional space of >= 500 points, TPE's best is within 1% of the exhaustive grid's
optimum using <= 20% of the evaluations (benchmarks/tpe_vs_grid.py runs more seeds)."""

from __future__ import annotations

import sys

from studyhelpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import tpe_vs_grid  # noqa: E402


def test_tpe_finds_the_grid_optimum_within_1_percent_with_20_percent_of_evaluations(tmp_path):
    spec = tpe_vs_grid.load(0, tmp_path)
    n, opt, _ = tpe_vs_grid.grid_optimum(spec)
    assert n >= 500
    budget = int(0.2 * n)
    best, knobs = tpe_vs_grid.tpe_best(spec, budget)
    print(f"grid {n} points, optimum {opt:.2f}; TPE {budget} evals best {best:.2f} at {knobs}")
    assert best >= 0.99 * opt
