"""`simspec study` end to end: outputs, best.toml round trip, exports, resume, workers, Pareto, capacity."""

from __future__ import annotations

import json
import math
import tomllib

import optuna
import pandas as pd
import pytest

from simspec.config import load_scenario
from simspec.study import export, results
from simspec.study.engines import Context, versions
from simspec.study.engines import vllm as vllm_export
from simspec.study.engines.answer import answer
from simspec.study.schedule import Point, best_per_bucket, ranges, read_points
from studyhelpers import simspec, small_study

ENGINE_FILES = ("vllm_speculative_config.json", "sglang_args.txt", "trtllm_speculative_config.yaml")
FILES = ("best.toml", "trials.parquet", "pareto.csv", "schedule.csv", "history.png", "importances.png", "pareto.png",
         "gamma_vs_batch.png", *ENGINE_FILES, "vllm_synthetic_config.json", "sglang_synthetic_env.sh",
         "synthetic_prediction.csv", "summary.md", "study.db")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    p = small_study(tmp, trials=14)
    out = tmp / "run"
    r = simspec("study", str(p), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return p, out, r


def test_writes_every_output_and_says_where(run):
    _, out, r = run
    for f in FILES:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    for f in FILES:
        if f.endswith(".png"):
            assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"results written to: {out}/" in r.stdout
    assert "# simspec study: small" in r.stdout and "## Best configuration" in r.stdout
    df = pd.read_parquet(out / "trials.parquet")
    assert len(df) == 14 and set(df.state) <= {"COMPLETE", "PRUNED"}
    assert df.loc[0, "gamma"] == 0 and df.loc[0, "max_batch"] == 4  # the enqueued baseline ran first


def test_best_toml_is_a_scenario_simulate_takes_as_is(run):
    _, out, _ = run
    sc = load_scenario(out / "best.toml")
    r = simspec("simulate", str(out / "best.toml"), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    df = pd.read_parquet(out / "trials.parquet")
    best = df[df.feasible].sort_values(["throughput_tok_s", "number"], ascending=[False, True]).iloc[0]
    # same scenario, same seed -> the very numbers the study recorded
    assert got["throughput_tok_s"] == pytest.approx(best.throughput_tok_s, rel=1e-12)
    assert got["tpot_p99_s"] == pytest.approx(best.tpot_p99_s, rel=1e-12)
    assert got["tpot_p99_s"] <= 0.05
    assert sc.gamma == (best.gamma if best.gamma is not pd.NA else 0)


def test_vllm_export_holds_only_keys_of_the_newest_vllm(run):
    _, out, _ = run
    cfg = json.loads((out / "vllm_speculative_config.json").read_text())
    assert cfg, "speculation pays in this study: a config is expected"
    newest = versions.VLLM.newest
    assert set(cfg) <= versions.writable("vllm", newest), set(cfg) - versions.writable("vllm", newest)
    assert "disable_by_batch_size" not in cfg and "speculative_token_tree" not in cfg
    assert cfg["method"] in ("draft_model", "ngram")
    sched = cfg.get("num_speculative_tokens_per_batch_size")
    if sched is not None:
        assert sched[0][0] == 1
        for (lo, hi, k), nxt in zip(sched, sched[1:] + [None]):
            assert lo <= hi and 0 <= k <= cfg["num_speculative_tokens"]
            if nxt:
                assert nxt[0] == hi + 1 and nxt[2] != k  # contiguous, merged
    if cfg["method"] == "draft_model":
        assert cfg["model"] == "org/draft-0.1b"
    # the summary's recommendation and the file agree
    pts = read_points(out / "schedule.csv")
    a = answer(results.knobs(results.best_trial(optuna.load_study(
        study_name="small", storage=f"sqlite:///{out / 'study.db'}"))), pts, export.runnable("vllm"))
    assert (sched is not None) == a.schedule_pays
    summary = (out / "summary.md").read_text()
    assert ("**Schedule recommended**" in summary) == a.schedule_pays
    assert ("**No schedule**" in summary) != a.schedule_pays


def test_sglang_flags(run):
    _, out, _ = run
    lines = [l for l in (out / "sglang_args.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert lines and all(l.startswith("--") for l in lines)
    flags = dict(l.split(" ", 1) if " " in l else (l, None) for l in lines)
    assert set(flags) <= versions.writable("sglang", versions.SGLANG.newest)
    assert flags["--speculative-algorithm"] in ("STANDALONE", "NGRAM")
    assert int(flags["--speculative-num-draft-tokens"]) == int(flags["--speculative-num-steps"]) + 1
    assert "--speculative-adaptive" not in flags  # STANDALONE / NGRAM: SGLang's adaptive mode is EAGLE's


def test_the_summary_shows_the_three_engines_files(run):
    _, out, r = run
    summary = (out / "summary.md").read_text()
    for name in ENGINE_FILES + ("vllm_synthetic_config.json", "sglang_synthetic_env.sh"):
        assert f"({name})" in summary, name
    for title in ("vLLM 0.28.0", "SGLang 0.5.16", "TensorRT-LLM 1.3.0"):
        assert title in summary, title
    assert "## Checking the prediction on a real cluster" in summary and "## Per-batch schedule or one K" in summary
    import yaml

    trt = yaml.safe_load((out / "trtllm_speculative_config.yaml").read_text())["speculative_config"]
    assert set(trt) <= versions.writable("trtllm", versions.TRTLLM.newest)
    assert trt["decoding_type"] in ("Draft_Target", "NGram") and trt["max_draft_len"] >= 1
    pred = pd.read_csv(out / "synthetic_prediction.csv")
    assert set(pred.engine) == {"vllm", "sglang"} and (pred.throughput_tok_s > 0).all()


def test_export_and_predict_commands_reread_the_run(run, tmp_path):
    p, out, _ = run
    r = simspec("export", str(p), "--out", str(out), "--engine", "vllm", "--engine-version", "0.11.0",
                "--to", str(tmp_path / "old"))
    assert r.returncode == 0, r.stderr
    old = json.loads((tmp_path / "old" / "vllm_speculative_config.json").read_text())
    assert set(old) <= versions.writable("vllm", "0.11.0") and "num_speculative_tokens_per_batch_size" not in old
    assert not (tmp_path / "old" / "vllm_synthetic_config.json").exists()  # 0.11.0 has no synthetic sampler
    assert "no synthetic-acceptance config" in r.stdout and f"results written to: {tmp_path / 'old'}/" in r.stdout
    # the newest-version export equals the study's own files
    r = simspec("export", str(p), "--out", str(out), "--to", str(tmp_path / "new"))
    assert r.returncode == 0, r.stderr
    for name in ENGINE_FILES:
        assert (tmp_path / "new" / name).read_text() == (out / name).read_text(), name
    r = simspec("predict", str(p), "--out", str(out), "--to", str(tmp_path / "pred"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pred" / "synthetic_prediction.csv").read_text() == (out / "synthetic_prediction.csv").read_text()
    assert "serve vllm_synthetic_config.json" in r.stdout
    bad = simspec("export", str(p), "--out", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "no study here" in bad.stderr
    bad = simspec("predict", str(p), "--out", str(out), "--engine", "trtllm")
    assert bad.returncode == 2 and "--engine" in bad.stderr


def test_export_falls_back_when_the_engine_lacks_the_drafter():
    pts = [Point(1, "none", 0, 10.0, 0.1), Point(1, "early_exit", 3, 20.0, 0.1), Point(1, "model", 2, 15.0, 0.1),
           Point(8, "none", 0, 60.0, 0.1), Point(8, "early_exit", 1, 70.0, 0.1), Point(8, "model", 2, 55.0, 0.1)]
    best = {"gamma": 3, "drafter": "early_exit", "exit_layer": 12}
    a = answer(best, pts, export.runnable("vllm"))
    assert a.kind == "model" and a.fell_back and a.ranges == [[1, 7, 2], [8, 8, 0]]
    assert a.single_k == 2 and a.schedule_pays  # K=2 is the best single K; plain at batch 8 beats it by 9%
    e = vllm_export.build(Context(best, a, None, [0.8, 0.7], "test"), "0.24.0")
    cfg = e.config
    assert cfg["method"] == "draft_model" and cfg["num_speculative_tokens_per_batch_size"] == [[1, 7, 2], [8, 8, 0]]
    assert cfg["num_speculative_tokens"] == 2 and set(cfg) <= versions.writable("vllm", "0.24.0")
    assert any("early_exit" in n for n in e.notes)
    assert ranges(best_per_bucket(pts)) == [[1, 7, 3], [8, 8, 1]]
    assert vllm_export.token_tree([2, 1]) == "[(0,), (1,), (0, 0), (1, 0)]"


def test_rerun_resumes_and_adds_only_missing_trials(run, tmp_path):
    p, out, _ = run
    import shutil

    out2 = tmp_path / "run"
    shutil.copytree(out, out2)
    before = pd.read_parquet(out2 / "trials.parquet")
    r = simspec("study", str(p), "--out", str(out2), "--trials", "18", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resumed study 'small': 14 trials were already done, ran 4 more" in r.stdout
    after = pd.read_parquet(out2 / "trials.parquet")
    assert len(after) == 18 and after.number.tolist() == list(range(18))
    pd.testing.assert_frame_equal(before.drop(columns=["duration_s", "wall_s"]),
                                  after.head(14).drop(columns=["duration_s", "wall_s"]), check_dtype=False)


def test_same_seed_same_numbers(tmp_path):
    p = small_study(tmp_path, trials=8)
    vals = []
    for d in ("a", "b"):
        r = simspec("study", str(p), "--out", str(tmp_path / d), "--no-progress")
        assert r.returncode == 0, r.stderr
        df = pd.read_parquet(tmp_path / d / "trials.parquet")
        vals.append(df[["gamma", "drafter", "exit_layer", "vocab", "max_batch", "throughput_tok_s"]])
    pd.testing.assert_frame_equal(vals[0], vals[1])


def test_two_workers_on_sqlite_lose_and_duplicate_nothing(tmp_path):
    p = small_study(tmp_path, trials=10)
    r = simspec("study", str(p), "--out", str(tmp_path / "w"), "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    st = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 'w' / 'study.db'}")
    nums = [t.number for t in st.trials]
    assert sorted(nums) == list(range(10))
    # workers share one count of trials (study.runner.claim): a second worker that starts after
    # the first has claimed all 10 runs none, so one or two pids, never more
    assert 1 <= len({t.user_attrs["summary"]["worker_pid"] for t in st.trials}) <= 2
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in st.trials)


def test_multi_objective_pareto(tmp_path):
    p = small_study(tmp_path, trials=16, objectives='throughput = "maximize"\ntpot_p99 = "minimize"', tpot_max=1.0)
    out = tmp_path / "mo"
    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    front = pd.read_csv(out / "pareto.csv")
    st = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(front.number) == sorted(t.number for t in st.best_trials) and len(front) >= 1
    pts = [(t.values[0], t.values[1]) for t in results.complete(st)]
    for _, row in front.iterrows():
        a, b = row["value_throughput_tok_s"], row["value_tpot_p99_s"]
        assert not any(x >= a and y <= b and (x > a or y < b) for x, y in pts)  # nobody dominates it
    assert "## Pareto front" in (out / "summary.md").read_text()


def test_capacity_finds_the_fewest_replicas(tmp_path):
    extra = "\n[capacity]\nrate = 40.0\nmax_replicas = 16\nrequests = 200\n"
    p = small_study(tmp_path, trials=6, tpot_max=0.06, extra=extra)
    text = p.read_text().replace("[constraints]", "[constraints]\ne2e_p99_s = { max = 6.0 }")
    p.write_text(text)
    out = tmp_path / "cap"
    r = simspec("study", str(p), "--capacity", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "Fewest replicas:" in r.stdout
    best = tomllib.loads((out / "best.toml").read_text())
    n = best["placement"]["replicas"]
    assert best["workload"]["arrival"] == "poisson" and best["workload"]["rate"] == 40.0
    ok = json.loads(simspec("simulate", str(out / "best.toml"), "--json").stdout)
    assert ok["tpot_p99_s"] <= 0.06 and ok["e2e_p99_s"] <= 6.0
    if n > 1:  # one replica fewer misses the SLO (or falls behind)
        fewer = out / "fewer.toml"
        fewer.write_text((out / "best.toml").read_text().replace(f"replicas = {n}", f"replicas = {n - 1}"))
        s = json.loads(simspec("simulate", str(fewer), "--json").stdout)
        assert s["tpot_p99_s"] > 0.06 or s["e2e_p99_s"] > 6.0
    assert n >= 2, "the rate is chosen so that one replica cannot keep up"
    df = pd.read_parquet(out / "trials.parquet")
    assert (df[df.feasible].replicas >= n).all()


def test_capacity_needs_a_queueing_slo(tmp_path):
    p = small_study(tmp_path, extra="\n[capacity]\nrate = 40.0\n")
    r = simspec("study", str(p), "--capacity", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "constraints: --capacity needs a limit that sees queueing" in r.stderr
