"""Fuzzing trace sidecars against their Parquet (issue 29, "files that disagree with what they
claim"): generated disagreements, each a sidecar key that lies about the table (wrong count,
wrong type, another model, a stopped capture called complete, ...) or a table changed under an
unchanged sidecar (rows dropped, a drafter column dropped). Every case must end in exactly one
InputError naming the sidecar or the Parquet and a key, within a deadline, never a traceback
and never a trace that loads as if nothing were wrong.

Fixed seed (SIMSPEC_FUZZ_SEED overrides it for a local bug hunt); N_CASES cases; each runs in
this process under signal.alarm(DEADLINE_S).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fuzzhelpers as fz
from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "traces" / "qwen2.5-coder-1.5b__sharegpt-long.parquet"  # 8 sequences, 3 drafters
SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "2929"))
N_CASES = 84
DEADLINE_S = 10


class Deadline(Exception):
    pass


def _alarm(signum, frame):
    raise Deadline()


def _lies(rng: random.Random, meta: dict, table: pa.Table) -> tuple[str, dict, pa.Table, str]:
    """One disagreement: (what, the sidecar, the table, the key the refusal should name)."""
    n = table.num_rows
    out_len = table.column("output_len").to_pylist()
    meta = dict(meta)
    wrong_type = rng.choice([True, "8", 8.5, None, [], {}, -1, 0])
    choice = rng.choice(["target", "prompts", "max_new_tokens", "kind", "complete", "sequences", "positions",
                         "vocab", "layers", "drafters", "temperatures", "rows", "column"])
    key = choice
    if choice == "target":
        meta["target"] = rng.choice(["smollm2-135m", "qwen2.5-coder-0.5b", "llama-2-7b", "llama-3.2-1b", "",
                                     "  ", 5, None, ["qwen"]])
    elif choice == "prompts":
        meta["prompts"] = rng.choice([n + rng.randint(1, 1000), max(1, n - rng.randint(1, n)) if n > 1 else n + 1,
                                      wrong_type])
        if meta["prompts"] == n:
            meta["prompts"] = n + 1
    elif choice == "max_new_tokens":
        meta["max_new_tokens"] = rng.choice([rng.randint(1, max(out_len) - 1), wrong_type])
    elif choice == "kind":
        meta["kind"] = rng.choice(["simspec-profile", "trace", "", "SIMSPEC-TRACE", 1, None, wrong_type])
    elif choice == "complete":
        meta["complete"] = rng.choice([False, "yes", 1, 0, None, "true"])
    elif choice == "sequences":
        meta["sequences"] = rng.choice([n + rng.randint(1, 50), n - 1 if n > 1 else n + 2, wrong_type])
    elif choice == "positions":
        meta["positions"] = rng.choice([sum(out_len) + rng.randint(1, 99), sum(out_len) - rng.randint(1, 99),
                                        wrong_type])
    elif choice == "vocab":
        meta["vocab"] = rng.choice([rng.randint(1, 151645), 151645, wrong_type])
        key = ("vocab", "target")  # a known target's vocabulary is named first
    elif choice == "layers":
        meta["layers"] = rng.choice([rng.randint(1, 26), 26, wrong_type])
        key = ("layers", "target")
    elif choice == "drafters":
        d = list(meta["drafters"])
        how = rng.choice(["drop", "add", "rename", "type"])
        if how == "drop":
            d.pop(rng.randrange(len(d)))
        elif how == "add":
            d.append(rng.choice(["exit7", "qwen2.5-coder-0.5b/k8192", "m", "target/k4096"]))
        elif how == "rename":
            d[rng.randrange(len(d))] = "exit3"
        else:
            d = rng.choice(["exit24", 3, None, [1, 2]])
        meta["drafters"] = d
    elif choice == "temperatures":
        meta["temperatures"] = rng.choice([[], [0.7], [0.5, 2.0], "1.0", None, [True]])
    elif choice == "rows":  # the table lost sequences; the sidecar still counts them
        keep = sorted(rng.sample(range(n), rng.randint(1, n - 1)))
        table = table.take(pa.array(keep))
        key = ("sequences", "positions", "prompts")
    else:  # a drafter's columns dropped from the table; the sidecar still lists it
        d = rng.choice(meta["drafters"])
        table = table.drop_columns([c for c in table.column_names if c in (f"rank:{d}", f"beta:{d}@1")])
        key = "drafters"
    return choice, meta, table, key


def _cases():
    rng = random.Random(SEED)
    meta = json.loads(TRACE.with_suffix(".json").read_text())
    table = pq.read_table(TRACE)
    return [_lies(rng, meta, table) for _ in range(N_CASES)]


def test_fuzz_sidecar_parquet_disagreements(tmp_path):
    from simspec.trace.schema import load_trace

    counts: dict[str, int] = {}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i, (what, meta, table, key) in enumerate(_cases()):
            d = tmp_path / f"c{i}"
            d.mkdir()
            p = d / "t.parquet"
            if table.num_rows == 8 and table.num_columns == 11:
                shutil.copy(TRACE, p)
            else:
                pq.write_table(table, p)
            side = p.with_suffix(".json")
            side.write_text(json.dumps(meta))
            signal.alarm(DEADLINE_S)
            try:
                with pytest.raises(InputError) as exc:
                    load_trace(p)
                if i % 4 == 0:  # and through the command line: exit 2, one line, no traceback
                    code, out, err = fz.run_main("trace", "--summary", str(p))
                    lines = [l for l in err.splitlines() if l.strip()]
                    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (what, meta.get(what), err)
            except Deadline:
                pytest.fail(f"case {i} ({what}) ran past {DEADLINE_S} s")
            finally:
                signal.alarm(0)
            e = exc.value
            fz.check_input_error(e, [side, p], False)
            keys = key if isinstance(key, tuple) else (key,)
            assert e.key in keys, (i, what, meta.get(what), e.line())
            counts[what] = counts.get(what, 0) + 1
            shutil.rmtree(d)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert sum(counts.values()) >= 70 and len(counts) >= 10, counts


def test_the_unchanged_copy_loads(tmp_path):
    """The control: the same copy without a lie loads (so the refusals above are the lies)."""
    from simspec.trace.schema import load_trace

    p = tmp_path / "t.parquet"
    shutil.copy(TRACE, p)
    shutil.copy(TRACE.with_suffix(".json"), p.with_suffix(".json"))
    assert load_trace(p).n_seq == 8
    pq.write_table(pq.read_table(TRACE), p)  # rewritten by pyarrow: still the same table
    assert load_trace(p).n_seq == 8
