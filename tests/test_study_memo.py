"""The study's memo of simulated scenarios: a repeated scenario takes its first figures, exactly
what simulating it again gives (the simulator is deterministic), and nothing else is answered
from it."""

from __future__ import annotations

import pandas as pd

from simspec.study.evaluate import Evaluator
from simspec.study.spec import load_study
from studyhelpers import simspec, small_study

NGRAM = {"gamma": 3, "drafter": "ngram", "max_batch": 4}


def test_a_repeated_scenario_is_answered_with_the_figures_a_new_simulation_gives(tmp_path):
    spec = load_study(small_study(tmp_path))
    ev = Evaluator(spec)
    first = ev.evaluate(NGRAM)
    assert not ev.repeated and first["wall_s"] > 0
    again = ev.evaluate(dict(NGRAM))
    assert ev.repeated and again["wall_s"] == 0.0
    fresh = Evaluator(spec).evaluate(NGRAM)  # brute force: simulate it again from scratch
    for k, v in fresh.items():
        if k != "wall_s":
            assert again[k] == v == first[k], k


def test_only_the_same_scenario_is_a_repeat(tmp_path):
    spec = load_study(small_study(tmp_path))
    ev = Evaluator(spec)
    ev.evaluate(NGRAM)
    ev.evaluate({**NGRAM, "gamma": 4})
    assert not ev.repeated
    ev.evaluate({**NGRAM, "max_batch": 8})
    assert not ev.repeated
    # an exit layer means nothing to an n-gram drafter: the same scenario
    assert ev.scenario({**NGRAM, "exit_layer": 8}) == ev.scenario(NGRAM)
    ev.evaluate({**NGRAM, "exit_layer": 8})
    assert ev.repeated
    # a request prefix (pruning) is another question than the whole workload
    ev.run(ev.scenario(NGRAM), requests=10)
    assert not ev.repeated


def _ngram_study(tmp_path, trials: int):
    p = small_study(tmp_path, trials=trials, requests=24)
    text = p.read_text().replace('drafter = ["model", "early_exit", "ngram"]', 'drafter = ["ngram"]')
    text = text.replace("gamma = { low = 0, high = 6 }", "gamma = { low = 0, high = 2 }")
    text = text.replace("exit_layer = { low = 4, high = 20, step = 4 }\n", "").replace("vocab = [4096, 32768, 131072]\n", "")
    p.write_text(text)
    return p


def test_a_study_says_how_many_trials_were_repeats_and_their_figures_match(tmp_path):
    p = _ngram_study(tmp_path, 24)
    out = tmp_path / "run"
    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out / "trials.parquet")
    df = df[df.state == "COMPLETE"]
    keys = ["gamma", "max_batch"]
    distinct = df.drop_duplicates(keys)
    assert len(distinct) < len(df)  # 3 gammas x 4 batch caps: 24 trials repeat some
    for _, g in df.groupby(keys):
        assert g.throughput_tok_s.nunique() == 1 and g.tpot_p99_s.nunique() == 1
        assert (g.wall_s > 0).sum() == 1  # simulated once, the others from the memo
    summary = (out / "summary.md").read_text()
    n_rep = len(df) - len(distinct)
    assert f"- repeats: {n_rep} trials" in summary


def test_a_resumed_run_takes_the_figures_of_the_stored_trials(tmp_path):
    """A new process has an empty memo: a scenario simulated by the first run is found among
    the stored trials (their summaries carry its digest), as another worker's would be."""
    p = _ngram_study(tmp_path, 8)
    out = tmp_path / "run"
    assert simspec("study", str(p), "--out", str(out), "--no-progress", "--workers", "1").returncode == 0
    first = pd.read_parquet(out / "trials.parquet")
    first = first[first.state == "COMPLETE"]
    assert "scenario_key" not in first.columns  # a digest for the memo, not a figure
    r = simspec("study", str(p), "--out", str(out), "--no-progress", "--workers", "1", "--trials", "30")
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out / "trials.parquet")
    later = df[(df.state == "COMPLETE") & (df.number >= 8)]
    known = set(map(tuple, first[["gamma", "max_batch"]].to_numpy().tolist()))
    seen_before = later[[tuple(x) in known for x in later[["gamma", "max_batch"]].to_numpy().tolist()]]
    assert len(seen_before) > 0
    assert (seen_before.wall_s == 0).all()  # none simulated again
    for _, row in seen_before.iterrows():
        ref = first[(first.gamma == row.gamma) & (first.max_batch == row.max_batch)].iloc[0]
        assert row.throughput_tok_s == ref.throughput_tok_s and row.tpot_p99_s == ref.tpot_p99_s
