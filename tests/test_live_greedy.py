"""Greedy speculative decoding must reproduce plain greedy decoding token for token.

Tiny random models of three architectures; every drafter kind, a static tree, batch 1 and a
ragged batch of 4. The drafters are chosen so that acceptance is partial (a slightly perturbed
copy of the target), total (an exact copy) or whatever early exit / n-gram lookup gives, so the
accept, reject, catch-up and rollback paths all run. Two mutation checks show the comparison
can fail: verification without the tree mask, and a KV cache that is not rolled back.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from simspec.live.drafters import ModelDrafter, NgramDrafter, top_tokens  # noqa: E402
from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.models import tiny_model, trimmed_head  # noqa: E402

PROMPTS = [list(range(10, 30)), [40, 41, 42, 43, 44], [1, 2, 3, 1, 2, 3, 1, 2], list(range(100, 133))]
NEW = 32


def perturbed(model, scale=0.003, seed=1):
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


def build(arch):
    target = tiny_model(arch, layers=4).model
    ref = [plain_greedy(target, p, NEW) for p in PROMPTS]
    return target, perturbed(target), ref


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def setup(request):
    return build(request.param)


@pytest.fixture(scope="module")
def llama():
    return build("llama")


DRAFTERS = {
    "copy": (lambda t, d, kv: ModelDrafter(copy.deepcopy(t)), Tree.chain(4)),
    "model": (lambda t, d, kv: ModelDrafter(d), Tree.chain(3)),
    "model-tree": (lambda t, d, kv: ModelDrafter(d), Tree((2, 2, 1))),
    "early-exit": (lambda t, d, kv: ModelDrafter(t, layers=2, shared=kv), Tree.chain(3)),
    "early-exit-tree": (lambda t, d, kv: ModelDrafter(t, layers=3, shared=kv), Tree((3, 2))),
    "trimmed": (lambda t, d, kv: ModelDrafter(d, head=trimmed_head(d, top_tokens(PROMPTS, 300, 512))),
                Tree.chain(3)),
    "early-exit-trimmed": (lambda t, d, kv: ModelDrafter(
        t, layers=3, shared=kv, head=trimmed_head(t, top_tokens(PROMPTS, 300, 512))), Tree.chain(2)),
    "ngram": (lambda t, d, kv: NgramDrafter(3), Tree.chain(4)),
}


def run(target, draft_model, kind, batch):
    make, tree = DRAFTERS[kind]
    prompts = PROMPTS[:batch]
    kv = KV(target, batch)
    return generate(target, prompts, NEW, make(target, draft_model, kv), tree, target_kv=kv)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind", list(DRAFTERS))
def test_greedy_equals_plain(setup, kind, batch):
    target, draft_model, ref = setup
    res = run(target, draft_model, kind, batch)
    assert res.outputs == ref[:batch]
    assert res.stats.new_tokens == batch * NEW
    # per-round counts are the tokens kept: they add up to every token after the prefill's
    assert sum(res.stats.per_round) == res.stats.new_tokens
    if kind == "copy":  # the target drafting for itself: every draft accepted
        full = res.stats.per_round[: len(res.stats.per_round) - batch]  # each row's last round is cut
        assert set(full) == {5} and res.stats.tokens_per_round > 4.4


def test_plain_engine_equals_reference(setup):
    target, _, ref = setup
    res = generate(target, PROMPTS, NEW)
    assert res.outputs == ref
    assert res.stats.tokens_per_round == 1.0


def test_batch_acceptance_is_ragged(setup):
    """The batch of 4 really had rows accepting different numbers of tokens in one round."""
    target, draft_model, ref = setup
    res = run(target, draft_model, "model", 4)
    assert res.outputs == ref
    assert res.stats.ragged_rounds >= 3
    assert 1.0 < res.stats.tokens_per_round < 4.0


def test_eos_stops_each_sequence(llama):
    target, draft_model, ref = llama
    eos = ref[0][5]  # a token the first sequence produces early
    res = generate(target, PROMPTS, NEW, ModelDrafter(draft_model), Tree.chain(3), eos=eos)
    for out, full in zip(res.outputs, ref):
        want = full[: full.index(eos) + 1] if eos in full else full
        assert out == want


def test_mutation_no_tree_mask_breaks_output(llama, monkeypatch):
    """Verifying a tree as if it were a chain (every node sees every earlier node) is caught."""
    target, draft_model, ref = llama
    monkeypatch.setattr(Tree, "ancestors", lambda self: torch.ones(self.size, self.size, dtype=torch.bool).tril())
    res = run(target, draft_model, "model-tree", 4)
    assert res.outputs != ref


def test_mutation_no_rollback_breaks_output(llama, monkeypatch):
    """A KV cache that keeps rejected draft entries as context is caught."""
    target, draft_model, ref = llama

    def keep_everything(self, paths):
        self.ctx |= self.node >= 0
        self.length = self.ctx.sum(1)
        self.node = torch.full_like(self.node, -1)
        self._compact()

    monkeypatch.setattr(KV, "commit", keep_everything)
    res = run(target, draft_model, "model", 1)
    assert res.outputs != ref[:1]
