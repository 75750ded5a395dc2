"""The profile file contract: Parquet table + JSON sidecar, and a loader that says what is wrong.

Torch-free. One row per measured point:
  kind      "prefill" | "decode" | "head"
  batch     sequences (head: hidden states fed to the head)
  q         query tokens per sequence (prefill: prompt length; head: 1)
  context   cached tokens per sequence (prefill and head: 0)
  rows      LM-head rows computed (full vocabulary except for kind "head")
  total_s   the whole forward: the fastest of its runs (simspec.timing.estimate says why)
  total_median_s, total_max_s   median and max of the runs (spread; the point's noise figure
            is total_median_s / total_s - 1)
  layer_s   one decoder layer in the fastest run (mean over its layers)
  head_s    the LM head inside the fastest run
  rest_s    total - layers - head of that run: embedding, rotary, masks, final norm, Python
  repeats   timed runs of the point (one per protocol pass; older profiles: runs back to back)

The sidecar's optional "protocol" block (simspec.timing.protocol.Result.summary) says how the
points were timed: passes, why they stopped, the tolerance, the noise over the points.
Profiles captured before it have none and read back alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KINDS = ("prefill", "decode", "head")
COLUMNS = {
    "kind": "object",
    "batch": "int",
    "q": "int",
    "context": "int",
    "rows": "int",
    "total_s": "float",
    "total_median_s": "float",
    "total_max_s": "float",
    "layer_s": "float",
    "head_s": "float",
    "rest_s": "float",
    "repeats": "int",
}
SIDECAR_KEYS = (
    "schema_version", "model", "sha256", "dims", "device", "device_name", "threads", "dtype",
    "versions", "date", "grid", "command", "weights_bytes", "kv_bytes_per_token",
)


def sidecar_path(parquet: Path) -> Path:
    return parquet.with_suffix(".json")


def read_profile(path: Path):
    """(DataFrame, sidecar dict) of a profile, or InputError naming file, key and reason."""
    import pandas as pd

    from simspec.errors import InputError
    from simspec.limits import JSON_BYTES, read_bytes, regular_file

    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, "profile file not found")
    regular_file(path)  # never a FIFO or a device
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise InputError(str(path), None, f"not a Parquet profile ({type(exc).__name__})") from None
    for col, kind in COLUMNS.items():
        if col not in df.columns:
            raise InputError(str(path), col, "missing column")
        if kind in ("int", "float") and (not pd.api.types.is_numeric_dtype(df[col])
                                         or pd.api.types.is_bool_dtype(df[col])):
            raise InputError(str(path), col, f"expected a {kind} column, got {df[col].dtype}")
    if not df["kind"].map(lambda v: isinstance(v, str)).all():
        raise InputError(str(path), "kind", f"expected text ({', '.join(KINDS)}) in every row")
    bad = set(df["kind"]) - set(KINDS)
    if bad:
        raise InputError(str(path), "kind", f"unknown kinds {sorted(bad)}; expected {list(KINDS)}")
    for kind in ("prefill", "decode"):
        if not (df["kind"] == kind).any():
            raise InputError(str(path), "kind", f"no {kind} rows")
    for col, kind in COLUMNS.items():
        if kind == "object":
            continue
        x = df[col].to_numpy(dtype=float)
        if not np.isfinite(x).all():
            raise InputError(str(path), col, "missing or non-finite values (NaN or inf)")
        lo, hi, what = LIMITS.get(col, (-MAX_SECONDS, MAX_SECONDS, "a time in seconds"))
        if (x < lo).any() or (x > hi).any():
            v = x[(x < lo) | (x > hi)][0]
            raise InputError(str(path), col, f"{v:g} is out of range: expected {what} in [{lo:g}, {hi:g}]")
    side = sidecar_path(path)
    if not side.is_file():
        raise InputError(str(side), None, "sidecar JSON missing (it must sit beside the Parquet)")
    try:
        meta = json.loads(read_bytes(side, JSON_BYTES).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(str(side), None, f"not valid JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise InputError(str(side), None, "expected a JSON object")
    for key in SIDECAR_KEYS:
        if key not in meta:
            raise InputError(str(side), key, "missing key")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise InputError(str(side), "schema_version", f"{meta['schema_version']!r} unsupported (want {SCHEMA_VERSION})")
    if not isinstance(meta["dims"], dict):
        raise InputError(str(side), "dims", "expected a JSON object")
    for key in ("layers", "vocab", "kv_heads", "head_dim"):
        if key not in meta["dims"]:
            raise InputError(str(side), f"dims.{key}", "missing key")
        _count(meta["dims"][key], str(side), f"dims.{key}", 1)
    _count(meta["kv_bytes_per_token"], str(side), "kv_bytes_per_token", 1)
    _count(meta["weights_bytes"], str(side), "weights_bytes", 0)
    if "token_block" in meta:
        _count(meta["token_block"], str(side), "token_block", 1)
    if meta.get("protocol") is not None and not isinstance(meta["protocol"], dict):
        raise InputError(str(side), "protocol", "expected a JSON object (how the points were timed)")
    return df, meta


# Grid axes and latencies a profile may hold (beyond them the file is damaged, not measured).
MAX_SECONDS = 1e6
MAX_AXIS = 2.0**31
LIMITS = {
    "batch": (1, MAX_AXIS, "a count >= 1"), "q": (1, MAX_AXIS, "a count >= 1"),
    "rows": (1, MAX_AXIS, "a count >= 1"), "context": (0, MAX_AXIS, "a count >= 0"),
    "repeats": (0, MAX_AXIS, "a count >= 0"),
    "total_s": (1e-12, MAX_SECONDS, "a positive time in seconds"),
    "layer_s": (0, MAX_SECONDS, "a time >= 0 in seconds"), "head_s": (0, MAX_SECONDS, "a time >= 0 in seconds"),
}


def _count(v, file: str, key: str, lo: int) -> int:
    """A sidecar integer (JSON int, not bool or text) >= lo, or InputError."""
    from simspec.errors import InputError

    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 2**53:
        raise InputError(file, key, f"expected an integer >= {lo}, got {v!r}"[:200])
    return v
