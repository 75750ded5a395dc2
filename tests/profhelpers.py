"""Synthetic profiles with a known cost formula, written through the real schema."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from simspec.profile.grid import FULL
from simspec.profile.schema import SCHEMA_VERSION

LAYERS, VOCAB = 10, 1000


def layer_s(b, q, c):
    return 1e-3 + 2e-5 * b * q + 1e-8 * b * c


def head_s(tokens, rows):
    return 1e-5 + 1e-9 * tokens * rows


def rest_s(b, q):
    return 2e-4 + 1e-6 * b * q


def decode_total(b, q, c):
    return rest_s(b, q) + LAYERS * layer_s(b, q, c) + head_s(b * q, VOCAB)


def prefill_total(b, n):
    return rest_s(b, n) + LAYERS * layer_s(b, n, n / 2) + head_s(b, VOCAB)


def _row(kind, b, q, c, rows, total, layer, head, rest):
    return dict(kind=kind, batch=b, q=q, context=c, rows=rows, total_s=total,
                total_median_s=total * 1.05, total_max_s=total * 1.2, layer_s=layer,
                head_s=head, rest_s=rest, repeats=3)


def synthetic_rows(grid=FULL):
    g = grid.with_vocab(VOCAB)
    rows = []
    for b in g.batch:
        for q in g.q:
            for c in g.context:
                rows.append(_row("decode", b, q, c, VOCAB, decode_total(b, q, c), layer_s(b, q, c),
                                 head_s(b * q, VOCAB), rest_s(b, q)))
    for b in g.prefill_batch:
        for n in g.prefill_len:
            rows.append(_row("prefill", b, n, 0, VOCAB, prefill_total(b, n), layer_s(b, n, n / 2),
                             head_s(b, VOCAB), rest_s(b, n)))
    for t in g.head_tokens:
        for r in g.head_rows:
            rows.append(_row("head", t, 1, 0, r, head_s(t, r), 0.0, head_s(t, r), 0.0))
    return rows, g


def write_synthetic(path: Path, drop_column: str | None = None, drop_key: str | None = None,
                    rows=None) -> Path:
    rows_, g = synthetic_rows()
    df = pd.DataFrame(rows if rows is not None else rows_)
    if drop_column:
        df = df.drop(columns=[drop_column])
    df.to_parquet(path, index=False)
    meta = {
        "schema_version": SCHEMA_VERSION, "model": "synthetic", "spec": "synthetic",
        "sha256": "0" * 64,
        "dims": {"arch": "llama", "layers": LAYERS, "hidden": 64, "heads": 4, "kv_heads": 2,
                 "head_dim": 16, "vocab": VOCAB, "intermediate": 128},
        "device": "cpu", "device_name": "test", "threads": 1, "dtype": "fp32",
        "versions": {}, "date": "2026-01-01T00:00:00+00:00", "grid": g.to_dict(),
        "command": "synthetic", "weights_bytes": 1, "kv_bytes_per_token": 2 * LAYERS * 2 * 16 * 4,
    }
    if drop_key:
        del meta[drop_key]
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path
