"""Capture a profile: time every grid point of one loaded model and write Parquet + sidecar."""

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
from simspec.models.loader import LoadedModel
from simspec.profile.grid import Grid
from simspec.profile.schema import SCHEMA_VERSION, sidecar_path
from simspec.profile.timer import Measured, PhaseTimer, measure
from simspec.profile.workloads import (CacheFlusher, FilledCache, decode_fn, head_fn, prefill_fn,
                                       settle)


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


def retime_non_monotone(block: list, again: Callable[[int], object], slack: float = 0.02) -> int:
    """Time again, once, each point slower than a point with MORE query tokens (cost cannot
    fall as q grows, so such a point caught a stall); keep the faster. Returns how many."""
    n = 0
    for i in range(len(block) - 1):
        if block[i].total > min(m.total for m in block[i + 1:]) * (1 + slack):
            m = again(i)
            if m.total < block[i].total:
                block[i] = m
            n += 1
    return n


def again_prefill(timer: PhaseTimer, model, points: dict[tuple[int, int], Measured],
                  deadline: float, step: Callable[[str], None]) -> int:
    """One more run of each prefill point, minutes after its first ones, while perf_counter()
    plus the point's own time stays under `deadline`; keeps the fastest. Returns how many."""
    n = 0
    for (b, length), m in points.items():
        if time.perf_counter() + m.total > deadline:
            step(f"prefill b={b} len={length} again: skipped (time budget)")
            continue
        points[b, length] = m.merge(timer.time_once(prefill_fn(model, b, length)).total)
        n += 1
        step(f"prefill b={b} len={length} again")
    return n


def capture(lm: LoadedModel, grid: Grid, step: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Time all points; `step(label)` is called after each (progress bar)."""
    model, vocab = lm.model, lm.dims.vocab
    grid = grid.with_vocab(vocab)
    rows: list[dict] = []
    timer = PhaseTimer(model, lm.device)
    t0 = time.perf_counter()
    prefill: dict[tuple[int, int], Measured] = {}
    try:
        for b in grid.prefill_batch:
            for n in grid.prefill_len:
                prefill[b, n] = measure(timer, prefill_fn(model, b, n), grid.runs, grid.long_s,
                                        grid.long_runs, warmup=1, agree=grid.agree,
                                        max_runs=grid.max_runs)
                step(f"prefill b={b} len={n}")
        for b in grid.batch:
            for ctx in grid.context:
                cache = FilledCache(model, b, ctx)
                settle(model, cache, b, max(grid.q))
                block: list = []
                for q in grid.q:
                    block.append(measure(timer, decode_fn(model, cache, b, q), grid.runs,
                                         grid.long_s, grid.long_runs, reset=cache.reset, warmup=1,
                                         agree=grid.agree, max_runs=grid.max_runs))
                    step(f"decode b={b} q={q} ctx={ctx}")
                retime_non_monotone(block, lambda i: measure(
                    timer, decode_fn(model, cache, b, grid.q[i]), grid.runs, grid.long_s,
                    grid.long_runs, reset=cache.reset, warmup=1, agree=grid.agree,
                    max_runs=grid.max_runs))
                rows += [_row("decode", b, q, ctx, vocab, m) for q, m in zip(grid.q, block)]
                del cache
        flush = CacheFlusher(lm.device)
        for t in grid.head_tokens:
            for r in grid.head_rows:
                m = measure(timer, head_fn(model, t, r), grid.runs + 2, grid.long_s,
                            grid.long_runs, reset=flush)
                # the head alone: its whole time is head time
                m = type(m)(m.total, m.total_median, m.total_max, 0.0, m.total, 0.0, m.repeats)
                rows.append(_row("head", t, 1, 0, r, m))
                step(f"head tokens={t} rows={r}")
        if grid.again_s > 0:
            again_prefill(timer, model, prefill, t0 + grid.again_s, step)
        rows += [_row("prefill", b, n, 0, vocab, m) for (b, n), m in prefill.items()]
    finally:
        timer.close()
    return rows


def write_profile(lm: LoadedModel, rows: list[dict], grid: Grid, out: Path, threads: int,
                  seconds: float, command: str, spec: str) -> Path:
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
        "threads": threads,
        "dtype": lm.dtype,
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "grid": grid.with_vocab(lm.dims.vocab).to_dict(),
        "command": command,
        "capture_seconds": round(seconds, 1),
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
                spec: str, step: Callable[[str], None]) -> tuple[Path, float]:
    t0 = time.perf_counter()
    rows = capture(lm, grid, step)
    seconds = time.perf_counter() - t0
    return write_profile(lm, rows, grid, out, threads, seconds, command, spec), seconds
