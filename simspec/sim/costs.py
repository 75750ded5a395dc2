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
    """Latency of one forward pass of a model on a device, and the figures of that model the
    simulator needs beside it (KV capacity, early-exit and trimmed-head bounds, transfers).

    phase: "prefill" (q = prompt tokens per sequence) or "decode" (q = query tokens per
    sequence: 1 for plain decoding, gamma+1 or tree size for verification).
    context: tokens already in each sequence's KV cache (batch mean).
    layers: decoder layers run (early-exit drafting), None = all.
    head_rows: LM-head rows (trimmed vocabulary), None = full vocabulary.
    logits: decode query tokens per sequence that go through the LM head, None = all q (a
        drafter catching up on a token it missed needs the logits of its last token only).

    Model figures (None where the cost model does not know them, as a what-if cost doesn't):
    num_layers: decoder layers (the bound on `layers`); vocab_size: LM-head rows (the bound
    on `head_rows`); kv_bytes_per_token and weights_bytes: what the model holds in one
    device's memory (per device of a tensor-parallel group); hidden_bytes: one hidden state
    (width x the bytes of its dtype), what an EAGLE-like drafter reads across a link;
    estimate: True when priced from datasheet figures, False when fitted to a measurement,
    None when not a roofline (a measured profile or a what-if: summaries leave it out).
    """

    depends_on_context: bool
    num_layers: int | None
    vocab_size: int | None
    kv_bytes_per_token: float | None
    weights_bytes: float | None
    hidden_bytes: float | None
    estimate: bool | None

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
    of Leviathan et al. assume. `num_layers` (when the target's depth is known) lets an
    early-exit drafter be priced as a fraction of a pass. A what-if cost prices no model: its
    model figures are unknown (None; the scenario's `dims` give KV and hidden sizes instead).
    """

    step_ms: float
    per_seq_ms: float = 0.0
    per_token_ms: float = 0.0
    per_kv_token_ms: float = 0.0
    num_layers: int | None = None
    vocab_size: int | None = None
    kv_bytes_per_token: float | None = None
    weights_bytes: float | None = None
    hidden_bytes: float | None = None
    estimate: bool | None = None

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
        if layers is not None and self.num_layers:
            ms *= layers / self.num_layers
        return ms / 1000.0


@dataclass(frozen=True)
class ScaledCost:
    """A cost model seen through a fixed number of layers and head rows (a drafter view).

    The model figures are the base model's: an early-exit view runs the first layers of the
    same weights (whether a drafter adds weights of its own is its kind's `separate_model`).
    """

    base: CostModel
    layers: int | None = None
    head_rows: int | None = None

    @property
    def depends_on_context(self) -> bool:
        return self.base.depends_on_context

    @property
    def num_layers(self) -> int | None:
        return self.base.num_layers

    @property
    def vocab_size(self) -> int | None:
        return self.base.vocab_size

    @property
    def kv_bytes_per_token(self) -> float | None:
        return self.base.kv_bytes_per_token

    @property
    def weights_bytes(self) -> float | None:
        return self.base.weights_bytes

    @property
    def hidden_bytes(self) -> float | None:
        return self.base.hidden_bytes

    @property
    def estimate(self) -> bool | None:
        return self.base.estimate

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
