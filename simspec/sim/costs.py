"""Execution-time predictors: how long one forward pass takes.

The serving loop only sees the `CostModel` protocol, so a synthetic cost (what-if work,
closed-form tests) and a measured profile are interchangeable, as in Vidur's predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

PHASES = ("prefill", "decode")


@runtime_checkable
class CostModel(Protocol):
    """Latency of one forward pass of a model on a device.

    phase: "prefill" (q = prompt tokens per sequence) or "decode" (q = query tokens per
    sequence: 1 for plain decoding, gamma+1 or tree size for verification).
    context: tokens already in each sequence's KV cache (batch mean).
    layers: decoder layers run (early-exit drafting), None = all.
    head_rows: LM-head rows (trimmed vocabulary), None = full vocabulary.
    logits: decode query tokens per sequence that go through the LM head, None = all q (a
        drafter catching up on a token it missed needs the logits of its last token only).
    """

    depends_on_context: bool

    def latency_s(
        self,
        phase: str,
        batch: int,
        q: int,
        context: int,
        layers: int | None = None,
        head_rows: int | None = None,
        logits: int | None = None,
    ) -> float: ...


@dataclass(frozen=True)
class SyntheticCost:
    """A linear what-if cost: step + per sequence + per query token + per cached token.

    With only `step_ms` every forward pass costs the same, which is what the closed forms
    of Leviathan et al. assume. `layers` (when the target's depth is known) lets an
    early-exit drafter be priced as a fraction of a pass.
    """

    step_ms: float
    per_seq_ms: float = 0.0
    per_token_ms: float = 0.0
    per_kv_token_ms: float = 0.0
    total_layers: int | None = None

    @property
    def depends_on_context(self) -> bool:
        return self.per_kv_token_ms != 0.0

    def latency_s(
        self,
        phase: str,
        batch: int,
        q: int,
        context: int,
        layers: int | None = None,
        head_rows: int | None = None,
        logits: int | None = None,
    ) -> float:
        ms = (
            self.step_ms
            + self.per_seq_ms * batch
            + self.per_token_ms * batch * q
            + self.per_kv_token_ms * batch * context
        )
        if layers is not None and self.total_layers:
            ms *= layers / self.total_layers
        return ms / 1000.0


@dataclass(frozen=True)
class ScaledCost:
    """A cost model seen through a fixed number of layers and head rows (a drafter view)."""

    base: CostModel
    layers: int | None = None
    head_rows: int | None = None

    @property
    def depends_on_context(self) -> bool:
        return self.base.depends_on_context

    def latency_s(self, phase, batch, q, context, layers=None, head_rows=None, logits=None) -> float:
        return self.base.latency_s(
            phase, batch, q, context,
            layers=self.layers if layers is None else layers,
            head_rows=self.head_rows if head_rows is None else head_rows, logits=logits,
        )


def load_profile_cost(path: str | Path) -> CostModel:
    """Load a measured profile (Parquet + JSON sidecar) as a cost model.

    The format and the interpolating model live with the profiler (`simspec.profile.costmodel`,
    a torch-free module); this is the one place the simulator reaches for them.
    """
    from simspec.profile.costmodel import ProfileCostModel  # torch-free by contract

    return ProfileCostModel.load(Path(path))
