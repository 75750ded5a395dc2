"""Prompt lookup is one rule: the live drafter's proposal (`trace.ngram.propose`) and the
incremental index trace replay uses (`lookup_accepts`) accept the same tokens at every position
of the shipped traces, at the one default n the drafter table gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simspec import drafters
from simspec.trace.ngram import MAX_DRAFT, lookup_accepts, lookup_proposed, propose
from simspec.trace.schema import load_trace

TRACES = sorted((Path(__file__).resolve().parents[1] / "traces").glob("*.parquet"))


def test_one_default_n_for_replay_and_live():
    k = drafters.get("ngram")
    assert k.default_n == 3
    assert drafters.DraftSpec.parse("ngram").n == 3
    assert k.column(drafters.DraftSpec.parse("ngram").arg) == "ngram:3"


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
@pytest.mark.parametrize("n", [1, 3])
def test_live_rule_accepts_what_replay_says(path, n):
    trace = load_trace(path)
    checked = 0
    for s in range(min(3, trace.n_seq)):
        prompt, tokens = trace.seq_prompt(s).tolist(), trace.seq_tokens(s).tolist()
        got = lookup_accepts(np.array(prompt), np.array(tokens), n)
        found = lookup_proposed(np.array(prompt), np.array(tokens), n)
        for i in range(0, len(tokens), 3):  # every third position keeps the scan affordable
            prop = propose(prompt + tokens[:i], n, MAX_DRAFT)
            assert found[i] == len(prop), (path.name, s, i)  # what the live engine verifies
            k = 0
            while k < len(prop) and i + k < len(tokens) and prop[k] == tokens[i + k]:
                k += 1
            assert got[i] == k, (path.name, s, i)
            checked += 1
    assert checked > 50 and (got > 0).any()
    assert (found < MAX_DRAFT).any() and (found >= got).all()
