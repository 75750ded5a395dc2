"""`simspec profile --merge`: per point the fastest run of all captures (with its split), the
passes and repeats summed, refused for captures of different things (one line, exit 2, nothing
written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from clihelpers import cli
from simspec.profile.costmodel import ProfileCostModel

SHIPPED = Path(__file__).resolve().parents[1] / "profiles" / "intel-xeon" / "smollm2-135m-fp32.parquet"
KEY = ["kind", "batch", "q", "context", "rows"]


def copy(dst: Path, scale: np.ndarray | None = None, **meta) -> Path:
    df = pd.read_parquet(SHIPPED)
    side = json.loads(SHIPPED.with_suffix(".json").read_text())
    if scale is not None:
        for c in ("total_s", "layer_s", "head_s", "rest_s", "total_median_s", "total_max_s"):
            df[c] = df[c] * scale
    side.update(meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(dst, index=False)
    dst.with_suffix(".json").write_text(json.dumps(side))
    return dst


def test_merge_takes_each_points_fastest_run_with_its_split(tmp_path):
    n = len(pd.read_parquet(SHIPPED))
    rng = np.random.default_rng(0)
    sa, sb = rng.uniform(0.8, 1.2, n), rng.uniform(0.8, 1.2, n)
    a, b = copy(tmp_path / "a.parquet", sa), copy(tmp_path / "b.parquet", sb)
    out = tmp_path / "m.parquet"
    res = cli("profile", "--merge", str(a), "--merge", str(b), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "gave" in res.stdout
    A, B, M = (pd.read_parquet(p).set_index(KEY).sort_index() for p in (a, b, out))
    take_b = B["total_s"] < A["total_s"]
    assert 0 < take_b.sum() < n  # both contribute
    for c in ("total_s", "layer_s", "head_s", "rest_s"):  # brute force, point by point
        assert np.array_equal(M[c].to_numpy(), np.where(take_b, B[c], A[c]))
    assert (M["repeats"] == A["repeats"] + B["repeats"]).all()
    assert (M["total_max_s"] == np.maximum(A["total_max_s"], B["total_max_s"])).all()
    meta = json.loads(out.with_suffix(".json").read_text())
    src = json.loads(a.with_suffix(".json").read_text())
    assert meta["protocol"]["stop"] == "merged"
    assert meta["protocol"]["passes"] == 2 * (src.get("protocol") or {}).get("passes", 0)
    assert [m["path"] for m in meta["merged"]] == [str(a), str(b)] and meta["command"].startswith("simspec profile")
    assert [m["fastest_points"] for m in meta["merged"]] == [n - int(take_b.sum()), int(take_b.sum())]
    ProfileCostModel.load(out)  # a profile like any other


def test_merge_refuses_captures_of_different_things(tmp_path):
    a = copy(tmp_path / "a.parquet")
    b = copy(tmp_path / "b.parquet", dtype="bf16")
    out = tmp_path / "m.parquet"
    res = cli("profile", "--merge", str(a), "--merge", str(b), "--out", str(out))
    assert res.returncode == 2 and "b.parquet" in res.stderr and "dtype" in res.stderr, res.stderr
    assert len([l for l in res.stderr.splitlines() if l.strip()]) == 1
    assert not out.exists() and not out.with_suffix(".json").exists()
    c = copy(tmp_path / "c.parquet", machine={"cpu": "another", "isa": []})
    res = cli("profile", "--merge", str(a), "--merge", str(c), "--out", str(out))
    assert res.returncode == 2 and "machine.cpu" in res.stderr, res.stderr
    res = cli("profile", "--merge", str(a), "--merge", str(a), "--out", str(a))
    assert res.returncode == 2 and "--out" in res.stderr
    res = cli("profile", "--merge", str(a), "--out", str(out))
    assert res.returncode == 2 and "at least two" in res.stderr
    shutil.rmtree(tmp_path)
