"""`simspec study --prune`: trials run request prefixes first, the pruner stops some, the best
trial ran the whole workload, and the summary says how many were pruned and what that saved."""

from __future__ import annotations

import optuna
import pandas as pd

from simspec.study import prune
from simspec.study.evaluate import Evaluator
from simspec.study.spec import load_study
from studyhelpers import simspec, small_study


def test_prefixes_fall_on_the_pruner_rungs():
    assert prune.prefixes(1000) == [(1, 100), (3, 300)]
    assert prune.prefixes(5) == [(1, 1)]   # 10% and 30% of 5 are both 1 request: one prefix
    assert prune.prefixes(1) == []          # nothing smaller than the whole workload
    p = prune.make_pruner(True)
    assert isinstance(p, optuna.pruners.SuccessiveHalvingPruner)


def test_pruned_study_best_ran_the_whole_workload(tmp_path):
    study = small_study(tmp_path, trials=30, requests=120)
    r = simspec("study", str(study), "--prune", "--no-progress", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    st = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    pruned = [t for t in st.trials if prune.PRUNED_AT in t.user_attrs]
    assert pruned and all(t.state.name == "PRUNED" and t.user_attrs[prune.PRUNED_AT] < 120 for t in pruned)
    assert all(t.intermediate_values for t in pruned)
    complete = [t for t in st.trials if t.state.name == "COMPLETE"]
    assert complete and all(t.user_attrs[prune.REQUESTS] > 120 for t in complete if t.user_attrs.get(prune.FULL))
    # the best trial's figures are those of the whole workload, as an unpruned evaluation gives
    best = df[df.feasible].sort_values("throughput_tok_s", ascending=False).iloc[0]
    t = st.trials[int(best.number)]
    ev = Evaluator(load_study(study))
    full = ev.evaluate(t.user_attrs["point"])
    assert full["throughput_tok_s"] == best.throughput_tok_s
    assert full["output_tokens"] == t.user_attrs["summary"]["output_tokens"]
    s = prune.savings(st)
    assert s["pruned"] == len(pruned) and s["simulated"] < s["unpruned"]
    text = (tmp_path / "run" / "summary.md").read_text()
    assert f"{len(pruned)} pruned" in text and f"pruned: {len(pruned)} of" in text and "saved" in text


def test_no_prune_flag_no_prefixes(tmp_path):
    study = small_study(tmp_path, trials=6, requests=40)
    r = simspec("study", str(study), "--no-progress", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    st = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert not any(prune.REQUESTS in t.user_attrs or t.intermediate_values for t in st.trials)
    assert "pruned" not in (tmp_path / "run" / "summary.md").read_text()
    assert prune.savings(st) is None
