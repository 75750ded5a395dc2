"""The trace file contract: one Parquet row per traced sequence, plus a JSON sidecar.

Columns (list columns hold one entry per generated position, index 0 = the token prefill made):
  seq           int32           sequence index
  prompt_len    int32           prompt tokens (chat template applied)
  output_len    int32           generated tokens (EOS included when it was generated)
  prompt_ids    list<int32>     prompt token ids (for prompt-lookup / n-gram drafters)
  tokens        list<int32>     the target's greedy tokens
  rank:<d>      list<int8>      rank of the target token under drafter d given the target
                                prefix (ties broken by lower token id, as argmax does);
                                RANK_CAP means "not in the top RANK_CAP" (or not in the trimmed set)
  beta:<d>@<T>  list<float16>   sum_x min(p_T(x), q_T(x)) at temperature T
Drafter names d: a model name ("qwen2.5-coder-0.5b"), "exit<l>" (target's first l layers +
final norm + head), "target" (the target's own last layer), each optionally "/k<K>" (head
trimmed to the sidecar's first K calibration tokens). Only list columns are per position, so
a sequence is one contiguous slice: loading is a handful of numpy concatenations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simspec.atomic import write_text, write_via
from simspec.errors import InputError
from simspec.limits import JSON_BYTES, read_bytes, regular_file
from simspec.trace.sidecar import check_sidecar

RANK_CAP = 127
SCHEMA_VERSION = 1
BASE_COLUMNS = {"seq": "int32", "prompt_len": "int32", "output_len": "int32"}
LIST_COLUMNS = {"prompt_ids": "int32", "tokens": "int32"}
_DRAFTER = re.compile(r"^(?P<base>[A-Za-z0-9_.\-]+?)(?:/k(?P<k>\d+))?$")
TARGET = "target"  # the base of the target's own columns (its final layer, trimmed: target/k<K>)


@dataclass(frozen=True)
class DrafterName:
    """A parsed drafter column name: base (model name, exit<l> or target) and trim K; which
    drafter kind a base belongs to is `simspec.drafters.of_column`."""

    base: str
    k: int | None = None

    def __str__(self) -> str:
        return self.base + (f"/k{self.k}" if self.k else "")


def parse_drafter(name: str) -> DrafterName:
    m = _DRAFTER.match(name)
    if not m:
        raise ValueError(f"bad drafter name {name!r}")
    return DrafterName(m.group("base"), int(m.group("k")) if m.group("k") else None)


def rank_column(drafter: str) -> str:
    return f"rank:{drafter}"


def beta_column(drafter: str, temperature: float) -> str:
    return f"beta:{drafter}@{temperature:g}"


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix(".json")


@dataclass
class Trace:
    """A loaded trace: flat per-position arrays with per-sequence offsets."""

    path: str
    meta: dict
    prompt_len: np.ndarray            # int64[S]
    output_len: np.ndarray            # int64[S]
    offsets: np.ndarray               # int64[S+1] into the flat per-position arrays
    tokens: np.ndarray                # int32[P]
    prompt_offsets: np.ndarray        # int64[S+1]
    prompt_ids: np.ndarray            # int32[sum prompt_len]
    ranks: dict[str, np.ndarray] = field(default_factory=dict)         # drafter -> int16[P]
    betas: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

    @property
    def n_seq(self) -> int:
        return len(self.output_len)

    @property
    def drafters(self) -> list[str]:
        return list(self.ranks)

    @property
    def temperatures(self) -> list[float]:
        return sorted({t for _, t in self.betas})

    def seq_tokens(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def seq_prompt(self, i: int) -> np.ndarray:
        return self.prompt_ids[self.prompt_offsets[i]:self.prompt_offsets[i + 1]]


def write_trace(path: str | Path, rows: list[dict], drafters: list[str], temperatures: list[float],
                meta: dict) -> tuple[Path, Path]:
    """Write rows (dicts of numpy arrays, one per sequence) as Parquet (zstd) + JSON sidecar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, pa.Array] = {}
    for name, typ in BASE_COLUMNS.items():
        cols[name] = pa.array([int(r[name]) for r in rows], type=getattr(pa, typ)())
    for name, typ in LIST_COLUMNS.items():
        cols[name] = pa.array([np.asarray(r[name], dtype=typ) for r in rows], type=pa.list_(getattr(pa, typ)()))
    for d in drafters:
        c = rank_column(d)
        cols[c] = pa.array([np.minimum(np.asarray(r[c]), RANK_CAP).astype(np.int8) for r in rows],
                           type=pa.list_(pa.int8()))
        for t in temperatures:
            c = beta_column(d, t)
            cols[c] = pa.array([np.asarray(r[c], dtype=np.float16) for r in rows], type=pa.list_(pa.float16()))
    table = pa.table(cols)
    out = write_via(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd", compression_level=9))
    meta = dict(meta, schema_version=SCHEMA_VERSION, rank_cap=RANK_CAP, drafters=drafters,
                temperatures=temperatures, sequences=len(rows),
                positions=int(sum(int(r["output_len"]) for r in rows)))
    side = sidecar_path(out)
    write_text(side, json.dumps(meta, indent=1) + "\n")
    return out, side


def _flat(table, name: str, file: str, lengths: np.ndarray, dtype) -> np.ndarray:
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        raise InputError(file, name, f"expected a list column, found {col.type}")
    got = np.asarray(col.value_lengths().fill_null(0), dtype=np.int64)
    if not np.array_equal(got, lengths):
        bad = int(np.flatnonzero(got != lengths)[0])
        raise InputError(file, name, f"sequence {bad} has {got[bad]} entries, expected {lengths[bad]}")
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False)).astype(dtype, copy=False)


