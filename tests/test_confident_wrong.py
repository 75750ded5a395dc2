"""Confident wrong answers (issue 29): inputs that used to give a plausible result to another
question than the one asked. One test per class: an empty [search], a profile of another model,
a trace sidecar that contradicts its Parquet, a damaged trace behind a study's drafter, a
resume after the search changed, and two runs of one study on one run folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clihelpers import cli
from studyhelpers import small_study
from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "traces" / "qwen2.5-coder-1.5b__sharegpt-long.parquet"  # 8 sequences: small
PROFILES = REPO / "profiles" / "intel-xeon"


def _one_error_line(r, *words: str) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _trials(out: Path) -> "object":
    return pq.read_table(out / "trials.parquet").to_pandas()


# -- an empty [search] ----------------------------------------------------------------------

AS_WRITTEN = """
name = "asw"
trials = 6
[scenario.target]
name = "t"
cost = {{ step_ms = 20.0, per_seq_ms = 0.5 }}
[scenario.draft]
kind = "model"
name = "d"
cost = {{ step_ms = 3.0, per_seq_ms = 0.1 }}
[scenario.acceptance]
per_position = [0.85, 0.8, 0.75]
[scenario.speculation]
draft_len = 3
[scenario.serving]
max_batch = 4
seed = 0
[workload]
requests = 16
arrival = "closed"
concurrency = 4
prompt_len = 32
output_len = 32
{search}
[constraints]
tpot_p99_s = {{ max = 1.0 }}
"""


@pytest.mark.parametrize("search", ["[search]", ""])
def test_empty_search_is_the_scenario_as_written(tmp_path, search):
    """Before: plain decoding trials only, "speculation does not pay", `{}` as the vLLM config."""
    p = tmp_path / "s.toml"
    p.write_text(AS_WRITTEN.format(search=search))
    out = tmp_path / "run"
    r = cli("study", str(p), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "one point" in r.stderr and "scenario as written" in r.stderr
    df = _trials(out)
    assert len(df) == 1  # one point: one trial, not six identical ones
    assert int(df["gamma"][0]) == 3 and df["drafter"][0] == "model"
    vllm = json.loads((out / "vllm_speculative_config.json").read_text())
    assert vllm.get("num_speculative_tokens") == 3, vllm
    summary = (out / "summary.md").read_text()
    assert "| gamma | 3 |" in summary
    assert "No plain-decoding trial (gamma = 0) ran" in summary  # and not "met the SLOs"
    assert "met the SLOs" not in summary


def test_plain_line_says_when_the_best_is_plain(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(AS_WRITTEN.format(search="[search]\ngamma = [0]\nmax_batch = [1, 4]"))
    out = tmp_path / "run"
    r = cli("study", str(p), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = (out / "summary.md").read_text()
    assert "decodes plainly (gamma = 0)" in summary
    assert "No plain-decoding trial" not in summary


# -- a profile of another model --------------------------------------------------------------

def test_validation_plan_refuses_a_profile_of_another_model(tmp_path):
    """Before: the 1.5B target priced with SmolLM2's profile, 32.4 tok/s and no warning."""
    text = (REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml").read_text()
    text = text.replace('"profiles/intel-xeon/qwen2.5-coder-1.5b-bf16.parquet"',
                        json.dumps(str(PROFILES / "smollm2-135m-bf16.parquet")))
    for rel in ("profiles/", "traces/"):
        text = text.replace(f'"{rel}', f'"{REPO}/{rel}')
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    r = cli("validate", str(plan), "--predict-only", cwd=tmp_path)
    _one_error_line(r, str(plan), "profiles.qwen2.5-coder-1.5b.bf16", "'smollm2-135m'", "'qwen2.5-coder-1.5b'")
    assert "tok/s" not in r.stdout


def test_scenario_priced_by_another_models_profile_warns_loudly(tmp_path):
    sc = tmp_path / "s.toml"
    sc.write_text(f"""
[target]
name = "qwen2.5-coder-1.5b"
profile = "{PROFILES / 'smollm2-135m-bf16.parquet'}"
[workload]
requests = 2
arrival = "closed"
concurrency = 1
prompt_len = 200
output_len = 8
""")
    r = cli("simulate", str(sc), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.startswith("warning: ")]
    assert len(warn) == 1 and "target.profile" in warn[0], r.stderr
    assert "'smollm2-135m'" in warn[0] and "'qwen2.5-coder-1.5b'" in warn[0]
    # the same profile under its own name: no warning
    sc.write_text(sc.read_text().replace('name = "qwen2.5-coder-1.5b"', 'name = "smollm2-135m-bf16"'))
    r = cli("simulate", str(sc), "--json", cwd=tmp_path)
    assert r.returncode == 0 and "warning: " not in r.stderr, r.stderr


# -- a sidecar that contradicts its Parquet ---------------------------------------------------

def _trace_copy(tmp: Path, **changes) -> Path:
    p = tmp / "t.parquet"
    shutil.copy(TRACE, p)
    meta = json.loads(TRACE.with_suffix(".json").read_text())
    meta.update(changes)
    p.with_suffix(".json").write_text(json.dumps(meta))
    return p


SIDECAR_LIES = [  # key, value, words the refusal must name (both values)
    ("target", "smollm2-135m", ["'smollm2-135m'", "49152"]),
    ("prompts", 100, ["100", "8 sequences"]),
    ("max_new_tokens", 64, ["64", "128 output tokens"]),
    ("kind", "simspec-profile", ["'simspec-profile'", "'simspec-trace'"]),
    ("complete", False, ["false", "all 8"]),
]


@pytest.mark.parametrize("key,value,words", SIDECAR_LIES, ids=[k for k, _, _ in SIDECAR_LIES])
def test_sidecar_that_contradicts_its_parquet_is_refused(tmp_path, key, value, words):
    p = _trace_copy(tmp_path, **{key: value})
    side = str(p.with_suffix(".json"))
    _one_error_line(cli("trace", "--summary", str(p), cwd=tmp_path), f"{side}: {key}: ", *words)
    sc = tmp_path / "s.toml"
    sc.write_text(f"""
[target]
cost = {{ step_ms = 10.0 }}
[draft]
kind = "early_exit"
exit_layer = 24
cost = {{ step_ms = 2.0 }}
[acceptance]
trace = "{p}"
drafter = "exit24"
[speculation]
draft_len = 2
[workload]
requests = 4
arrival = "closed"
concurrency = 2
dataset = "trace"
""")
    _one_error_line(cli("simulate", str(sc), cwd=tmp_path), f"{side}: {key}: ", *words)


def test_trace_without_a_sidecar_is_refused(tmp_path):
    p = tmp_path / "t.parquet"
    shutil.copy(TRACE, p)
    line = _one_error_line(cli("trace", "--summary", str(p), cwd=tmp_path), str(p), "no sidecar", "t.json")
    assert "?" not in line  # not "target ? (?)"


def test_shipped_traces_agree_with_their_sidecars():
    from simspec.trace.schema import load_trace

    for p in sorted((REPO / "traces").glob("*.parquet")):
        load_trace(p)


# -- a damaged trace behind a study's drafter ---------------------------------------------------

TRACED_STUDY = """
name = "tr"
trials = 4
[scenario.target]
name = "qwen2.5-coder-1.5b"
cost = {{ step_ms = 20.0, per_seq_ms = 0.5 }}
layers = 28
[scenario.serving]
seed = 0
[workload]
requests = 8
arrival = "closed"
concurrency = 2
prompt_len = 64
output_len = 32
[search]
gamma = {{ low = 1, high = 3 }}
drafter = ["model", "ngram"]
[drafters.model]
name = "qwen2.5-coder-0.5b"
cost = {{ step_ms = 5.0 }}
acceptance = {{ trace = "{trace}", drafter = "qwen2.5-coder-0.5b" }}
[drafters.ngram]
acceptance = {{ iid = 0.3 }}
"""


def test_damaged_trace_behind_a_study_drafter_is_caught_up_front(tmp_path):
    """Before: the model drafter's trials turned invalid one by one and ngram was reported best."""
    p = tmp_path / "t.parquet"
    shutil.copy(TRACE, p)
    shutil.copy(TRACE.with_suffix(".json"), p.with_suffix(".json"))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # truncated
    study = tmp_path / "tr.toml"
    study.write_text(TRACED_STUDY.format(trace=p))
    from simspec.study.spec import load_study

    with pytest.raises(InputError) as exc:
        load_study(study)
    assert exc.value.file == str(study) and exc.value.key == "drafters.model"
    assert str(p) in exc.value.reason and "not a readable Parquet" in exc.value.reason
    out = tmp_path / "run"
    _one_error_line(cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path), "drafters.model")
    assert not (out / "study.db").exists()  # no trial ran
    # whole again: the study loads
    shutil.copy(TRACE, p)
    load_study(study)


