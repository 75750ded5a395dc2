"""The measured grid: which (batch, query tokens, context) points a profile times.

Torch-free: the cost model reads the grid back from the sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Grid:
    """Axes of the three tables of a profile."""

    batch: tuple[int, ...]
    q: tuple[int, ...]
    context: tuple[int, ...]
    prefill_batch: tuple[int, ...]
    prefill_len: tuple[int, ...]
    head_tokens: tuple[int, ...]
    head_rows: tuple[int, ...]  # the full vocabulary is appended per model
    # runs .. again_s: how profiles before the timing protocol (simspec.timing) repeated a point
    # back to back; kept so their sidecars' grids keep their meaning. Captures now run passes.
    runs: int  # timed runs per point, after one untimed warm-up
    long_s: float  # a point whose warm-up takes longer than this ...
    long_runs: int  # ... gets this many timed runs
    agree: float = 0.0  # then more runs until the two fastest agree within this (relative) ...
    max_runs: int = 0  # ... up to this many runs in all, warm-up included (0: no extra runs)
    again_s: float = 0.0  # prefill points timed once more at the end while the capture is under this

    def prefill_points(self) -> int:
        return len(self.prefill_batch) * len(self.prefill_len)

    def with_vocab(self, vocab: int) -> "Grid":
        rows = tuple(r for r in self.head_rows if r < vocab) or (vocab // 2,)
        rows = rows + (vocab,)
        return Grid(**{**asdict(self), "head_rows": rows})

    def points(self) -> int:
        """Points of the grid (one protocol pass measures each once)."""
        return (
            len(self.batch) * len(self.q) * len(self.context)
            + self.prefill_points()
            + len(self.head_tokens) * len(self.head_rows)
        )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Batch 12 and prefill batch 2: between 8 and 16 (1 and 4) GEMM kernels change regime and
# log interpolation read 12-17% low at batch 10-13 on Qwen2.5-1.5B bf16 (check of 2026-11-22).
# Prefill lengths 2x apart: 4x apart, log interpolation read 19% high at 2 x 129 tokens.
# q 20 and 28, prefill lengths sqrt(2) apart from 128: between q 16/24/32 and between prompt
# lengths 256/512 the forwards step up where GEMM kernels change blocking (1 x 394 prefill tokens
# read 20% low, q 25-31 at batch 6-16 about 10% low, checks of 2026-11-22).
# Runs (before the timing protocol): a warm-up and one timed run, more until two agreed within
# 5% (at most 4), prefill twice minutes apart: this VM has slow phases lasting minutes (one made
# every prefill of a capture 20-40% slow at 08:35 on 2026-11-22), which no number of
# back-to-back runs can see. Captures now time every point once per protocol pass instead.
# q 5 and 7 (verifying gamma 4 and 6): on a 2-core AVX-512 host at one fp32 thread the 1.5B's
# forwards step up between q 3 and 4 (0.49 -> 0.91 s) and again between 6 and 7 (0.95 -> 1.27
# s), so a 7-token verify interpolated between 6 and 8 priced the pipeline's g6 10-17% fast
# (2026-12-06); every q up to 8 is measured.
FULL = Grid(
    batch=(1, 2, 4, 8, 12, 16),
    q=(1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 28, 32),
    context=(128, 512, 2048, 4096),
    prefill_batch=(1, 2, 4),
    prefill_len=(16, 32, 64, 128, 192, 256, 384, 512, 768, 1024),
    head_tokens=(1, 4, 16, 64, 256, 512),
    head_rows=(1024, 4096, 16384, 65536),
    runs=1,
    long_s=1.0,
    long_runs=1,
    agree=0.05,
    max_runs=4,
    again_s=570.0,
)

QUICK = Grid(
    batch=(1, 4),
    q=(1, 4, 16),
    context=(128, 1024),
    prefill_batch=(1, 2),
    prefill_len=(16, 128),
    head_tokens=(1, 16),
    head_rows=(4096,),
    runs=2,
    long_s=1.0,
    long_runs=1,
)
