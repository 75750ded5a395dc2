"""The profile cost model (torch-free): interpolation, extrapolation warnings, decomposition."""

from __future__ import annotations

import sys
import warnings

import pytest

from profhelpers import (LAYERS, VOCAB, decode_total, head_s, layer_s, prefill_total, rest_s,
                         write_synthetic)
from simspec.errors import InputError
from simspec.profile.costmodel import ProfileCostModel
from simspec.sim.costs import CostModel, load_profile_cost


@pytest.fixture()
def cm(tmp_path):
    return ProfileCostModel.load(write_synthetic(tmp_path / "p.parquet"))


def test_protocol_and_attributes(cm, tmp_path):
    assert isinstance(cm, CostModel)
    assert cm.depends_on_context
    assert cm.num_layers == LAYERS and cm.vocab_size == VOCAB
    assert cm.kv_bytes_per_token == 2 * LAYERS * 2 * 16 * 4
    assert cm.meta["model"] == "synthetic"
    assert isinstance(load_profile_cost(tmp_path / "p.parquet"), ProfileCostModel)


def test_cost_model_module_does_not_import_torch():
    import subprocess

    code = ("import sys; import simspec.profile.costmodel, simspec.sim.costs; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_exact_on_grid_points(cm):
    for b, q, c in [(1, 1, 128), (4, 8, 2048), (16, 32, 4096)]:
        assert cm.latency_s("decode", b, q, c) == pytest.approx(decode_total(b, q, c), rel=1e-9)
    assert cm.latency_s("prefill", 4, 256, 0) == pytest.approx(prefill_total(4, 256), rel=1e-9)


def test_interpolates_between_points(cm):
    for b, q, c in [(3, 5, 700), (6, 20, 3000), (1, 7, 1500)]:
        assert cm.latency_s("decode", b, q, c) == pytest.approx(decode_total(b, q, c), rel=0.1)


def test_context_axis_is_linear(cm):
    """Cost is affine in context: interpolation is linear over context (log over b and q), so
    the arithmetic midpoint of two grid contexts gets the geometric mean of their latencies
    (over log context that would be the geometric midpoint)."""
    lo, hi = cm.latency_s("decode", 4, 8, 512), cm.latency_s("decode", 4, 8, 2048)
    assert cm.latency_s("decode", 4, 8, 1280) == pytest.approx((lo * hi) ** 0.5, rel=1e-9)
    assert cm.latency_s("decode", 4, 8, 1024) != pytest.approx((lo * hi) ** 0.5, rel=1e-3)


def test_logits_of_fewer_rows_swap_the_head(cm):
    """logits=1 at q=2: the q=2 forward with the in-forward head of a 1-token forward."""
    for b, q, c in [(1, 2, 512), (4, 8, 2048)]:
        got = cm.latency_s("decode", b, q, c, logits=1)
        want = decode_total(b, q, c) - head_s(b * q, VOCAB) + head_s(b, VOCAB)
        assert got == pytest.approx(want, rel=1e-9)
        assert cm.latency_s("decode", b, q, c, logits=q) == cm.latency_s("decode", b, q, c)
    full = cm.latency_s("decode", 1, 2, 512, layers=3, logits=1)
    assert full == pytest.approx(rest_s(1, 2) + 3 * layer_s(1, 2, 512) + head_s(1, VOCAB), rel=1e-9)


def test_decomposition_rest_layers_head(cm):
    b, q, c = 2, 4, 512
    for layers, rows in [(3, 1024 // 2), (LAYERS, 4096 // 8), (5, None), (7, VOCAB)]:
        got = cm.latency_s("decode", b, q, c, layers=layers, head_rows=rows)
        head = head_s(b * q, rows if rows else VOCAB)
        want = rest_s(b, q) + layers * layer_s(b, q, c) + head
        assert got == pytest.approx(want, rel=0.05), (layers, rows)
    # fewer layers cost less, and a trimmed head costs less than the full one
    assert cm.latency_s("decode", 1, 1, 128, layers=2) < cm.latency_s("decode", 1, 1, 128)
    assert (cm.latency_s("decode", 4, 8, 128, head_rows=600)
            < cm.latency_s("decode", 4, 8, 128, head_rows=VOCAB))


def test_extrapolation_warns_once_per_axis_and_follows_the_fit(cm):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        big = cm.latency_s("decode", 64, 1, 128)
        cm.latency_s("decode", 128, 1, 128)
        cm.latency_s("decode", 1, 1, 16384)
        cm.latency_s("decode", 1, 1, 20000)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 2, msgs
    assert "batch=64" in msgs[0] and "context=16384" in msgs[1]
    assert big == pytest.approx(decode_total(64, 1, 128), rel=0.25)
    assert big > cm.latency_s("decode", 16, 1, 128)


def test_bad_arguments(cm):
    with pytest.raises(ValueError):
        cm.latency_s("verify", 1, 1, 1)
    with pytest.raises(ValueError):
        cm.latency_s("decode", 1, 1, 128, layers=LAYERS + 1)
    with pytest.raises(ValueError):
        cm.latency_s("decode", 1, 1, 128, head_rows=VOCAB + 1)


@pytest.mark.parametrize("problem", ["missing column", "missing key", "no sidecar", "not parquet",
                                     "holes", "bad json"])
def test_schema_errors_name_file_and_key(tmp_path, problem):
    p = tmp_path / "p.parquet"
    if problem == "missing column":
        write_synthetic(p, drop_column="layer_s")
        key = "layer_s"
    elif problem == "missing key":
        write_synthetic(p, drop_key="kv_bytes_per_token")
        key = "kv_bytes_per_token"
    elif problem == "no sidecar":
        write_synthetic(p).with_suffix(".json").unlink()
        key = "sidecar"
    elif problem == "not parquet":
        p.write_text("kind,batch\nhello,1\n")
        key = "Parquet"
    elif problem == "bad json":
        write_synthetic(p).with_suffix(".json").write_text("{not json")
        key = "JSON"
    else:
        from profhelpers import synthetic_rows

        rows, _ = synthetic_rows()
        write_synthetic(p, rows=[r for r in rows if not (r["kind"] == "decode" and r["batch"] == 2
                                                          and r["q"] == 3)])
        key = "rectangular"
    with pytest.raises(InputError) as exc:
        ProfileCostModel.load(p)
    assert key in exc.value.line()
    assert "\n" not in exc.value.line()


def test_token_block_prices_tokens_as_the_next_multiple(tmp_path):
    """token_block = 16 (AMX tiles): above two blocks, 2 x 17 = 34 tokens cost what 2 x 24 = 48
    cost; up to two blocks nothing changes; without the sidecar key there is no blocking."""
    import json

    p = write_synthetic(tmp_path / "p.parquet")
    plain = ProfileCostModel.load(p)
    side = p.with_suffix(".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "token_block": 16}))
    blocked = ProfileCostModel.load(p)
    assert blocked.latency_s("decode", 2, 17, 512) == pytest.approx(plain.latency_s("decode", 2, 24, 512), rel=1e-12)
    assert blocked.latency_s("prefill", 2, 18, 0) == pytest.approx(plain.latency_s("prefill", 2, 24, 0), rel=1e-12)
    assert blocked.latency_s("decode", 5, 7, 512) == pytest.approx(plain.latency_s("decode", 5, 48 / 5, 512), rel=1e-12)
    for b, q in ((1, 9), (4, 4), (2, 9), (2, 16), (1, 32)):  # up to 32 tokens: as measured
        assert blocked.latency_s("decode", b, q, 512) == plain.latency_s("decode", b, q, 512)
    assert plain.latency_s("decode", 2, 17, 512) < plain.latency_s("decode", 2, 24, 512)
