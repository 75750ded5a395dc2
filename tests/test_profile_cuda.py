"""`simspec profile --device cuda`: the CUDA-events capture path, on a real GPU or not at all.

No mocks: where torch sees no CUDA device the test is skipped and says so (pytest -rs prints
the reason); where it sees one, a tiny model is captured on it with the quick grid and the
result must load as a profile like any CPU capture.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from simspec.profile.timer import cuda_unavailable  # noqa: E402


def test_cuda_unavailable_says_why_or_nothing():
    reason = cuda_unavailable("cuda:0")
    assert (reason is None) == torch.cuda.is_available()
    if reason is not None:
        assert "CUDA" in reason
    assert cuda_unavailable("cpu") is None


def test_cuda_capture_writes_a_profile(tmp_path):
    reason = cuda_unavailable("cuda")
    if reason is not None:
        pytest.skip(f"CUDA path not run: {reason}")
    from simspec.models import tiny_model
    from simspec.profile.capture import run_capture
    from simspec.profile.costmodel import ProfileCostModel
    from simspec.profile.grid import QUICK

    lm = tiny_model("llama", layers=2, dtype="bf16", device="cuda")
    path, _ = run_capture(lm, QUICK, tmp_path / "tiny.parquet", 1, "test", spec="tiny:llama:2",
                          step=lambda s: None)
    cm = ProfileCostModel.load(path)
    assert cm.meta["device"] == "cuda" and cm.latency_s("decode", 1, 1, 128) > 0
