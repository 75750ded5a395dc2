"""Prompts to trace and a disjoint calibration split, from HumanEval, ShareGPT or a JSONL file.

The calibration texts (never traced) decide the trimmed vocabularies: the K most frequent target
tokens there. Traced items come first in a fixed order; calibration takes items after them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simspec.corpora import humaneval_problems, sharegpt_turns
from simspec.errors import InputError
from simspec.limits import regular_file

HUMANEVAL_INSTRUCTION = "Complete the following Python function. Reply with the whole function in one Python code block.\n\n"
CALIBRATION_CHARS = 2_000_000


@dataclass
class Split:
    prompts: list[str]        # user messages to trace
    calibration: list[str]    # texts whose token counts choose the trimmed sets
    source: str               # what was read, for the sidecar


def _humaneval() -> list[dict]:
    return list(humaneval_problems("--dataset"))


def _sharegpt_pairs(seed: int, filter: str = "pair") -> list[tuple[str, str]]:
    pairs = sharegpt_turns(filter, "--dataset")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order]


def _jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputError(str(path), f"line {i}", "not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise InputError(str(path), f"line {i}", 'each line needs a string "prompt"')
            rows.append(row)
    return rows


def _take_calibration(texts, budget: int = CALIBRATION_CHARS) -> list[str]:
    out, used = [], 0
    for t in texts:
        if used >= budget:
            break
        out.append(t)
        used += len(t)
    return out


def load_split(dataset: str, n: int, seed: int = 0, prompt_chars: tuple[int, int] | None = None) -> Split:
    """The first n prompts of `dataset` (humaneval[-fix] | sharegpt | FILE.jsonl) and calibration texts.
    `prompt_chars` = (lo, hi): trace only prompts of lo..hi characters (a long-prompt workload);
    every other item stays available for calibration."""
    def fits(text: str) -> bool:
        return prompt_chars is None or prompt_chars[0] <= len(text) <= prompt_chars[1]

    def too_few(have: int, what: str) -> InputError:
        span = f" of {prompt_chars[0]}..{prompt_chars[1]} characters" if prompt_chars else ""
        return InputError(None, "--prompts", f"{what} has {have} usable prompts{span}, asked for {n}")

    if dataset in ("humaneval", "humaneval-fix"):  # -fix: a second turn (simspec.trace.multiturn)
        probs = _humaneval()
        if prompt_chars is not None:
            raise InputError(None, "--prompt-chars", "HumanEval's prompts are fixed: use sharegpt or a .jsonl file")
        if n > len(probs):
            raise InputError(None, "--prompts", f"HumanEval has {len(probs)} problems, asked for {n}")
        prompts = [HUMANEVAL_INSTRUCTION + "```python\n" + p["prompt"] + "```" for p in probs[:n]]
        held = [p["prompt"] + p["canonical_solution"] for p in probs[n:]]
        # Held-out HumanEval is small; ShareGPT replies (prose + code) top it up when present.
        try:
            held += [a for _, a in _sharegpt_pairs(seed)[-5000:]]
        except InputError:
            pass
        source = "humaneval (HumanEval.jsonl.gz, problems 0..n-1)"
        if dataset != "humaneval":
            source += "; turn 2 after the target's own greedy answer: 'Check your solution and write the final version.'"
        return Split(prompts, _take_calibration(held), source)
    if dataset == "sharegpt":
        pairs = _sharegpt_pairs(seed, "pair" if prompt_chars is None else "pair-any")
        chosen = [i for i, (q, _) in enumerate(pairs) if fits(q)][:n]
        if len(chosen) < n:
            raise too_few(len(chosen), "ShareGPT")
        taken = set(chosen)
        span = "" if prompt_chars is None else f", first human turns of {prompt_chars[0]}..{prompt_chars[1]} chars"
        return Split([pairs[i][0] for i in chosen],
                     _take_calibration(q + "\n" + a for i, (q, a) in enumerate(pairs) if i not in taken),
                     f"sharegpt (first human turn, seeded shuffle seed={seed}{span})")
    path = Path(dataset)
    if path.suffix != ".jsonl" or not path.exists():
        raise InputError(None, "--dataset", f"{dataset!r} is not humaneval, sharegpt or an existing .jsonl file")
    regular_file(path)  # never a FIFO or a device
    rows = _jsonl(path)
    chosen = [i for i, r in enumerate(rows) if fits(r["prompt"])][:n]
    if len(chosen) < n:
        if prompt_chars is None:
            raise InputError(str(path), "--prompts", f"the file has {len(rows)} prompts, asked for {n}")
        raise too_few(len(chosen), str(path))
    taken = set(chosen)

    def text(r: dict) -> str:
        return r["prompt"] + "\n" + str(r.get("completion", r.get("response", "")))

    held = [text(r) for i, r in enumerate(rows) if i not in taken] or [text(rows[i]) for i in chosen]
    last = chosen[-1] + 1 if chosen else 0
    what = f"first {n} lines" if chosen == list(range(n)) else f"{n} lines of {prompt_chars[0]}..{prompt_chars[1]} chars, up to line {last}"
    return Split([rows[i]["prompt"] for i in chosen], _take_calibration(held), f"{path.name} ({what})")


def calibration_order(tokenizer, texts: list[str], vocab: int, keep: int) -> np.ndarray:
    """Token ids by descending count over `texts` (ties: lower id first), the first `keep`."""
    counts = np.zeros(vocab, dtype=np.int64)
    for i in range(0, len(texts), 256):
        for ids in tokenizer(texts[i:i + 256], add_special_tokens=False)["input_ids"]:
            ids = np.asarray(ids, dtype=np.int64)
            ids = ids[(ids >= 0) & (ids < vocab)]
            counts += np.bincount(ids, minlength=vocab)
    order = np.lexsort((np.arange(vocab), -counts))
    return order[:min(keep, vocab)].astype(np.int64)
