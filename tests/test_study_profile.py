"""A study over measured profiles works like one over synthetic costs: an early-exit drafter
with a trimmed head is priced by the profile (layers, head rows); dtype picks a profile."""

from __future__ import annotations

import tomllib

import pandas as pd

from profhelpers import write_synthetic
from simspec.sim.build import build_round_cost
from simspec.study import trial
from simspec.study.spec import load_study
from studyhelpers import simspec

STUDY = """
name = "prof"
trials = 10
[scenario.target]
profile = "{prof}"
[scenario.serving]
seed = 0
[workload]
requests = 24
arrival = "closed"
concurrency = 4
prompt_len = {{ dist = "uniform", min = 16, max = 64 }}
output_len = {{ dist = "uniform", min = 16, max = 64 }}
[search]
gamma = {{ low = 0, high = 4 }}
drafter = ["early_exit", "ngram"]
exit_layer = {{ low = 2, high = 8, step = 2 }}
vocab = {{ low = 64, high = 1000, log = true }}
max_batch = [1, 4]
dtype = ["fp32", "fp32b"]
[variants.dtype.fp32]
target = {{ profile = "{prof}" }}
[variants.dtype.fp32b]
target = {{ profile = "{prof2}" }}
[drafters.early_exit]
acceptance_by_layer = [[2, 0.2], [8, 0.8]]
vocab_size = 1000
coverage = [[64, 0.8], [1000, 1.0]]
[drafters.ngram]
acceptance = {{ iid = 0.3 }}
[objectives]
throughput = "maximize"
"""


def test_profile_backed_study(tmp_path):
    write_synthetic(tmp_path / "p.parquet")
    write_synthetic(tmp_path / "p2.parquet")
    p = tmp_path / "prof.toml"
    p.write_text(STUDY.format(prof="p.parquet", prof2="p2.parquet"))
    spec = load_study(p)
    full = trial.scenario(spec, {"gamma": 2, "drafter": "early_exit", "exit_layer": 4, "vocab": 1000})
    trim = trial.scenario(spec, {"gamma": 2, "drafter": "early_exit", "exit_layer": 4, "vocab": 64})
    assert full.draft.vocab is None and trim.draft.vocab == 64
    # the profile prices the trimmed head: drafting gets cheaper, verification does not change
    cf, ct = build_round_cost(full, str(p)), build_round_cost(trim, str(p))
    assert ct.draft_s(4, 0) < cf.draft_s(4, 0)
    assert ct.verify_s(4, 0) == cf.verify_s(4, 0)
    out = tmp_path / "run"
    r = simspec("study", str(p), "--out", str(out), "--no-progress", cwd=tmp_path.parent)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out / "trials.parquet")
    assert (df.state == "COMPLETE").sum() == 10
    best = tomllib.loads((out / "best.toml").read_text())
    assert best["target"]["profile"] in ("../p.parquet", "../p2.parquet")  # relative to the run folder
    r = simspec("simulate", str(out / "best.toml"), "--json", cwd=tmp_path.parent.parent)
    assert r.returncode == 0, r.stderr
