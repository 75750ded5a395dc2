"""The batched KV cache narrows after ragged rounds without copying the whole cache, and keeps
exactly each row's context (same positions, same keys): a later forward gives the logits each
row gets alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from simspec.live.kv import CTX, KV  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402
from simspec.models import load_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [list(range(10, 22)), [5, 6, 7], list(range(40, 48))]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny:llama:2", dtype="fp32").model


def filled(model, prompts):
    kv = KV(model, len(prompts))
    none = torch.zeros(len(prompts), 0, dtype=torch.long)
    ids, kind, m = kv.with_context(prompts, none, none)
    kv.forward(model, ids, kind, keep=[m - 1])
    return kv


def context_of(kv, b, nodes=False):
    """Row b's context (and this round's nodes) as {position: (key, value) of layer 0}."""
    layer = kv.cache.layers[0]
    cols = (kv.ctx[b] | (kv.node[b] >= 0 if nodes else False)).nonzero().flatten().tolist()
    return {int(kv.pos[b, c]): (layer.keys[b, :, c].clone(), layer.values[b, :, c].clone()) for c in cols}


def ragged_round(model, kv, tokens, accepted):
    """Verify a chain of len(tokens[b]) nodes per row, then keep `accepted[b]` + the root."""
    tree = Tree.chain(len(tokens[0]) - 1)
    ids = torch.tensor(tokens)
    kind = torch.arange(ids.shape[1])[None].expand_as(ids)
    kv.forward(model, ids, kind, tree.ancestors(), torch.tensor(tree.depth))
    before = [context_of(kv, b, nodes=True) for b in range(kv.batch)]
    storages = [l.keys.untyped_storage().data_ptr() for l in kv.cache.layers]
    kv.commit([list(range(a + 1)) for a in accepted])
    return before, storages


def test_ragged_commit_keeps_each_rows_context_and_narrows_to_the_longest(model):
    kv = filled(model, PROMPTS)
    for accepted in ([3, 0, 1], [0, 2, 3], [1, 1, 0]):
        tokens = [[60 + b, 61, 62, 63] for b in range(3)]
        before, storages = ragged_round(model, kv, tokens, accepted)
        lengths = kv.length.tolist()
        assert kv.slots == max(lengths)  # the widest row has no hole
        assert kv.ctx.sum(1).tolist() == lengths
        for b, a in enumerate(accepted):
            now = context_of(kv, b)
            # context before the round plus the accepted nodes (positions of the kept path)
            kept = {p: kv_ for p, kv_ in before[b].items() if p < lengths[b]}
            assert sorted(now) == sorted(kept) == list(range(lengths[b]))
            for p, (k, v) in now.items():
                assert torch.equal(k, kept[p][0]) and torch.equal(v, kept[p][1])
        # no whole-cache copy: the keys are still (views of) the verify forward's own tensors
        assert [l.keys.untyped_storage().data_ptr() for l in kv.cache.layers] == storages


def test_next_forward_after_ragged_commits_equals_each_row_alone(model):
    kv = filled(model, PROMPTS)
    seqs = [list(p) for p in PROMPTS]
    for accepted in ([3, 0, 1], [0, 2, 3]):
        tokens = [[60 + b, 61, 62, 63] for b in range(3)]
        ragged_round(model, kv, tokens, accepted)
        for b, a in enumerate(accepted):
            seqs[b] += tokens[b][:a + 1]
    nxt = torch.tensor([[70], [71], [72]])
    batched = kv.forward(model, nxt, torch.full((3, 1), CTX))[:, 0]
    for b, seq in enumerate(seqs):
        alone = filled(model, [seq])
        solo = alone.forward(model, nxt[b:b + 1], torch.full((1, 1), CTX))[0, 0]
        assert torch.allclose(batched[b], solo, atol=1e-4, rtol=1e-4)


def test_retiring_the_longest_row_narrows_the_cache(model):
    kv = filled(model, PROMPTS)
    kv.keep_rows([1, 2])
    assert kv.slots == max(len(PROMPTS[1]), len(PROMPTS[2]))
    for b, p in enumerate([PROMPTS[1], PROMPTS[2]]):
        assert sorted(context_of(kv, b)) == list(range(len(p)))
