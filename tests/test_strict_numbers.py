"""Strict numbers and plain reasons (issue 29): each example a user tried gives one line naming
the file (or flag), the key and the reason, with exit code 2, or a correct result.

- nan and +-inf are refused alike in every file schema (they were: nan refused, inf accepted,
  and `step_ms = inf` gave throughput 0 with NaN metrics); booleans are not numbers;
- `--json` output is strict JSON (a metric that is not finite is null);
- a study whose searched max_batch cannot make a scenario is refused up front;
- numeric flags are checked for range and finiteness;
- union errors name the real complaint (min > max, high < low), not a branch's type;
- Ctrl-C inside a trial is one clean line (no Optuna traceback) and the study resumes;
- help text shows the TOML tables it names ([capacity], [[config]]) literally.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from clihelpers import cli
from studyhelpers import small_study

REPO = Path(__file__).resolve().parents[1]
QUICK = (REPO / "studies" / "quickstart.toml").read_text()


def _no_constant(name: str):
    raise AssertionError(f"not JSON: {name}")


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity / -Infinity (what strict parsers do)."""
    return json.loads(text, parse_constant=_no_constant)


def one_error_line(res, *parts: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]


def scenario(tmp: Path, old: str, new: str, name: str = "sc.toml") -> Path:
    assert old in QUICK, old
    p = tmp / name
    p.write_text(QUICK.replace(old, new).replace("requests = 64", "requests = 6"))
    return p


# -- non-finite and boolean values in files ---------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "+inf"])
def test_step_ms_not_finite_is_refused(tmp_path, value):
    p = scenario(tmp_path, "step_ms = 238.0", f"step_ms = {value}")
    one_error_line(cli("simulate", p, "--json"), "sc.toml", "target.cost.step_ms", "finite")


@pytest.mark.parametrize("old,new,key", [
    ("requests = 64", "requests = true", "workload.requests"),
    ("max_batch = 8", "max_batch = true", "serving.max_batch"),
    ("step_ms = 238.0", "step_ms = false", "target.cost.step_ms"),
    ("per_position = [0.80, 0.72, 0.68]", "per_position = [0.80, true]", "acceptance.per_position[1]"),
    ("min = 8, max = 2048", "min = true, max = 2048", "workload.prompt_len.min"),
    ("rate = 0.05", "rate = inf", "workload.rate"),
    ("price_per_hour = 0.05", "price_per_hour = inf", "placement.devices.cpu0.price_per_hour"),
    ("sigma = 0.8", "sigma = nan", "workload.prompt_len.sigma"),
])
def test_booleans_and_non_finite_numbers_in_a_scenario(tmp_path, old, new, key):
    p = tmp_path / "sc.toml"
    p.write_text(QUICK.replace(old, new, 1))
    line = one_error_line(cli("simulate", p), "sc.toml", key)
    assert "boolean" in line or "finite" in line, line


def test_json_output_is_strict_json_when_metrics_are_not_finite(tmp_path):
    # one output token per request: no TPOT, no tokens per round -- NaN before, null now
    p = scenario(tmp_path, "output_len = { dist = \"lognormal\", median = 128, sigma = 0.6, min = 8, max = 512 }",
                 "output_len = 1")
    res = cli("simulate", p, "--json", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    data = strict_loads(res.stdout)
    assert data["tpot_p99_s"] is None and data["mean_tokens_per_round"] is None
    assert data["throughput_tok_s"] > 0 and data["output_tokens"] == 6
    strict_loads((tmp_path / "out" / "summary.json").read_text())


def test_json_output_of_a_finite_run_keeps_its_numbers(tmp_path):
    p = scenario(tmp_path, "requests = 64", "requests = 64")
    data = strict_loads(cli("simulate", p, "--json").stdout)
    assert all(isinstance(v, (int, float)) for k, v in data.items()), data


# -- studies ----------------------------------------------------------------------------

def test_constraint_nan_is_refused_up_front(tmp_path):
    p = small_study(tmp_path, tpot_max=float("nan"))
    one_error_line(cli("study", p, "--no-progress", "--out", tmp_path / "run"),
                   "small.toml", "constraints.tpot_p99_s.max", "finite")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("old,new,key", [
    ("max_batch = [1, 2, 4, 8]", "max_batch = [0]", "search.max_batch"),
    ("max_batch = [1, 2, 4, 8]", "max_batch = { low = 0, high = 4 }", "search.max_batch"),
    ("max_batch = [1, 2, 4, 8]", "max_batch = [1, true]", "search.max_batch[1]"),
    ("vocab = [4096, 32768, 131072]", "vocab = [0, 4096]", "search.vocab"),
    ("gamma = { low = 0, high = 6 }", "gamma = [-1, 2]", "search.gamma"),
    ("baselines = [{ gamma = 0, max_batch = 4 }]", "baselines = [{ gamma = 0, max_batch = 0 }]", "baselines[0].max_batch"),
    ("baselines = [{ gamma = 0, max_batch = 4 }]", "baselines = [{ gamma = true }]", "baselines[0].gamma"),
    ("trials = 12", "trials = true", "trials"),
    ("head_ms = 1.5", "head_ms = inf", "drafters.model.head_ms"),
    ("[4096, 0.85]", "[4096, nan]", "drafters.model.coverage[0][1]"),
])
def test_study_values_that_no_trial_could_use_are_refused(tmp_path, old, new, key):
    p = small_study(tmp_path)
    text = p.read_text()
    assert old in text, old
    p.write_text(text.replace(old, new, 1))
    one_error_line(cli("study", p, "--no-progress", "--out", tmp_path / "run"), "small.toml", key)
    assert not (tmp_path / "run").exists()


# -- flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd,value", [("export", "-1"), ("export", "nan"), ("export", "inf"),
                                       ("predict", "inf"), ("predict", "-0.5"), ("predict", "nan")])
