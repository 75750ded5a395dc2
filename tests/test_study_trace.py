"""A study over a recorded trace works like one over synthetic acceptance: each point replays
the trace column its knobs name (exit<l>, <model>/k<K>, ngram)."""

from __future__ import annotations

import numpy as np

from simspec.study import space, trial
from simspec.study.spec import load_study
from simspec.trace.schema import write_trace
from studyhelpers import simspec


def _trace(path):
    rng = np.random.default_rng(0)
    rows = []
    for s in range(24):
        t, p = int(rng.integers(30, 120)), int(rng.integers(5, 40))
        r = np.minimum(rng.geometric(0.6, size=t) - 1, 127)
        rows.append({"seq": s, "prompt_len": p, "output_len": t,
                     "prompt_ids": rng.integers(0, 50, size=p), "tokens": rng.integers(0, 50, size=t),
                     "rank:m": r, "beta:m@1": rng.uniform(0.2, 1.0, size=t),
                     "rank:m/k64": np.where(rng.random(t) < 0.9, r, 127), "beta:m/k64@1": rng.uniform(0, 1, size=t),
                     "rank:exit2": rng.geometric(0.5, size=t) - 1, "beta:exit2@1": rng.uniform(0, 1, size=t),
                     "rank:exit4": rng.geometric(0.8, size=t) - 1, "beta:exit4@1": rng.uniform(0, 1, size=t)})
    write_trace(path, rows, ["m", "m/k64", "exit2", "exit4"], [1.0],
                {"vocab": 1000, "target": "synthetic", "exit_layers": [2, 4], "vocabs": [64, "full"]})


STUDY = """
name = "tr"
trials = 10
[scenario.target]
cost = {{ step_ms = 10.0, per_seq_ms = 0.2 }}
layers = 8
[scenario.serving]
seed = 0
[workload]
requests = 24
concurrency = 4
dataset = "trace"
[search]
gamma = {{ low = 0, high = 4 }}
drafter = ["model", "early_exit", "ngram"]
exit_layer = [2, 4]
vocab = [64, 1000]
max_batch = [1, 4]
[drafters.model]
cost = {{ step_ms = 1.0 }}
acceptance = {{ trace = "{trace}", drafter = "m" }}
vocab_size = 1000
head_ms = 0.3
[drafters.early_exit]
acceptance = {{ trace = "{trace}", drafter = "exit{{exit_layer}}" }}
[drafters.ngram]
acceptance = {{ trace = "{trace}", drafter = "ngram" }}
[objectives]
throughput = "maximize"
"""


def test_trace_columns_follow_the_knobs_and_the_study_runs(tmp_path):
    _trace(tmp_path / "t.parquet")
    p = tmp_path / "tr.toml"
    p.write_text(STUDY.format(trace="t.parquet"))
    spec = load_study(p)
    col = lambda q: trial.scenario(spec, q).acceptance.drafter  # noqa: E731
    assert col({"gamma": 2, "drafter": "model", "vocab": 64}) == "m/k64"
    assert col({"gamma": 2, "drafter": "model", "vocab": 1000}) == "m"
    assert col({"gamma": 2, "drafter": "early_exit", "exit_layer": 4}) == "exit4"
    full = trial.scenario(spec, {"gamma": 2, "drafter": "model", "vocab": 1000})
    assert full.draft.vocab is None  # the full head: the column is untrimmed too
    out = tmp_path / "run"
    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    import pandas as pd

    df = pd.read_parquet(out / "trials.parquet")
    assert (df.state == "COMPLETE").sum() == 10, df[["state", "invalid"]]
    assert (out / "best.toml").exists()
    r = simspec("simulate", str(out / "best.toml"), "--json")
    assert r.returncode == 0, r.stderr


def test_knob_values_from_the_trace(tmp_path):
    _trace(tmp_path / "t.parquet")
    p = tmp_path / "tr.toml"
    text = STUDY.format(trace="t.parquet").replace("exit_layer = [2, 4]", 'exit_layer = "trace"')
    text = text.replace("vocab = [64, 1000]", 'vocab = "trace"').replace("vocab_size = 1000\n", "")
    p.write_text(text)
    spec = load_study(p)
    assert spec.file.search.exit_layer == [2, 4] and spec.file.search.vocab == [64, 1000]
    assert spec.file.drafters["model"].vocab_size == 1000
    assert len(space.grid(spec)) == 2 + 4 * (2 + 2 * 2 + 1) * 2  # exit layers are trimmed too
