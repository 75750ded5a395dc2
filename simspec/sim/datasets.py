"""Prompt/output lengths of real workloads (ShareGPT V3, HumanEval), without a tokenizer.

The simulator must not need torch or a tokenizer, so lengths are estimated as
ceil(characters / 4) tokens (the usual rule of thumb for English BPE vocabularies). Traces
captured with `simspec trace` carry exact token counts; prefer them when you have them.
The ShareGPT file is 125 MB of JSON, so its length table is cached once outside the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from simspec.atomic import write_via
from simspec.corpora import approx_tokens, humaneval_problems, sharegpt_turns
from simspec.errors import InputError


def cache_dir() -> Path:
    root = os.environ.get("SIMSPEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simspec")
    return Path(root)


def _sharegpt_pairs() -> np.ndarray:
    # The first human turn and the reply to it, filtered as vLLM's serving benchmark does.
    rows = [(approx_tokens(q), approx_tokens(a)) for q, a in sharegpt_turns("serving")]
    return np.asarray(rows, dtype=np.int64)


def _humaneval_pairs() -> np.ndarray:
    rows = [(approx_tokens(p["prompt"]), approx_tokens(p["canonical_solution"])) for p in humaneval_problems()]
    return np.asarray(rows, dtype=np.int64)


_LOADERS = {"sharegpt": _sharegpt_pairs, "humaneval": _humaneval_pairs}
_MEMO: dict[str, np.ndarray] = {}


def length_pairs(name: str) -> np.ndarray:
    """(prompt_tokens, output_tokens) rows of a dataset, cached in memory and on disk."""
    if name in _MEMO:
        return _MEMO[name]
    if name not in _LOADERS:
        raise InputError(None, "workload.dataset", f"unknown dataset {name!r} (known: {', '.join(_LOADERS)})")
    path = cache_dir() / "datasets" / f"{name}_lengths_v1.npy"
    pairs = None
    if path.exists():
        try:
            pairs = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pairs = None
    if pairs is None:
        pairs = _LOADERS[name]()
        write_via(path, lambda tmp: np.save(tmp, pairs, allow_pickle=False))
    _MEMO[name] = pairs
    return pairs