def test_schedule_min_gain_is_checked(tmp_path, cmd, value):
    p = small_study(tmp_path)
    line = one_error_line(cli(cmd, p, "--schedule-min-gain", value, "--out", tmp_path / "run"),
                          "--schedule-min-gain", "finite")
    assert value.lstrip("-+") in line


@pytest.mark.parametrize("args,flag", [
    (["run", "--target", "nowhere", "--temperature", "nan"], "--temperature"),
    (["run", "--target", "nowhere", "--temperature", "inf"], "--temperature"),
    (["trace", "--summary", "traces/qwen2.5-coder-1.5b__humaneval.parquet", "--g-max", "0"], "--g-max"),
    (["trace", "--summary", "traces/qwen2.5-coder-1.5b__humaneval.parquet", "--g-max", "-3"], "--g-max"),
    (["trace", "--target", "x", "--out", "x.parquet", "--temperatures", "1.0,nan"], "--temperatures"),
])
def test_numeric_flags_out_of_range(args, flag):
    one_error_line(cli(*args, cwd=REPO), flag)


# -- reasons --------------------------------------------------------------------------------

def test_uniform_min_above_max_says_so(tmp_path):
    p = scenario(tmp_path, 'prompt_len = { dist = "lognormal", median = 200, sigma = 0.8, min = 8, max = 2048 }',
                 'prompt_len = { dist = "uniform", min = 100, max = 10 }')
    line = one_error_line(cli("simulate", p), "sc.toml", "workload.prompt_len", "min (100) is above max (10)")
    assert "valid integer" not in line


def test_study_range_high_below_low_says_so(tmp_path):
    p = small_study(tmp_path)
    p.write_text(p.read_text().replace("gamma = { low = 0, high = 6 }", "gamma = { low = 5, high = 1 }"))
    line = one_error_line(cli("study", p, "--no-progress", "--out", tmp_path / "run"),
                          "search.gamma", "high (1) < low (5)")
    assert "valid list" not in line


def test_a_value_fitting_no_branch_names_every_branch(tmp_path):
    p = small_study(tmp_path)
    p.write_text(p.read_text().replace("vocab = [4096, 32768, 131072]", 'vocab = "all"'))
    one_error_line(cli("study", p, "--no-progress", "--out", tmp_path / "run"),
                   "search.vocab", "should be a table, a list or 'trace'")


@pytest.mark.parametrize("cmd,literal", [("study", "[capacity]"), ("study", "[constraints]"),
                                         ("validate", "[[config]]")])
def test_help_shows_literal_brackets(cmd, literal):
    res = cli(cmd, "--help", env={"COLUMNS": "300", "TERM": "dumb"})
    assert res.returncode == 0, res.stderr
    assert literal in res.stdout, res.stdout


# -- a clean interrupt ------------------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_ctrl_c_in_a_trial_is_one_line_and_the_study_resumes(tmp_path, monkeypatch):
    import optuna

    from simspec.study import evaluate

    p = small_study(tmp_path, trials=4, requests=16)
    out = tmp_path / "run"
    calls = {"n": 0}
    real = evaluate.Evaluator.evaluate

    def interrupted_third(self, point):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, point)

    monkeypatch.setattr(evaluate.Evaluator, "evaluate", interrupted_third)
    logs = _Records()
    logger = logging.getLogger("optuna")  # optuna's handler writes to the stderr of its first use
    logger.addHandler(logs)
    try:
        res = cli("study", p, "--no-progress", "--out", out)
    finally:
        logger.removeHandler(logs)
    assert res.returncode == 130, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), res.stderr
    assert "Traceback" not in res.stderr
    noisy = [r.getMessage() for r in logs.records if r.exc_info or "failed" in r.getMessage()]
    assert not noisy, noisy

    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    st = optuna.load_study(study_name="small", storage=storage)
    states = [t.state.name for t in st.get_trials(deepcopy=False)]
    assert states.count("RUNNING") == 0 and states.count("FAIL") == 1, states

    monkeypatch.setattr(evaluate.Evaluator, "evaluate", real)
    res = cli("study", p, "--no-progress", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "resumed study 'small': 2 trials were already done, ran 2 more" in res.stdout
    done = [t for t in optuna.load_study(study_name="small", storage=storage).get_trials(deepcopy=False)
            if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4


def test_coverage_k_below_one_is_refused(tmp_path):
    # K = 0 reached np.log(0) in the interpolation (a RuntimeWarning and a -inf abscissa)
    p = small_study(tmp_path)
    p.write_text(p.read_text().replace("[4096, 0.85]", "[0, 0.85]"))
    one_error_line(cli("study", p, "--no-progress", "--out", tmp_path / "run"),
                   "small.toml", "drafters.model", "`coverage` K values")
