"""Capture a profile: time every grid point of one loaded model and write Parquet + sidecar.

Every point is timed with the timing protocol (simspec.timing): passes over the whole grid in
a new random order each, so a slow phase of the shared host (2x for seconds to minutes) slows a
few passes of every point rather than all runs of some; the fastest pass per point is its row,
the median and max of its passes its spread, and the sidecar's "protocol" block says how many
passes ran and why they stopped (the halves agreed, the budget or the pass limit)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from simspec import machine
from simspec.atomic import write_text, write_via
from simspec.models import gemv
from simspec.models.loader import LoadedModel
from simspec.profile.forwards import Forward, Forwards
from simspec.profile.grid import Grid
from simspec.profile.schema import SCHEMA_VERSION, sidecar_path
from simspec.timing.protocol import Protocol, Result, run


def _cpuinfo(key: str) -> str:
    """The value of the first `key` line of /proc/cpuinfo, "" if absent or unreadable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def gemm_row_block(device: str, dtype: str) -> int:
    """Rows a bf16 GEMM computes at a time on this device: 16 on CPUs with AMX (tiles of 16
    rows), else 1 (no blocking assumed). The cost model prices b x q tokens above two blocks
    as the next multiple: a 36-token forward costs what a 48-token one does, not what
    interpolating between 32 and 64 says (the check read 18% low at 2 x 18 prefill tokens
    without it); up to 32 rows the cost hardly moves with the row count."""
    if device != "cpu" or dtype != "bf16":
        return 1
    return 16 if "amx_bf16" in _cpuinfo("flags").split() else 1


def versions() -> dict:
    import transformers

    from simspec import __version__ as simspec_version

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "simspec": simspec_version,
    }


def _row(kind, batch, q, context, rows, m) -> dict:
    return {
        "kind": kind, "batch": batch, "q": q, "context": context, "rows": rows,
        "total_s": m.total, "total_median_s": m.total_median, "total_max_s": m.total_max,
        "layer_s": m.layer, "head_s": m.head, "rest_s": m.rest, "repeats": m.repeats,
    }


# The protocol a capture runs by default: passes spread over at least two minutes (the hosts'
# slow phases last seconds to over a minute), at most 30 minutes; --quick: a smoke run.
PROTOCOL = Protocol(min_passes=4, max_passes=8, budget_s=1800.0, min_seconds=120.0)
QUICK_PROTOCOL = Protocol(min_passes=4, max_passes=6, budget_s=60.0)


def grid_forwards(grid: Grid) -> list[Forward]:
    """Every point of a grid (its head rows with the model's vocabulary: Grid.with_vocab)."""
    return ([Forward("decode", b, q, ctx) for b in grid.batch for ctx in grid.context for q in grid.q]
            + [Forward("head", t, 1, 0, rows=r) for t in grid.head_tokens for r in grid.head_rows]
            + [Forward("prefill", b, n) for b in grid.prefill_batch for n in grid.prefill_len])


def capture(lm: LoadedModel, grid: Grid, step: Callable[[str], None] = lambda s: None,
            proto: Protocol = PROTOCOL) -> tuple[list[dict], Result]:
    """Time all points with the timing protocol (interleaved passes, fastest state per point;
    simspec.timing.protocol); `step(label)` is called after each measurement (progress bar).
    Returns the profile's rows and the protocol's result (its summary goes into the sidecar)."""
    vocab = lm.dims.vocab
    grid = grid.with_vocab(vocab)
    points = grid_forwards(grid)
    fw = Forwards(lm, points, settle_q=max(grid.q))
    try:
        res = run(points, fw, proto, group=Forward.group, step=step, label=Forward.label)
    finally:
        fw.close()
    rows = [_row(f.kind, f.batch, f.q, f.context, f.rows or vocab, fw.measured(f)) for f in points]
    return rows, res


def write_profile(lm: LoadedModel, rows: list[dict], grid: Grid, out: Path, threads: int,
                  seconds: float, command: str, spec: str, protocol: dict | None = None) -> Path:
    import pandas as pd

    df = pd.DataFrame(rows)
    write_via(out, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "model": lm.name,
        "spec": spec,
        "sha256": lm.sha256,
        "dims": lm.dims.to_dict(),
        "device": lm.device,
        "device_name": device_name(lm.device),
        "machine": machine.identify(lm.device, threads),
        "kernels": gemv.record(lm.device, lm.dtype),
        "threads": threads,
        "dtype": lm.dtype,
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "grid": grid.with_vocab(lm.dims.vocab).to_dict(),
        "command": command,
        "capture_seconds": round(seconds, 1),
        "protocol": protocol,
        "weights_bytes": lm.weights_bytes,
        "kv_bytes_per_token": lm.dims.kv_bytes_per_token(lm.dtype_bytes),
        "token_block": gemm_row_block(lm.device, lm.dtype),
        "prefill_logits": "last token only (logits_to_keep=1)",
        "kv_cache": "HF DynamicCache filled with random keys/values",
        "allocator": "glibc mmap off, trim off (simspec.models.allocator): freed blocks reused",
        "head_alone": "cold caches: a buffer of twice the last-level cache written before each run",
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    write_text(sidecar_path(out), json.dumps(meta, indent=1) + "\n")
    return out


def run_capture(lm: LoadedModel, grid: Grid, out: Path, threads: int, command: str,
                spec: str, step: Callable[[str], None], proto: Protocol = PROTOCOL) -> tuple[Path, float, Result]:
    t0 = time.perf_counter()
    rows, res = capture(lm, grid, step, proto)
    seconds = time.perf_counter() - t0
    return write_profile(lm, rows, grid, out, threads, seconds, command, spec, res.summary()), seconds, res
