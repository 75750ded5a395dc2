"""The limits of every size a user can ask for, in one table, and the checks that refuse a size
past its limit in one line (file or flag, key, value, limit) before anything is allocated.

Each limit says why it is where it is: what a machine can hold (arrays sized by the value),
what a run can finish (work grows with the value), or what float64 seconds can resolve. The
numbers are far above any realistic deployment, so they only ever refuse a typo or an
experiment that would crash or never end. README's Reliability section lists this table.

Torch-free and numpy-free: the config schemas, the study schema and the CLI import it.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from simspec.errors import InputError


@dataclass(frozen=True)
class Limit:
    name: str     # what is counted ("requests", "draft tokens per round", ...)
    value: int | float
    why: str


# -- the table ---------------------------------------------------------------------------

REQUESTS = Limit("requests", 10_000_000,
                 "each request holds ~13 numpy columns (workload, records, output frame); 10^7 is ~5 GB")
BYTES_PER_REQUEST = 512  # the estimate behind REQUESTS, checked against the memory available
SIM_TOKENS = Limit("output tokens per simulation (requests x mean output length)", 1_000_000_000,
                   "the simulator runs >= 100k tokens/s at batch 1 (benchmarks/sim_speed.py): 10^9 is hours")
TOKEN_LEN = Limit("tokens per prompt or output", 10_000_000,
                  "int64 length draws and KV arithmetic; far beyond any model's context")
REPLICAS = Limit("replicas", 65_536, "per-replica devices and logs; idle replicas cost nothing beyond that")
MAX_BATCH = Limit("sequences in a batch", 4096,
                  "vLLM's max_num_seqs is 256-1024; a schedule simulates 4 x b requests per bucket b")
GAMMA = Limit("draft tokens per round (gamma, tree depth)", 128,
              "every round draws batch x gamma acceptances; published drafters stop near 10")
TREE_NODES = Limit("nodes of a draft tree", 4096,
                   "each round verifies every node of every sequence; trees are built node by node")
LAYERS = Limit("layers", 4096, "an exit layer beyond any model's depth")
VOCAB = Limit("vocabulary rows", 10_000_000, "a trimmed head beyond any model's vocabulary")
TRIALS = Limit("trials", 100_000, "each trial is a simulation, and TPE's cost grows with the trials before it")
WORKERS = Limit("worker processes", 256, "one process each; beyond the cores of any one machine")
SCHEDULE_BUCKETS = Limit("schedule batch sizes", 64, "every bucket simulates every drafter at every gamma")
G_MAX = Limit("chain lengths g of a trace summary", 64, "each g up to the longest accepted run replays the whole trace once")
PROMPTS = Limit("prompts", 1_000_000, "each prompt is a live model run")
CLOCK_S = Limit("seconds on the simulated clock (last arrival)", 2.0 ** 32,
                "float64 seconds keep sub-microsecond steps below 2^32 s (136 years); past it TTFT and "
                "TPOT lose their small differences")
INPUT_BYTES = Limit("bytes of a TOML or CSV input file", 64 * 2 ** 20,
                    "read whole into memory; the largest shipped input is a few kB")
JSON_BYTES = Limit("bytes of a JSON sidecar", 64 * 2 ** 20,
                   "read whole into memory; shipped sidecars are under 1 MB")
ENGINE_BYTES = Limit("bytes of an engine metrics scrape or log", 256 * 2 ** 20,
                     "read whole; a vLLM /metrics scrape is ~100 kB, a day of SGLang decode-batch lines ~100 MB")

TABLE = (REQUESTS, SIM_TOKENS, TOKEN_LEN, REPLICAS, MAX_BATCH, GAMMA, TREE_NODES, LAYERS, VOCAB,
         TRIALS, WORKERS, SCHEDULE_BUCKETS, G_MAX, PROMPTS, CLOCK_S, INPUT_BYTES, JSON_BYTES, ENGINE_BYTES)


def _fmt(v: int | float) -> str:
    if isinstance(v, float) and v.is_integer() and v < 1e16:
        v = int(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.3g}"


def reason(value: int | float, limit: Limit) -> str:
    """'<value> is above the limit of <limit> <name> (<why>)'."""
    return f"{_fmt(value)} is above the limit of {_fmt(limit.value)} {limit.name} ({limit.why})"


def over(value: int | float, limit: Limit) -> str | None:
    """The refusal reason when `value` is past `limit`, else None."""
    return reason(value, limit) if value > limit.value else None


def check(value: int | float, limit: Limit, file: str | None, key: str) -> None:
    """Refuse `value` past `limit` as one InputError naming the file (or None for a flag) and key."""
    why = over(value, limit)
    if why is not None:
        raise InputError(file, key, why)


def check_flag(flag: str, value: int | None, limit: Limit, low: int = 1) -> None:
    """A command-line count: at least `low`, at most the limit."""
    if value is None:
        return
    if value < low:
        raise InputError(None, flag, f"must be >= {low} (got {value})")
    check(value, limit, None, flag)


# -- derived estimates -------------------------------------------------------------------

def available_memory() -> int | None:
    """Bytes the kernel says it can give this process now (MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def requests_memory(requests: int) -> str | None:
    """A refusal reason when `requests` requests would not fit in half the memory available."""
    need = requests * BYTES_PER_REQUEST
    if need < 256 * 2 ** 20:  # small runs: never ask the kernel (same answer on every machine)
        return None
    have = available_memory()
    if have is not None and need > have // 2:
        return (f"{requests:,} requests need about {need / 2 ** 30:.1f} GiB of arrays, more than half "
                f"the {have / 2 ** 30:.1f} GiB this machine has available")
    return None


def tree_nodes(branching) -> int:
    """Nodes of a tree of children-per-depth `branching` (root included), stopping as soon as
    the count passes TREE_NODES (so a tree of 10^9 nodes costs nothing to measure)."""
    total, level = 1, 1
    for c in branching:
        level *= max(int(c), 0)
        total += level
        if total > TREE_NODES.value:
            return total
    return total


def clock_reason(last_arrival_s: float, what: str) -> str | None:
    """A refusal when arrivals reach past CLOCK_S, where the float64 clock loses TTFT/TPOT."""
    if not last_arrival_s > CLOCK_S.value:  # also refuses NaN
        return None
    return (f"{what} puts arrivals ~{last_arrival_s:.3g} s out, past the limit of {CLOCK_S.value:.3g} "
            f"s ({CLOCK_S.why})")


# -- input files -------------------------------------------------------------------------

def regular_file(path: str | Path, file: str | None = None, key: str | None = None) -> Path:
    """`path` if it is a regular file (following links); else one InputError. A FIFO, a device
    (/dev/zero) or a folder is never opened: reading one can block or never end."""
    p = Path(path)
    where, k = (file, key) if file else (str(p), None)
    name = f"{p} " if file else ""  # the line names the path already when it is the file
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(where, k, f"file not found: {p}" if file else "file not found") from None
    except OSError as exc:
        raise InputError(where, k, f"{name}cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(where, k, f"{name}is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(where, k, f"{name}is not a regular file (a device, FIFO or socket is never read)")
    return p


def read_bytes(path: str | Path, limit: Limit = INPUT_BYTES) -> bytes:
    """The bytes of a regular input file of at most `limit` bytes, else one InputError.
    Opened non-blocking and checked again on the open file, so a FIFO swapped in after the
    check cannot block the read."""
    p = regular_file(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(str(p), None, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(str(p), None, "not a regular file (a device, FIFO or socket is never read)")
        data = fh.read(int(limit.value) + 1)
    if len(data) > limit.value:
        raise InputError(str(p), None, f"larger than the limit of {_fmt(limit.value)} {limit.name} ({limit.why})")
    return data


def mean_len(spec, default: float) -> float:
    """An estimate of the mean of a length spec (an int, a uniform or lognormal range);
    `default` when lengths come from a dataset."""
    if spec is None:
        return default
    if isinstance(spec, int):
        return float(spec)
    lo, hi = float(spec.min), float(spec.max)
    if getattr(spec, "dist", None) == "lognormal":
        try:
            m = spec.median * math.exp(spec.sigma ** 2 / 2)
        except OverflowError:
            m = hi
        return min(max(m, lo), hi)
    return (lo + hi) / 2
