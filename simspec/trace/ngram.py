"""Prompt-lookup (n-gram) drafting replayed on a traced token sequence, without a model.

At generated position n the drafter sees context c = prompt + tokens[:n]. Like transformers'
PromptLookupCandidateGenerator it tries the last m tokens for m = N..1, takes the EARLIEST
earlier occurrence whose continuation is non-empty, and proposes up to `max_draft` tokens that
followed it (never past the end of c). Under greedy verification the accepted count at n is the
common prefix of that proposal with tokens[n:]; that is all the oracle needs.
"""

from __future__ import annotations

import numpy as np

MAX_DRAFT = 16


def propose(ctx: list[int], max_ngram: int, max_draft: int) -> list[int]:
    """The rule itself, on one context: for the last m tokens, m = N..1, the EARLIEST earlier
    occurrence proposes up to `max_draft` tokens that followed it. The live drafter calls
    this; `lookup_accepts` is the same rule indexed incrementally over a whole sequence."""
    for m in range(min(max_ngram, len(ctx) - 1), 0, -1):
        tail = ctx[-m:]
        for i in range(0, len(ctx) - m):
            if ctx[i:i + m] == tail:
                return ctx[i + m:i + m + max_draft]
    return []


def lookup_accepts(prompt: np.ndarray, tokens: np.ndarray, max_ngram: int = 2,
                   max_draft: int = MAX_DRAFT) -> np.ndarray:
    """int16[len(tokens)]: draft tokens a prompt-lookup drafter gets accepted at each position."""
    return _scan(prompt, tokens, max_ngram, max_draft)[0]


def lookup_proposed(prompt: np.ndarray, tokens: np.ndarray, max_ngram: int = 2,
                    max_draft: int = MAX_DRAFT) -> np.ndarray:
    """int16[len(tokens)]: draft tokens the drafter proposes at each position (0: no match).
    A live engine verifies only what was proposed, so a short find costs a shorter verify."""
    return _scan(prompt, tokens, max_ngram, max_draft)[1]


def _scan(prompt: np.ndarray, tokens: np.ndarray, max_ngram: int, max_draft: int) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, proposed) at every position: the rule of `propose`, indexed incrementally."""
    ctx = np.concatenate([np.asarray(prompt), np.asarray(tokens)]).tolist()
    p, t = len(prompt), len(tokens)
    first: list[dict[tuple, int]] = [dict() for _ in range(max_ngram + 1)]
    out = np.zeros(t, dtype=np.int16)
    found = np.zeros(t, dtype=np.int16)
    inserted_end = -1  # ngrams ending at indices <= inserted_end are indexed
    for n in range(t):
        length = p + n
        # An occurrence ending at index j has its continuation at j+1, which must lie in c.
        while inserted_end < length - 2:
            inserted_end += 1
            j = inserted_end
            for m in range(1, max_ngram + 1):
                if j - m + 1 < 0:
                    break
                first[m].setdefault(tuple(ctx[j - m + 1:j + 1]), j - m + 1)
        start = -1
        for m in range(min(max_ngram, length), 0, -1):
            i = first[m].get(tuple(ctx[length - m:length]))
            if i is not None:
                start = i + m
                break
        if start < 0:
            continue
        k = 0
        end = min(start + max_draft, length)
        found[n] = end - start
        while start + k < end and n + k < t and ctx[start + k] == ctx[length + k]:
            k += 1
        out[n] = k
    return out, found
