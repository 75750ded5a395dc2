"""benchmarks/gpu/run.sh --dry-run: the borrowed-GPU one-shot script, end to end on CPU with tiny
dims, as the device machine would run it (a child process from the repository root): every
step done inside its budget, every output file there and parseable, and the synthetic
validation's tokens per round equal to the prediction exactly (forced acceptance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "gpu-out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    res = subprocess.run([str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True, timeout=400,
                         env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["elapsed_s"] < summary["budget_s"]
    steps = {s["step"]: s for s in summary["steps"]}
    assert all(s["status"] == "done" for s in steps.values()), steps
    assert set(steps) == {"env", "profile dry-draft", "profile dry-target", "synthetic serving validation",
                          "roofline fit", "table"}
    listed = {f for s in steps.values() for f in s.get("files", [])}
    for f in sorted(listed):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    env_json = json.loads((out / "env.json").read_text())
    assert env_json["torch"] and env_json["device"] == "cpu"
    from simspec.profile.costmodel import ProfileCostModel

    for name in ("dry-draft", "dry-target"):
        meta = json.loads((out / "profiles" / f"{name}-bf16.json").read_text())
        assert meta["model"] == name and meta["spec"].startswith("random:") and meta["dtype"] == "bf16"
        cost = ProfileCostModel.load(out / "profiles" / f"{name}-bf16.parquet")
        assert cost.latency_s("decode", 1, 1, 32) > 0
    vdir = out / "validation"
    df = pd.read_csv(vdir / "dry-synthetic.csv")
    assert len(df) == 4 and df["config"].str.contains("synthetic").all()
    block = json.loads((vdir / "dry-synthetic.json").read_text())
    assert block["command"].startswith("simspec validate")
    rows = block["rows"] + block["serving"]["rows"]
    assert len(rows) == 4
    for r in rows:  # forced acceptance: live tokens per round are the simulator's replay exactly
        assert r["measured_tokens_per_round"] == pytest.approx(r["predicted_tokens_per_round"], rel=1e-12), r["config"]
    assert max(r["measured_mean_batch"] for r in block["serving"]["rows"]) > 1.0
    fit = json.loads((out / "roofline_fit.json").read_text())
    assert set(fit["fits"]) == {"dry-draft-bf16", "dry-target-bf16"}
    table = pd.read_csv(out / "table.csv")
    assert set(table["model"]) == {"dry-draft", "dry-target"} and (table["decode_ms"] > 0).all()


def test_refuses_a_full_folder_and_bad_budget(tmp_path):
    (tmp_path / "x").write_text("")
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run([str(SCRIPT), str(tmp_path), "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "must be new or empty" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run([str(SCRIPT), str(tmp_path / "new"), "--dry-run", "--budget-s", "0"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 2 and "--budget-s" in res.stderr and len(res.stderr.strip().splitlines()) == 1
