"""Prompt texts for live runs: HumanEval, ShareGPT (first human turns) or a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

from simspec.corpora import humaneval_problems, sharegpt_turns
from simspec.errors import InputError
from simspec.limits import regular_file

DATASETS = ("humaneval", "sharegpt")


def _humaneval() -> list[str]:
    return [p["prompt"] for p in humaneval_problems("--dataset")]


def _sharegpt(limit: int) -> list[str]:
    return [q for q, _ in sharegpt_turns("prompt", "--dataset")[:limit]]


def _jsonl(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(str(path), None, "no such file")
    regular_file(path)  # never a FIFO or a device
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(str(path), f"line {n}", f"not JSON ({exc.msg})") from None
        text = row.get("prompt", row.get("text")) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise InputError(str(path), f"line {n}", "needs a string 'prompt' (or 'text') field")
        out.append(text)
    if not out:
        raise InputError(str(path), None, "no prompts")
    return out


def load_prompts(dataset: str, limit: int) -> list[str]:
    """Up to `limit` prompt texts, in the dataset's own order (deterministic)."""
    if dataset == "humaneval":
        texts = _humaneval()
    elif dataset == "sharegpt":
        texts = _sharegpt(limit)
    elif dataset.endswith(".jsonl"):
        texts = _jsonl(Path(dataset))
    else:
        raise InputError(None, "--dataset", f"{dataset!r} is not humaneval, sharegpt or a .jsonl file")
    return texts[:limit]
