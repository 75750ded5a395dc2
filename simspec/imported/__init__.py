"""Acceptance imported from a running engine or a paper, for drafters simspec cannot trace
(EAGLE-3 heads, MTP layers, parallel drafters served elsewhere).

Sources (one module each): vLLM's spec-decode counters in Prometheus text (`vllm.py`, over
`prometheus.py`), SGLang's accept lengths (`sglang.py`), a per-position list with its citation
(`paper.py`). Each becomes simspec's per-position chain model (`record.py`: the arithmetic and
the acceptance file), which a scenario or a study drafter uses as
`acceptance = { imported = "file.json" }`.

What such acceptance can answer: which draft length K (up to the imported gamma) at which
batch size on which hardware, with the drafter's cost from a profile, dims or the roofline.
What it cannot: no per-token replay (the counters hold no token ids or ranks: no trace
replay, no per-prompt spread); no tree shape beyond what the counters hold (the accepted
path's positions only); rank-free (no trimmed vocabulary or other drafter derived from it);
rounds are position-wise i.i.d. (one survival curve for every round: acceptance's variation
with the text, the sequence position and the batch is averaged away); K beyond gamma reuses
the last rate, an extrapolation. A mean accepted length alone (SGLang's log lines) gives no
per-position curve and is recorded as mean-only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from simspec import limits
from simspec.errors import InputError
from simspec.imported.record import Acceptance

FORMATS = ("vllm", "sglang", "list")


@dataclass
class Imported:
    acceptance: Acceptance
    format: str
    detected: bool
    citation: str | None
    sha256: str
    size: int


def _detect(path: Path, text: str) -> str:
    if path.suffix.lower() in (".toml", ".json"):
        return "list"
    if "vllm:spec_decode" in text:
        return "vllm"
    return "sglang"


def read_text(path: Path) -> tuple[str, bytes]:
    """The file as text: a regular file within limits.ENGINE_BYTES, UTF-8, no NUL (binary data)."""
    data = limits.read_bytes(path, limits.ENGINE_BYTES)
    f = str(path)
    if not data.strip():
        raise InputError(f, None, "is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f, f"line {line}", "not a text file (bytes that are not UTF-8)") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(f, f"line {text.count(chr(10), 0, nul) + 1}", "not a text file (a NUL byte: binary data)")
    return text.lstrip("\ufeff"), data


def import_file(path: str | Path, fmt: str | None = None, gamma: int | None = None,
                source: str | None = None) -> Imported:
    """Read `path` in format `fmt` (detected when None); one InputError for any bad input."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(None, "--format", f"must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if gamma is not None:
        limits.check_flag("--gamma", gamma, limits.GAMMA)
    p = Path(path)
    text, data = read_text(p)
    detected = fmt is None
    fmt = fmt or _detect(p, text)
    if gamma is not None and fmt != "sglang":
        raise InputError(None, "--gamma", f"only for --format sglang (a {fmt} file says its own positions)")
    f = str(p)
    citation = source
    if fmt == "vllm":
        from simspec.imported import vllm

        acc = vllm.read(text, f)
    elif fmt == "sglang":
        from simspec.imported import sglang

        acc = sglang.read(text, f, gamma)
    else:
        from simspec.imported import paper

        acc, cited = paper.read(text, f, source)
        citation = cited if source is None or cited == source else f"{cited}; {source}"
    return Imported(acc, fmt, detected, citation, hashlib.sha256(data).hexdigest(), len(data))
