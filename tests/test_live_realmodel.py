"""Greedy speculative decoding on a real model (SmolLM2-135M) equals plain greedy decoding.

Target: SmolLM2-135M fp32. Drafters: a separate model (the same weights in bf16: a different
model numerically, as a quantised drafter is), early exit at layer 24 of 30 (sharing the
target's KV cache), a trimmed 8k-row head, a static tree, n-gram lookup; batch 1 and a ragged
batch of 4.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from simspec.live.drafters import ModelDrafter, NgramDrafter, top_tokens  # noqa: E402
from simspec.live.engine import generate, plain_greedy  # noqa: E402
from simspec.live.kv import KV  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402

pytestmark = pytest.mark.realmodel

TEXTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "def is_prime(n: int) -> bool:\n",
    "The capital of France is",
    "for i in range(10):\n    print(i)\nfor j in range(10):\n",
]
NEW = 20


@pytest.fixture(scope="module")
def smol():
    from simspec.models import load_model

    try:
        target = load_model("smollm2-135m", dtype="fp32")
        draft = load_model("smollm2-135m", dtype="bf16")
    except Exception as exc:  # weight package missing: the Makefile's test target installs it
        pytest.skip(f"SmolLM2-135M unavailable: {exc}")
    prompts = [target.tokenizer(t)["input_ids"] for t in TEXTS]
    ref = [plain_greedy(target.model, p, NEW) for p in prompts]
    rows = top_tokens(prompts, 8192, target.dims.vocab)
    return target, draft, prompts, ref, rows


CASES = {
    "model-chain-b1": (lambda t, d, kv, rows: ModelDrafter(d.model), Tree.chain(4), 1),
    "model-trimmed-tree-b1": (lambda t, d, kv, rows: ModelDrafter(d.model, head=_head(d, rows)), Tree((2, 2, 1)), 1),
    "early-exit-b4": (lambda t, d, kv, rows: ModelDrafter(t.model, layers=24, shared=kv), Tree.chain(3), 4),
    "early-exit-trimmed-tree-b1": (lambda t, d, kv, rows: ModelDrafter(
        t.model, layers=24, shared=kv, head=_head(t, rows)), Tree((2, 1)), 1),
    "model-chain-b4": (lambda t, d, kv, rows: ModelDrafter(d.model), Tree.chain(3), 4),
    "ngram-b4": (lambda t, d, kv, rows: NgramDrafter(3), Tree.chain(4), 4),
}


def _head(lm, rows):
    from simspec.models import trimmed_head

    return trimmed_head(lm.model, rows)


@pytest.mark.parametrize("case", list(CASES))
def test_smollm2_greedy_lossless(smol, case):
    target, draft, prompts, ref, rows = smol
    make, tree, batch = CASES[case]
    kv = KV(target.model, batch)
    res = generate(target.model, prompts[:batch], NEW, make(target, draft, kv, rows), tree, target_kv=kv)
    assert res.outputs == ref[:batch]
    assert res.stats.tokens_per_round > 1.0  # something was accepted
