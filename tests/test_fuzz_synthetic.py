"""Fuzz the synthetic-acceptance flag and the random-weight model spec (fixed seed, a deadline per
case): every value is either accepted as exactly what it says or refused in one line naming
the flag (or spec) -- never a traceback, never a value outside [0, 1]."""

from __future__ import annotations

import json
import math
import random

import pytest

from deadline import within
from simspec.errors import InputError

ALPHABET = "0123456789.,-+eE naif x\t;[]"


def _cases(n: int, seed: int = 32):
    rng = random.Random(seed)
    for _ in range(n):
        k = rng.randint(0, 12)
        yield "".join(rng.choice(ALPHABET) for _ in range(k))
    yield from ("1", "0", "0.8,0.7,0.6", "1e-3", ",".join(["0.5"] * 64), ",".join(["0.5"] * 65), "inf", "-0.0")


def test_fuzz_synthetic_rates():
    from simspec.live.synthetic import parse_rates

    ok = bad = 0
    for text in _cases(400):
        with within(2.0, repr(text)):
            try:
                rates = parse_rates(text)
            except InputError as exc:
                bad += 1
                assert exc.key == "--synthetic" and "\n" not in str(exc), text
                continue
        ok += 1
        parts = [p.strip() for p in text.split(",")]
        assert rates == [float(p) for p in parts] and all(0.0 <= r <= 1.0 and math.isfinite(r) for r in rates)
        assert 1 <= len(rates) <= 64
    assert ok >= 5 and bad >= 100, (ok, bad)


def test_fuzz_random_specs(tmp_path):
    """Random config.json bodies for random:<file>: refused in one line or built (tiny dims only)."""
    pytest.importorskip("torch")
    from simspec.models import load_model

    rng = random.Random(7)
    keys = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads"]
    values = ["llama", "qwen2", "nope", 0, -1, 2, 4, 64, 300, 512, "x", None, 1.5, [], {}]
    ok = bad = 0
    for i in range(25):
        body = {k: rng.choice(values) for k in keys if rng.random() < 0.85}
        if rng.random() < 0.6:  # mostly buildable tiny shapes, so both outcomes are exercised
            body |= {"model_type": rng.choice(["llama", "qwen2"]), "vocab_size": 300, "hidden_size": 16,
                     "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": rng.choice([1, 2, 3])}
        p = tmp_path / f"c{i}.json"
        p.write_text(json.dumps(body) if rng.random() < 0.95 else "{not json")
        with within(20.0, f"case {i}: {body}"):
            try:
                lm = load_model(f"random:{p}")
            except InputError as exc:
                bad += 1
                assert "\n" not in str(exc), (body, str(exc))
                continue
        ok += 1
        assert lm.dims.vocab == body["vocab_size"] and lm.dims.hidden == body["hidden_size"]
    assert ok >= 3 and bad >= 3, (ok, bad)
