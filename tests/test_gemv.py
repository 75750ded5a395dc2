"""One-row bf16 linears as mv/addmv: same results as F.linear up to last-bit rounding, taken
only where this machine's timing says mv wins, the verdict kept per machine."""

import json

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


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No override, an empty verdict store, no verdict in this process (and none left after)."""
    monkeypatch.delenv(gemv.ENV, raising=False)
    monkeypatch.setenv("SIMSPEC_CACHE", str(tmp_path))
    gemv.forget()
    yield tmp_path / "kernels.json"
    gemv.forget()


def test_only_one_row_bf16_cpu_takes_the_mv_path(monkeypatch, fresh):
    monkeypatch.setenv(gemv.ENV, "mv")
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


@pytest.mark.parametrize("mv,gemm,path", [(0.5, 1.0, "mv"), (0.94, 1.0, "mv"), (0.96, 1.0, "gemm"), (1.0, 1.0, "gemm"),
                                          (2.0, 1.0, "gemm")])
def test_mv_only_where_it_wins_by_the_margin(mv, gemm, path):
    assert gemv.decide({"mv": mv, "gemm": gemm}) == path


def test_the_verdict_is_timed_once_per_machine_and_threads(fresh):
    timings = []

    def timer():
        timings.append(1)
        return {"mv": 2e-4, "gemm": 1e-4}  # a processor whose one-row GEMM is the faster

    assert gemv.one_row_path(2, timer) == "gemm" and len(timings) == 1
    assert gemv.one_row_path(2, timer) == "gemm" and len(timings) == 1  # this process's verdict
    gemv.forget()
    assert gemv.one_row_path(2, timer) == "gemm" and len(timings) == 1  # the machine's, from the store
    kept = json.loads(fresh.read_text())
    (key, verdict), = kept.items()
    assert "2 threads" in key and torch.__version__ in key
    assert verdict["one_row_linear"] == "gemm" and verdict["seconds"] == {"mv": 2e-4, "gemm": 1e-4}
    assert gemv.one_row_path(1, lambda: {"mv": 1e-4, "gemm": 2e-4}) == "mv"  # other threads: timed apart
    assert {v["one_row_linear"] for v in json.loads(fresh.read_text()).values()} == {"gemm", "mv"}


def test_a_broken_store_is_timed_again_and_rewritten(fresh):
    fresh.write_text("{not json")
    assert gemv.one_row_path(2, lambda: {"mv": 1e-4, "gemm": 2e-4}) == "mv"
    assert next(iter(json.loads(fresh.read_text()).values()))["one_row_linear"] == "mv"
    fresh.write_text(json.dumps({gemv._key(2): {"one_row_linear": "simd"}}))  # not a path: timed again
    gemv.forget()
    assert gemv.one_row_path(2, lambda: {"mv": 2e-4, "gemm": 1e-4}) == "gemm"


def test_the_override_wins_and_a_bad_one_is_an_error(monkeypatch, fresh):
    monkeypatch.setenv(gemv.ENV, "gemm")
    assert gemv.one_row_path(2, lambda: pytest.fail("timed despite the override")) == "gemm"
    assert not fresh.exists()
    gemv.forget()
    monkeypatch.setenv(gemv.ENV, "fast")
    with pytest.raises(ValueError, match="SIMSPEC_ONE_ROW_LINEAR='fast'"):
        gemv.one_row_path(2)


def test_a_gemm_verdict_keeps_one_row_on_f_linear(monkeypatch, fresh):
    monkeypatch.setenv(gemv.ENV, "gemm")
    calls = []
    monkeypatch.setattr(torch, "mv", lambda *a: calls.append("mv"))
    w = torch.randn(4, 8).to(torch.bfloat16)
    x = torch.randn(1, 1, 8).to(torch.bfloat16)
    assert torch.equal(gemv.linear(x, w), torch.nn.functional.linear(x, w)) and calls == []
    assert gemv.record("cpu", "bf16") == {"one_row_linear": "gemm"}
    assert gemv.record("cpu", "fp32") == {} and gemv.record("cuda", "bf16") == {}


def test_the_timing_times_both_paths():
    got = gemv.time_paths(rows=64, cols=32, blocks=2, reps=2)
    assert got.keys() == {"mv", "gemm"} and all(0 < v < 1 for v in got.values())
