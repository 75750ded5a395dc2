"""A roofline cost model: latency of a forward pass from model dims and device figures.

Each kernel costs about max(bytes / (bandwidth x e_bw), FLOPs / (peak x e_flops)) (a p-norm of
the two: the device's `sharpness` p rounds the knee, where real kernels neither stream at full
bandwidth nor compute at full rate; p = 8 is within 9% of max), summed over the
forward: every decoder layer's linears (q, k, v, o and a gated MLP; a one-row product is its
own `gemv` class, since CPUs and GPUs run it with other kernels than a GEMM), its attention
(reading the KV cache), the LM head (all rows or K of them) and the embedding gather, plus a
fixed overhead per forward and per layer. The efficiencies e come from the device (catalog
defaults) or are fitted to a measured profile (`simspec.devices.fit`).

Tensor parallelism over `tp` devices splits every weight and KV read by tp and adds two
ring all-reduces of the activations per layer over the device's link. Pipeline stages add
one activation hand-off per stage boundary to a forward (a what-if: per-forward latency,
no micro-batching). Implements the simulator's `CostModel` protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simspec.devices.arch import DTYPE_BYTES, ArchDims
from simspec.devices.catalog import DeviceInfo

PHASES = ("prefill", "decode")


@dataclass
class RooflineCost:
    dims: ArchDims
    device: DeviceInfo
    dtype: str = "bf16"
    tensor_parallel: int = 1
    pipeline_stages: int = 1
    depends_on_context: bool = True
    estimate: bool = True  # figures from datasheets, not a measured profile
    _memo: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} not one of {', '.join(DTYPE_BYTES)}")
        self.device.peak(self.dtype)  # KeyError when the device lacks it
        self.w = DTYPE_BYTES[self.dtype]
        self.num_layers = self.dims.layers
        self.vocab_size = self.dims.vocab

    # the model figures of the CostModel protocol (memory: per device of a tensor-parallel group)
    @property
    def weights_bytes(self) -> float:
        return self.dims.weights_bytes(self.w) / self.tensor_parallel

    @property
    def kv_bytes_per_token(self) -> float:
        return self.dims.kv_bytes_per_token(self.w) / self.tensor_parallel

    @property
    def hidden_bytes(self) -> float:
        """One whole hidden state (every device of a group holds it after the all-reduce)."""
        return float(self.dims.hidden * self.w)

    # -- kernels ---------------------------------------------------------------------------
    def _kernel(self, kernel: str, nbytes: float, flops: float) -> float:
        e = self.device.eff(kernel)
        tm = nbytes / (self.device.memory_bw * e.bw)
        tc = flops / (self.device.peak(self.dtype) * e.flops)
        p = self.device.sharpness
        hi = max(tm, tc)
        return hi * ((tm / hi) ** p + (tc / hi) ** p) ** (1.0 / p) if hi > 0 else 0.0

    def _rows(self, tokens: int) -> int:
        """Rows as a blocked GEMM computes them (AMX: 16 at a time, above two blocks)."""
        blk = self.device.gemm_row_block
        return math.ceil(tokens / blk) * blk if blk > 1 and tokens > 2 * blk else tokens

    def _allreduce_s(self, nbytes: float) -> float:
        tp = self.tensor_parallel
        if tp == 1:
            return 0.0
        return 2 * (tp - 1) / tp * nbytes / self.device.link_bw + 2 * (tp - 1) * self.device.link_latency_s

    def breakdown(self, phase: str, batch: int, q: int, context: int, layers: int | None = None,
                  head_rows: int | None = None, logits: int | None = None) -> dict[str, float]:
        """Seconds by part of one forward: linear, attention, head, embedding, comm, overhead."""
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} not one of {PHASES}")
        if batch < 1 or q < 1:
            raise ValueError(f"batch={batch}, q={q}: both must be >= 1")
        d, w, tp = self.dims, self.w, self.tensor_parallel
        n = d.layers if layers is None else layers
        if not 0 <= n <= d.layers:
            raise ValueError(f"layers={n} outside 0..{d.layers}")
        rows_h = d.vocab if head_rows is None else head_rows
        if not 1 <= rows_h <= d.vocab:
            raise ValueError(f"head_rows={rows_h} outside 1..{d.vocab}")
        tokens = batch * q
        rows = self._rows(tokens)
        lin_kernel = "gemv" if tokens == 1 else "gemm"
        linear = self._kernel(lin_kernel, d.layer_params * w / tp, 2.0 * rows * d.layer_params / tp)
        kv = 2 * d.kv_heads * d.head_dim * w / tp  # bytes per token per layer
        if phase == "decode":
            seen = context + q
            attn = self._kernel("attention", batch * seen * kv, 4.0 * batch * q * seen * d.heads * d.head_dim / tp)
            head_tokens = batch * (q if logits is None else logits)
        else:
            attn = self._kernel("attention", batch * q * kv, 2.0 * batch * q * q * d.heads * d.head_dim / tp)
            head_tokens = batch  # logits of the last prompt token only
        head = self._kernel("head", rows_h * d.hidden * w / tp, 2.0 * self._rows(head_tokens) * rows_h * d.hidden / tp)
        act = tokens * d.hidden * w
        comm = n * 2 * self._allreduce_s(act)
        if self.pipeline_stages > 1:
            comm += (self.pipeline_stages - 1) * (act / self.device.link_bw + self.device.link_latency_s)
        return {
            "linear": n * linear,
            "attention": n * attn,
            "head": head,
            "embedding": act / self.device.memory_bw,
            "comm": comm,
            "overhead": self.device.overhead_s + n * self.device.layer_overhead_s,
        }

    def latency_s(self, phase: str, batch: int, q: int, context: int, layers: int | None = None,
                  head_rows: int | None = None, logits: int | None = None) -> float:
        key = (phase, batch, q, int(context), layers, head_rows, logits)
        hit = self._memo.get(key)
        if hit is None:
            hit = sum(self.breakdown(phase, batch, q, int(context), layers, head_rows, logits).values())
            self._memo[key] = hit
        return hit

    def decode_tok_s(self, context: int = 512) -> float:
        """Plain greedy decode at batch 1 (gpt-fast's headline figure)."""
        return 1.0 / self.latency_s("decode", 1, 1, context)
