"""rest + l x layer + head(K) from one profile vs timing the first l layers with a K-row head.

A mid-sized random model (so that layers and head take milliseconds, not Python overhead)
is profiled on a small grid; the partial-model predictions must be within 10% of direct
timings (fastest of several runs on both sides, as in the shipped profiles).

Timing-sensitive: on a CPU shared with other busy processes the profile and the direct
timings see different contention, so this runs only with SIMSPEC_TIMING_TESTS=1 (on a quiet
machine). It has not yet been seen passing: under load 6 on 2 cores it failed by 1.5-6x, and on
the quiet machine (2026-11-22 10:51) the predictions read 1.4-1.75x the direct timings (3.3 vs
1.9 ms), probably the per-layer timing hooks at sub-millisecond layers.
"""

from __future__ import annotations

import contextlib
import os

import pandas as pd
import pytest
import torch

from simspec.models import TrimmedHead, first_layers, tiny_model
from simspec.profile.capture import capture, write_profile
from simspec.profile.check import swapped_head
from simspec.profile.costmodel import ProfileCostModel
from simspec.profile.grid import Grid
from simspec.profile.timer import time_plain
from simspec.profile.workloads import FilledCache, decode_fn

pytestmark = pytest.mark.skipif(os.environ.get("SIMSPEC_TIMING_TESTS") != "1",
                                reason="timing test: set SIMSPEC_TIMING_TESTS=1 on a quiet machine")

GRID = Grid(batch=(1, 2), q=(1, 4), context=(128, 512), prefill_batch=(1, 2),
            prefill_len=(16, 64), head_tokens=(1, 2, 8), head_rows=(1024, 4096), runs=7,
            long_s=1.0, long_runs=2)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    torch.set_num_threads(1)
    lm = tiny_model("llama", layers=8, vocab=32768, hidden=512, seed=0)
    rows = capture(lm, GRID)
    out = tmp_path_factory.mktemp("dec") / "mid.parquet"
    write_profile(lm, rows, GRID, out, threads=1, seconds=0.0, command="test", spec="tiny")
    return lm, ProfileCostModel.load(out)


def direct(lm, layers, rows, b=1, q=1, ctx=256) -> float:
    model = lm.model
    cache = FilledCache(model, b, ctx)
    head = None if rows is None else TrimmedHead(model, torch.arange(rows))
    with first_layers(model, layers), (swapped_head(model, head) if head is not None
                                       else contextlib.nullcontext()):
        return min(time_plain(decode_fn(model, cache, b, q), "cpu", 2, 9, cache.reset))


@pytest.mark.parametrize("layers,rows", [(2, 1024), (4, 4096), (6, None), (8, 2048)])
def test_partial_model_priced_within_10_percent(profiled, layers, rows):
    lm, cm = profiled
    pred = cm.latency_s("decode", 1, 1, 256, layers=layers, head_rows=rows)
    meas = direct(lm, layers, rows)
    assert pred == pytest.approx(meas, rel=0.10), (pred, meas)


def test_profile_splits_add_up(profiled):
    _, cm = profiled
    full = cm.latency_s("decode", 1, 1, 128)
    parts = cm.latency_s("decode", 1, 1, 128, layers=cm.num_layers)
    assert parts == pytest.approx(full, rel=0.02)
