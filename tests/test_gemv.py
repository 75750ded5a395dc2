"""One-row bf16 linears as mv/addmv: same results as F.linear up to last-bit rounding."""

import pytest

torch = pytest.importorskip("torch")

from simspec.models import gemv, new_cache, tiny_model, with_cache  # noqa: E402


@pytest.mark.parametrize("rows,cols,bias", [(896, 896, True), (4864, 896, False), (896, 4864, False),
                                            (128, 896, True)])
def test_one_row_matches_linear(rows, cols, bias):
    g = torch.Generator().manual_seed(rows + cols)
    w = torch.randn(rows, cols, generator=g).to(torch.bfloat16)
    b = torch.randn(rows, generator=g).to(torch.bfloat16) if bias else None
    x = torch.randn(1, 1, cols, generator=g).to(torch.bfloat16)
    ref = torch.nn.functional.linear(x, w, b).float()
    out = gemv.linear(x, w, b)
    assert out.shape == (1, 1, rows) and out.dtype == torch.bfloat16
    # both accumulate in fp32 and round once: at most one bf16 ulp apart
    ulp = ref.abs().clamp(min=1e-3) * 2 ** -7
    assert bool(((out.float() - ref).abs() <= ulp).all())


def test_only_one_row_bf16_cpu_takes_the_mv_path(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "mv", lambda *a: calls.append("mv") or torch.ones(4, dtype=torch.bfloat16))
    w = torch.zeros(4, 8, dtype=torch.bfloat16)
    gemv.linear(torch.zeros(1, 1, 8, dtype=torch.bfloat16), w)
    assert calls == ["mv"]
    gemv.linear(torch.zeros(2, 1, 8, dtype=torch.bfloat16), w)  # two rows: GEMM
    gemv.linear(torch.zeros(1, 8), w.float())  # fp32: GEMM
    with gemv.stock_linears():
        gemv.linear(torch.zeros(1, 1, 8, dtype=torch.bfloat16), w)
    assert calls == ["mv"]


def test_installed_on_loaded_models_and_stock_is_the_same_model():
    lm = tiny_model("qwen2", dtype="bf16")
    assert gemv.install(lm.model) == 0  # already installed by tiny_model, idempotent
    ids = torch.tensor([[5, 9, 13]])
    with torch.inference_mode():
        past = new_cache(lm.model)
        lm.model(input_ids=ids, **with_cache(lm.model, past))
        import copy

        fast = lm.model(input_ids=torch.tensor([[7]]), **with_cache(lm.model, copy.deepcopy(past))).logits
        with gemv.stock_linears():
            stock = lm.model(input_ids=torch.tensor([[7]]), **with_cache(lm.model, copy.deepcopy(past))).logits
    assert torch.allclose(fast.float(), stock.float(), rtol=0.02, atol=0.02)
    assert fast.argmax(-1).item() == stock.argmax(-1).item()