# -- a resume after the question changed --------------------------------------------------------

def test_resume_with_a_changed_search_is_refused(tmp_path):
    study = small_study(tmp_path, trials=2, requests=12)
    out = tmp_path / "run"
    r = cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = study.read_text()
    study.write_text(text.replace("max_batch = [1, 2, 4, 8]", "max_batch = [2, 4]"))
    line = _one_error_line(cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path),
                           f"{study}: search.max_batch: ", "--new", "2 trials")
    assert "changed: search.max_batch" in line
    _one_error_line(cli("export", str(study), "--out", str(out), "--to", str(tmp_path / "exp"), cwd=tmp_path), "search.max_batch")
    study.write_text(text.replace("tpot_p99_s = { max = 0.05 }", "tpot_p99_s = { max = 0.07 }"))
    _one_error_line(cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path),
                    "constraints.tpot_p99_s")
    study.write_text(text.replace('throughput = "maximize"', 'cost_per_mtok = "minimize"'))
    _one_error_line(cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path), "objectives")
    # the same question resumes; --new starts the changed one over
    study.write_text(text)
    r = cli("study", str(study), "--out", str(out), "--no-progress", "--trials", "3", cwd=tmp_path)
    assert r.returncode == 0 and "2 trials were already done" in r.stdout, r.stdout + r.stderr
    study.write_text(text.replace("max_batch = [1, 2, 4, 8]", "max_batch = [2, 4]"))
    r = cli("study", str(study), "--out", str(out), "--no-progress", "--new", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    df = _trials(out)
    assert len(df) == 2 and set(df["max_batch"].dropna().astype(int)) <= {2, 4}


# -- two runs of one study on one run folder ----------------------------------------------------

def test_second_run_on_a_busy_run_folder_is_refused(tmp_path):
    from simspec.study.storage import default_url, run_lock

    study = small_study(tmp_path, trials=2, requests=12)
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(default_url(out)):  # a first run holds the folder
        r = cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path)
    _one_error_line(r, str(out), "another `simspec study`", "--out")
    r = cli("study", str(study), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(_trials(out)) == 2


def test_two_concurrent_processes_end_with_trials_trials(tmp_path):
    """Before: each process ran the trials it found missing: twice --trials in the end."""
    study = small_study(tmp_path, trials=6, requests=48)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "simspec.cli", "study", str(study), "--out", str(out), "--no-progress"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(1.5)  # the first is past its imports, inside its trials
    procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, _, err in results:
        assert "Traceback" not in err, err
        assert code == 0 or (code == 2 and "another `simspec study`" in err), (code, err)
    assert any(code == 0 for code, _, _ in results)
    import optuna

    st = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'study.db'}")
    assert len([t for t in st.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 6


def test_trace_of_another_model_warns_loudly(tmp_path):
    sc = tmp_path / "s.toml"
    body = f"""
[target]
name = "{{name}}"
cost = {{{{ step_ms = 10.0 }}}}
[draft]
kind = "early_exit"
exit_layer = 24
cost = {{{{ step_ms = 2.0 }}}}
[acceptance]
trace = "{TRACE}"
drafter = "exit24"
[speculation]
draft_len = 2
[workload]
requests = 4
arrival = "closed"
concurrency = 2
dataset = "trace"
"""
    sc.write_text(body.format(name="smollm2-135m"))
    r = cli("simulate", str(sc), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warn = [l for l in r.stderr.splitlines() if l.startswith("warning: ")]
    assert len(warn) == 1 and "acceptance.trace" in warn[0] and "'qwen2.5-coder-1.5b'" in warn[0], r.stderr
    sc.write_text(body.format(name="qwen2.5-coder-1.5b-bf16"))
    r = cli("simulate", str(sc), "--json", cwd=tmp_path)
    assert r.returncode == 0 and "warning: " not in r.stderr, r.stderr


def test_runs_sharing_a_storage_stop_at_trials(tmp_path):
    """On a shared --storage two runs may work together; together they stop at --trials (a
    trial each was running may finish past it), not at twice --trials."""
    import threading

    import optuna

    from simspec.study import runner
    from simspec.study.spec import load_study

    spec = load_study(small_study(tmp_path, trials=6, requests=24))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    runner.prepare(spec, url, False, own_storage=False)  # created once, as by the first run
    errors: list[BaseException] = []

    def go() -> None:
        try:
            runner.run(spec, url, 6, 1, False, own_storage=False, progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    st = optuna.load_study(study_name="small", storage=url)
    done = [t for t in st.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(done) <= 7, len(done)
