"""Trace capture on tiny random models: ranks, self-drafting, exact replay of draft-then-verify."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simspec.models import tiny_model  # noqa: E402
from simspec.trace.capture import encode  # noqa: E402
from simspec.trace.oracle import TraceOracle  # noqa: E402
from simspec.trace.schema import load_trace  # noqa: E402
from tracehelpers import brute_rank, capture_tiny, greedy, last_logits, spec_decode  # noqa: E402

PROMPTS = ["def add(a, b):\n    return a + b\n", "hello hello hello", "The quick brown fox jumps",
           "1, 2, 3, 4, 5,", "abc abc abc abc abc"]


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace")
    pq, side, meta = capture_tiny(d, PROMPTS, target="tiny:llama:4", prompts=4, max_new_tokens=24,
                                  drafters=["tiny:llama:4", "tiny:qwen2:2"], exit_layers=[2, 3],
                                  vocabs=[None, 96], temperatures=[1.0, 0.5], batch=3, dtype="fp32")
    return load_trace(pq), meta


def test_columns_and_sidecar(tiny_trace):
    trace, meta = tiny_trace
    assert trace.n_seq == 4
    assert set(trace.ranks) == {"target/k96", "exit2", "exit2/k96", "exit3", "exit3/k96", "tiny-llama-4l",
                                "tiny-llama-4l/k96", "tiny-qwen2-2l", "tiny-qwen2-2l/k96"}
    assert {t for _, t in trace.betas} == {1.0, 0.5}
    assert len(meta["calibration"]["order"]) == 96
    assert meta["capture_seconds"]["total"] > 0
    assert (trace.output_len <= 24).all() and (trace.output_len >= 1).all()


def test_tokens_are_unbatched_greedy(tiny_trace):
    trace, _ = tiny_trace
    target = tiny_model("llama", 4)
    for s in range(trace.n_seq):
        prompt = trace.seq_prompt(s).tolist()
        assert prompt == encode(target, PROMPTS[s], chat=True)
        t = int(trace.output_len[s])
        assert trace.seq_tokens(s).tolist() == greedy(target.model, prompt, t)


def test_ranks_equal_brute_force(tiny_trace):
    trace, meta = tiny_trace
    target = tiny_model("llama", 4)
    other = tiny_model("qwen2", 2)
    rows = np.asarray(meta["calibration"]["order"][:96])
    checked = 0
    for s in range(trace.n_seq):
        prompt = trace.seq_prompt(s).tolist()
        toks = trace.seq_tokens(s).tolist()
        o = int(trace.offsets[s])
        for t in range(len(toks)):
            ctx = prompt + toks[:t]
            y = toks[t]
            refs = {
                "exit2": last_logits(target.model, ctx, 2),
                "exit3": last_logits(target.model, ctx, 3),
                "tiny-qwen2-2l": last_logits(other.model, ctx),
                "target": last_logits(target.model, ctx),
            }
            for name, logits in refs.items():
                if name != "target":
                    assert trace.ranks[name][o + t] == brute_rank(logits, y), (name, s, t)
                assert trace.ranks[f"{name}/k96"][o + t] == brute_rank(logits, y, rows), (name, s, t)
            checked += 1
    assert checked == int(trace.output_len.sum())


def test_target_as_its_own_drafter_ranks_zero(tiny_trace):
    trace, _ = tiny_trace
    assert (trace.ranks["tiny-llama-4l"] == 0).all()
    assert np.allclose(trace.betas[("tiny-llama-4l", 1.0)], 1.0, atol=1e-3)
    assert np.allclose(trace.betas[("tiny-llama-4l", 0.5)], 1.0, atol=1e-3)
    # A trimmed head keeps beta below 1 exactly by the target mass it cuts off.
    assert (trace.betas[("tiny-llama-4l/k96", 1.0)] < 1.0).all()


def test_beta_matches_definition(tiny_trace):
    trace, _ = tiny_trace
    target = tiny_model("llama", 4)
    s, t = 1, 3
    ctx = trace.seq_prompt(s).tolist() + trace.seq_tokens(s).tolist()[:t]
    p = torch.softmax(torch.tensor(last_logits(target.model, ctx)) / 0.5, -1)
    q = torch.softmax(torch.tensor(last_logits(target.model, ctx, 3)) / 0.5, -1)
    want = float(torch.minimum(p, q).sum())
    got = float(trace.betas[("exit3", 0.5)][trace.offsets[s] + t])
    assert got == pytest.approx(want, abs=2e-3)  # stored as float16


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_replayed_chain_equals_draft_then_verify(tiny_trace, gamma):
    trace, _ = tiny_trace
    target = tiny_model("llama", 4)
    oracle = TraceOracle(trace, "rank", trace.ranks["exit3"], [1] * gamma, np.random.default_rng(0))
    total_accepted = 0
    for s in range(trace.n_seq):
        prompt = trace.seq_prompt(s).tolist()
        toks = trace.seq_tokens(s).tolist()
        n_out = len(toks)
        direct, emitted = spec_decode(target.model, prompt, toks[0], n_out, gamma, draft_layers=3)
        assert direct == toks
        replay, n = [], 1
        while n < n_out:
            k = int(oracle.draw(np.array([s]), np.array([n]))[0])
            e = min(k + 1, n_out - n)
            replay.append(e)
            n += e
        assert replay == emitted, s
        total_accepted += sum(e - 1 for e in emitted)
    assert total_accepted > 0  # the comparison exercised accepted drafts, not only rejections


def test_borrowed_kept_order_is_checked(tmp_path):
    """--calibration-from: another trace's kept-token order, refused (file, key, reason) when the
    sidecar has none, another vocabulary or fewer ids than the largest K."""
    import json

    from simspec.errors import InputError
    from simspec.trace.capture import borrowed_order

    side = tmp_path / "a.json"
    side.write_text(json.dumps({"vocab": 256, "calibration": {"texts": 3, "order": list(range(200, 0, -1))}}))
    order, rec = borrowed_order(str(tmp_path / "a.parquet"), 256, 96)
    assert order.tolist() == list(range(200, 104, -1)) and rec == {"texts": 3, "from": str(tmp_path / "a.parquet")}
    for meta, vocab, keep, needle in (({"vocab": 256}, 256, 96, "calibration.order"),
                                      ({"vocab": 512, "calibration": {"order": [1]}}, 256, 0, "vocab"),
                                      ({"vocab": 256, "calibration": {"order": [1, 2]}}, 256, 96, "fewer than K=96")):
        side.write_text(json.dumps(meta))
        with pytest.raises(InputError) as err:
            borrowed_order(str(tmp_path / "a.parquet"), vocab, keep)
        assert str(side) in str(err.value) and needle in str(err.value)
