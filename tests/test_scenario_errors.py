"""Bad scenario files: one line naming file, key and reason; exit 2; no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
[target]
cost = { step_ms = 10.0 }
[draft]
kind = "model"
cost = { step_ms = 1.0 }
[acceptance]
iid = 0.8
[speculation]
draft_len = 3
[workload]
requests = 4
arrival = "poisson"
rate = 2.0
prompt_len = 16
output_len = 50
[serving]
max_batch = 2
seed = 0
"""


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "simspec.cli", *args], capture_output=True, text=True, cwd=cwd)


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "old,new,key,reason",
    [
        ("seed = 0", "seed = 0\nbogus = 1", "serving.bogus", "unknown key"),
        ("[acceptance]", "[acceptance]\nalpha = 0.5", "acceptance.alpha", "unknown key"),
        ("max_batch = 2", 'max_batch = "two"', "serving.max_batch", "integer"),
        ("rate = 2.0", "rate = -1.0", "workload.rate", "greater than 0"),
        ("draft_len = 3", "draft_len = -2", "speculation.draft_len", "greater than or equal to 0"),
        ("iid = 0.8", "iid = 1.5", "acceptance.iid", "less than or equal to 1"),
        ('kind = "model"', 'kind = "oracle"', "draft.kind", "'none', 'model', 'early_exit', 'ngram', 'suffix', 'eagle3', 'mtp' or 'parallel'"),
        ("rate = 2.0", "", "workload", "needs `rate`"),
        ("[acceptance]\niid = 0.8", "", "acceptance", "speculation needs an [acceptance] section"),
        ('cost = { step_ms = 10.0 }', 'cost = { step_ms = 10.0 }\nprofile = "x.parquet"', "target", "exactly one of"),
    ],
)
def test_bad_values_one_line_exit_2(tmp_path, old, new, key, reason):
    assert old in GOOD
    p = write(tmp_path, GOOD.replace(old, new, 1))
    r = cli("simulate", str(p), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(p) in lines[0] and key in lines[0] and reason in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_good_file_runs(tmp_path):
    r = cli("simulate", str(write(tmp_path, GOOD)), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for k in ["throughput_tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s",
              "e2e_p99_s", "mean_tokens_per_round", "requests", "output_tokens", "sim_time_s", "wall_s", "busy_dev0"]:
        assert k in s


def test_missing_file(tmp_path):
    r = cli("simulate", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: file not found"


def test_not_toml(tmp_path):
    r = cli("simulate", str(write(tmp_path, "[target\ncost = 1")))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_profile_file(tmp_path):
    p = write(tmp_path, GOOD.replace('cost = { step_ms = 10.0 }', 'profile = "profiles/none.parquet"', 1))
    r = cli("simulate", str(p))
    assert r.returncode == 2
    assert "target.profile" in r.stderr and "not found" in r.stderr


def test_unknown_device(tmp_path):
    p = write(tmp_path, GOOD + '[placement]\ntarget = "gpu9"\n')
    r = cli("simulate", str(p))
    assert r.returncode == 2 and "placement.target" in r.stderr and "gpu9" in r.stderr


def test_request_larger_than_kv(tmp_path):
    p = write(tmp_path, GOOD.replace("seed = 0", "seed = 0\nkv_capacity_tokens = 20"))
    r = cli("simulate", str(p))
    assert r.returncode == 2 and "serving.kv_capacity_tokens" in r.stderr


def test_nothing_half_written(tmp_path):
    bad = write(tmp_path, GOOD.replace("seed = 0", "seed = 0\nbogus = 1"))
    out = tmp_path / "run"
    req = tmp_path / "req.parquet"
    r = cli("simulate", str(bad), "--out", str(out), "--requests-out", str(req))
    assert r.returncode == 2
    assert not out.exists() and not req.exists()


def test_outputs_written_and_reported(tmp_path):
    out = tmp_path / "run"
    req = tmp_path / "req.parquet"
    r = cli("simulate", str(write(tmp_path, GOOD)), "--out", str(out), "--requests-out", str(req))
    assert r.returncode == 0, r.stderr
    import pandas as pd

    df = pd.read_parquet(req)
    assert len(df) == 4 and (df["tokens"] == 50).all()
    assert json.loads((out / "summary.json").read_text())["requests"] == 4
    assert str(out) in r.stdout


def test_same_seed_identical_json_different_seed_differs(tmp_path):
    p = write(tmp_path, GOOD)
    a = json.loads(cli("simulate", str(p), "--json").stdout)
    b = json.loads(cli("simulate", str(p), "--json").stdout)
    for d in (a, b):
        d.pop("wall_s")
    assert a == b
    c = json.loads(cli("simulate", str(write(tmp_path, GOOD.replace("seed = 0", "seed = 1"), "t.toml")), "--json").stdout)
    c.pop("wall_s")
    assert c != a


def test_data_paths_resolve_against_the_scenario_folder_first(tmp_path, monkeypatch):
    from simspec.config import resolve_data_path

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.parquet").write_text("scenario's")
    (tmp_path / "x.parquet").write_text("cwd's")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path("x.parquet", tmp_path / "a" / "s.toml") == tmp_path / "a" / "x.parquet"
    # falls back to the CWD when the scenario's folder has no such file
    assert resolve_data_path("x.parquet", tmp_path / "b" / "s.toml") == Path("x.parquet")
