"""GQA attention without repeated keys/values: the same attention as HF's SDPA, on CPU only."""

import copy

import pytest

torch = pytest.importorskip("torch")

from simspec.models import forward_tokens, gqa, new_cache, tiny_model  # noqa: E402


def _logits(lm, prompt, tokens, parents=None):
    """Prefill `prompt`, then one forward of `tokens` (a chain, or a tree by `parents`)."""
    with torch.inference_mode():
        cache = new_cache(lm.model)
        forward_tokens(lm.model, torch.tensor([prompt] * 2), cache)
        out, _ = forward_tokens(lm.model, torch.tensor([tokens] * 2), cache, tree_parents=parents)
    return out.float()


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
@pytest.mark.parametrize("parents", [None, [-1, 0, 0, 1, -1]])
def test_same_attention_as_stock_sdpa(arch, parents):
    lm = tiny_model(arch, layers=3)
    assert lm.model.config._attn_implementation == gqa.NAME
    prompt, tokens = list(range(5, 45)), [7, 11, 13, 17, 19]
    fast = _logits(lm, prompt, tokens, parents)
    with gqa.stock_attention():
        stock = _logits(lm, prompt, tokens, parents)
    # fp32: the same sums in another order
    assert torch.allclose(fast, stock, rtol=1e-4, atol=1e-5), (fast - stock).abs().max()


def test_keys_and_values_are_not_repeated(monkeypatch):
    """The installed path hands SDPA the 2 KV heads with enable_gqa; stock repeats them to 4."""
    lm = tiny_model("qwen2", layers=2)
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.shape[1], k.shape[1], kw.get("enable_gqa", False)))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    _logits(lm, [5, 6, 7], [8, 9])
    assert seen and all(s == (4, 2, True) for s in seen)
    seen.clear()
    with gqa.stock_attention():
        _logits(lm, [5, 6, 7], [8, 9])
    assert (4, 4, False) in seen  # the multi-token pass with a mask repeats K/V


def test_install_leaves_other_implementations_alone():
    lm = tiny_model("llama", layers=1)
    model = copy.deepcopy(lm.model)
    model.set_attn_implementation("eager")
    assert gqa.install(model) is False
    assert model.config._attn_implementation == "eager"
    assert gqa.install(lm.model) is True  # idempotent on an installed model