def load_trace(path: str | Path, file: str | None = None) -> Trace:
    """Read and check a trace; every problem is one InputError naming the file and column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InputError(file or where, "acceptance.trace" if file else None, f"trace file not found: {p}")
    if p.is_dir():  # pyarrow would read a folder as a dataset of whatever lies in it
        raise InputError(file or where, "acceptance.trace" if file else None, f"{p} is a folder, not a trace file")
    regular_file(p, file, "acceptance.trace" if file else None)  # never a FIFO or a device
    try:
        table = pq.read_table(p)
        names = set(table.column_names)  # a damaged footer can hold names that are not UTF-8
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(where, None, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    side = sidecar_path(p)
    meta: dict = {}
    if side.exists():
        try:
            meta = json.loads(read_bytes(side, JSON_BYTES))
        except (OSError, ValueError) as exc:
            raise InputError(str(side), None, f"sidecar is not readable JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise InputError(str(side), None, f"sidecar must be a JSON object, not {type(meta).__name__}")
    for name in [*BASE_COLUMNS, *LIST_COLUMNS]:
        if name not in names:
            raise InputError(where, name, "required column is missing: not a simspec trace")
    for name in BASE_COLUMNS:
        if not pa.types.is_integer(table.schema.field(name).type):
            raise InputError(where, name, f"expected integers, found {table.schema.field(name).type}")
    prompt_len = np.asarray(table.column("prompt_len").to_numpy(), dtype=np.int64)
    output_len = np.asarray(table.column("output_len").to_numpy(), dtype=np.int64)
    if len(output_len) == 0:
        raise InputError(where, None, "the trace holds no sequences")
    if (output_len < 1).any() or (prompt_len < 1).any():
        raise InputError(where, "output_len", "every sequence needs at least one prompt and one output token")
    tokens = _flat(table, "tokens", where, output_len, np.int32)
    prompt_ids = _flat(table, "prompt_ids", where, prompt_len, np.int32)
    ranks: dict[str, np.ndarray] = {}
    betas: dict[tuple[str, float], np.ndarray] = {}
    for name in table.column_names:
        if name.startswith("rank:"):
            d = name[5:]
            try:
                parse_drafter(d)
            except ValueError as exc:
                raise InputError(where, name, str(exc)) from None
            r = _flat(table, name, where, output_len, np.int16)
            if (r < 0).any():
                raise InputError(where, name, "ranks must be >= 0")
            ranks[d] = r
        elif name.startswith("beta:"):
            d, _, t = name[5:].rpartition("@")
            try:
                temp = float(t)
            except ValueError:
                raise InputError(where, name, "beta columns are named beta:<drafter>@<temperature>") from None
            b = _flat(table, name, where, output_len, np.float32)
            if np.isnan(b).any() or (b < -1e-3).any() or (b > 1 + 1e-3).any():
                raise InputError(where, name, "beta values must lie in [0, 1]")
            betas[(d, temp)] = b
        elif name not in BASE_COLUMNS and name not in LIST_COLUMNS:
            raise InputError(where, name, "unknown column (expected rank:<drafter> or beta:<drafter>@<T>)")
    if not side.exists():
        raise InputError(where, None, f"has no sidecar ({side.name} is missing): nothing says which model, "
                                      "dataset or vocabulary it traced (simspec trace --out writes both)")
    check_sidecar(side, meta, len(output_len), output_len, tokens, list(ranks), {t for _, t in betas})
    offsets = np.concatenate([[0], np.cumsum(output_len)])
    poffsets = np.concatenate([[0], np.cumsum(prompt_len)])
    return Trace(where, meta, prompt_len, output_len, offsets, tokens, poffsets, prompt_ids, ranks, betas)
