"""Sampling mode: the output distribution must be the target's (Leviathan et al. 2023).

A 4-token-vocabulary model makes the target's distribution over 3-token continuations
enumerable exactly (64 outcomes). Samples from the speculative engine (a different drafter
model, chains of 1 and 2; prompt lookup) are compared with it by a chi-square test. With
gamma = 1 and 3 tokens every path occurs: accept + bonus, reject + residual, and a second round.
The same test rejects an engine that resamples from p instead of norm(max(0, p - q)) after a
rejection, so it has the power to fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scipy.stats import chisquare  # noqa: E402

import simspec.live.sampling as sampling  # noqa: E402
from simspec.live.drafters import ModelDrafter, NgramDrafter  # noqa: E402
from simspec.live.engine import generate  # noqa: E402
from simspec.live.tree import Tree  # noqa: E402

V, T, PROMPT = 4, 3, [0, 1, 2]
SAMPLES, BATCH = 6000, 2000


def small_model(seed: int, scale: float = 30.0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper, less uniform next-token distributions
        model.lm_head.weight.mul_(scale)
    return model


@pytest.fixture(scope="module")
def models():
    target, draft = small_model(0), small_model(1)
    seqs = list(itertools.product(range(V), repeat=T))
    ids = torch.tensor([PROMPT + list(s) for s in seqs])
    with torch.no_grad():
        lp = torch.log_softmax(target(ids).logits.double(), -1)
    P = len(PROMPT)
    logp = sum(lp[torch.arange(len(seqs)), P - 1 + k, ids[:, P + k]] for k in range(T))
    exact = logp.exp().numpy()
    return target, draft, exact / exact.sum()


def sample_counts(target, make_drafter, gamma, seed0=0):
    counts = np.zeros(V ** T)
    tpr = []
    for i in range(SAMPLES // BATCH):
        res = generate(target, [PROMPT] * BATCH, T, make_drafter(), Tree.chain(gamma),
                       temperature=1.0, seed=seed0 + i)
        for out in res.outputs:
            counts[np.ravel_multi_index(out, (V,) * T)] += 1
        tpr.append(res.stats.tokens_per_round)
    return counts, float(np.mean(tpr))


def chi2_pvalue(counts, exact):
    expected = exact * counts.sum()
    big = expected >= 5  # pool rare outcomes so every cell expects at least 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    return chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


@pytest.mark.parametrize("gamma", [1, 2])
def test_model_drafter_matches_target_distribution(models, gamma):
    target, draft, exact = models
    counts, tpr = sample_counts(target, lambda: ModelDrafter(draft), gamma)
    assert 1.05 < tpr < gamma + 1  # some drafts accepted, some rejected
    assert chi2_pvalue(counts, exact) > 1e-3


def test_ngram_drafter_matches_target_distribution(models):
    target, _, exact = models
    counts, _ = sample_counts(target, lambda: NgramDrafter(2), 2)
    assert chi2_pvalue(counts, exact) > 1e-3


def test_plain_sampling_matches_target_distribution(models):
    target, _, exact = models
    counts, tpr = sample_counts(target, lambda: None, 0)
    assert tpr == 1.0
    assert chi2_pvalue(counts, exact) > 1e-3


def test_wrong_residual_is_rejected(models, monkeypatch):
    """Resampling from p after a rejection (a classic bug) biases the output: caught."""
    target, draft, exact = models
    monkeypatch.setattr(sampling, "residual", lambda p, q: p.clone())
    counts, _ = sample_counts(target, lambda: ModelDrafter(draft), 1)
    assert chi2_pvalue(counts, exact) < 1e-6
