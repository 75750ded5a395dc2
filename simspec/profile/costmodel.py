"""A measured profile as a cost model: latency of any (phase, batch, q, context, layers, K).

Torch-free (the simulator runs without torch). Inside the measured grid the latency is
interpolated linearly in log latency over log batch and log q (piecewise power laws) and over
context itself: a forward's cost is affine in its context (every cached key and value is read
once), and log-interpolating an affine cost with a large intercept reads high between grid
contexts (+19% at 5 x 10 tokens over 1091 cached ones, between the 512 and 2048 grid rows). Outside it, the value at the nearest grid point is scaled by a fitted form
(non-negative least squares on batch, tokens, and tokens x context), and a warning names the
axis that left the grid, once per axis. Partial models (early-exit drafting with l layers,
a trimmed head of K rows) are priced as rest + l x layer + head(K), from the per-layer and
LM-head times measured inside every forward; head(K) is the in-forward full head scaled by
head_alone(K) / head_alone(V), the head timed alone at several K (a ratio, so the cache state
of a real forward is kept).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.optimize import nnls

from simspec.devices.arch import DTYPE_BYTES
from simspec.errors import InputError
from simspec.profile.schema import read_profile

PHASES = ("prefill", "decode")


class _Surface:
    """One measured quantity on a rectangular grid, interpolated on log axes (except the
    axes `linear` names, by index)."""

    def __init__(self, name: str, axes: list[np.ndarray], values: np.ndarray, features,
                 log_values: bool, linear: tuple[int, ...] = ()) -> None:
        self.name = name
        self.axes = axes
        self.lo = [a[0] for a in axes]
        self.hi = [a[-1] for a in axes]
        self.log_values = log_values
        self.log_axis = [i not in linear for i in range(len(axes))]
        data = np.log(np.maximum(values, 1e-9)) if log_values else values
        self.interp = RegularGridInterpolator(
            [np.log(a) if lg else a for a, lg in zip(axes, self.log_axis)], data, method="linear")
        self.features = features
        pts = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(axes), -1).T
        X = np.array([features(*p) for p in pts], dtype=float)
        y = values.reshape(-1)
        w = 1.0 / np.maximum(np.abs(y), 1e-6)  # relative error
        self.coef, _ = nnls(X * w[:, None], y * w)

    def fit(self, *x: float) -> float:
        return float(np.dot(self.features(*x), self.coef))

    def __call__(self, *x: float) -> tuple[float, list[int]]:
        """(value, indices of axes that left the grid)."""
        clamped = [min(max(v, lo), hi) for v, lo, hi in zip(x, self.lo, self.hi)]
        out = [i for i, (v, c) in enumerate(zip(x, clamped)) if v != c]
        v = float(self.interp([[math.log(c) if lg else c for c, lg in zip(clamped, self.log_axis)]])[0])
        if self.log_values:
            v = math.exp(v)
        if out:
            f_in, f_out = self.fit(*clamped), self.fit(*x)
            if self.log_values and f_in > 0:
                v *= f_out / f_in
            else:
                v += f_out - f_in
        return v, out


def _decode_features(b, q, c):
    return (1.0, b, b * q, b * c, b * q * c)


def _prefill_features(b, n):
    return (1.0, b, b * n, b * n * n)


def _head_features(t, r):
    return (1.0, t, t * r, r)


def _prefill_head_features(b, n):
    return (1.0, b)


def _rest_features_3(b, q, c):
    return (1.0, b, b * q)


def _rest_features_2(b, n):
    return (1.0, b, b * n)


def _hidden_bytes(meta: dict) -> int | None:
    """One hidden state of the profiled model: its width x the bytes of the dtype it was
    captured in (fp32: 4, bf16: 2); None when the sidecar lacks either (the loader requires
    neither)."""
    hidden, dtype = meta["dims"].get("hidden"), meta.get("dtype")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        return None
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        return None
    return hidden * DTYPE_BYTES[dtype]


class ProfileCostModel:
    """The `CostModel` protocol over one profile (Parquet + JSON sidecar)."""

    depends_on_context = True
    estimate = None  # measured, not a roofline: summaries carry no estimate flag for it

    def __init__(self, df, meta: dict, source: str = "<profile>") -> None:
        self.meta = meta
        self.source = source
        dims = meta["dims"]
        self.num_layers = int(dims["layers"])
        self.vocab_size = int(dims["vocab"])
        self.kv_bytes_per_token = int(meta["kv_bytes_per_token"])
        self.weights_bytes = int(meta["weights_bytes"])
        self.hidden_bytes = _hidden_bytes(meta)
        # GEMM row blocking (profile.capture.gemm_row_block): b x q tokens above two blocks are
        # priced as the next multiple of it; older profiles say nothing and get no blocking
        self.token_block = int(meta.get("token_block", 1))
        self._warned: set[str] = set()
        self._memo: dict[tuple, float] = {}

        dec = df[df["kind"] == "decode"]
        pre = df[df["kind"] == "prefill"]
        head = df[df["kind"] == "head"]
        d_axes, d = self._table(dec, ["batch", "q", "context"], "decode")
        p_axes, p = self._table(pre, ["batch", "q"], "prefill")
        ctx = (2,)  # the context axis is interpolated linearly
        self.decode_total = _Surface("decode", d_axes, d["total_s"], _decode_features, True, ctx)
        self.decode_layer = _Surface("decode layer", d_axes, d["layer_s"], _decode_features, True, ctx)
        self.decode_rest = _Surface("decode rest", d_axes, d["rest_s"], _rest_features_3, False, ctx)
        self.decode_head = _Surface("decode head", d_axes, d["head_s"], _decode_features, True, ctx)
        self.prefill_total = _Surface("prefill", p_axes, p["total_s"], _prefill_features, True)
        self.prefill_layer = _Surface("prefill layer", p_axes, p["layer_s"], _prefill_features, True)
        self.prefill_rest = _Surface("prefill rest", p_axes, p["rest_s"], _rest_features_2, False)
        self.prefill_head = _Surface("prefill head", p_axes, p["head_s"], _prefill_head_features, True)
        if len(head):
            h_axes, h = self._table(head, ["batch", "rows"], "head")
            self.head = _Surface("head", h_axes, h["total_s"], _head_features, True)
        else:
            self.head = None

    def _table(self, part, keys: list[str], kind: str):
        axes = [np.array(sorted(part[k].unique()), dtype=float) for k in keys]
        for k, a in zip(keys, axes):
            if len(a) < 2:
                raise InputError(self.source, f"{kind}.{k}", "need at least 2 grid values")
            if a[0] <= 0:
                raise InputError(self.source, f"{kind}.{k}", "grid values must be positive")
        shape = tuple(len(a) for a in axes)
        if len(part) != int(np.prod(shape)) or part.duplicated(keys).any():
            raise InputError(self.source, kind, f"grid is not rectangular over {keys} ({len(part)} rows for {shape})")
        srt = part.sort_values(keys)
        values = {c: srt[c].to_numpy(dtype=float).reshape(shape)
                  for c in ("total_s", "layer_s", "head_s", "rest_s")}
        return axes, values

    @classmethod
    def load(cls, path: Path) -> "ProfileCostModel":
        df, meta = read_profile(Path(path))
        return cls(df, meta, str(path))

    # ----------------------------------------------------------------------------------
    def _warn(self, surface: _Surface, names: tuple[str, ...], out: list[int], x) -> None:
        for i in out:
            key = names[i]
            if key in self._warned:
                continue
            self._warned.add(key)
            warnings.warn(
                f"{self.source}: {key}={x[i]:g} is outside the measured grid "
                f"[{surface.lo[i]:g}, {surface.hi[i]:g}]; extrapolating with a fitted form "
                "(warned once per axis)",
                stacklevel=5,
            )

    def _eval(self, surface: _Surface, names: tuple[str, ...], *x: float) -> float:
        v, out = surface(*x)
        if out:
            self._warn(surface, names, out, x)
        return v

    def decode_split(self, batch: int, q: int, context: int) -> dict[str, float]:
        """A decode point's timing columns (total_s, layer_s, rest_s, head_s) read off the
        measured surfaces, unblocked: what a grid row at that point would hold."""
        names, x = ("batch", "q", "context"), (float(batch), float(q), float(context))
        return {col: self._eval(surf, names, *x) for col, surf in (
            ("total_s", self.decode_total), ("layer_s", self.decode_layer), ("rest_s", self.decode_rest),
            ("head_s", self.decode_head))}

    def head_s(self, tokens: int, rows: int) -> float:
        """The LM head alone over `tokens` hidden states with `rows` rows."""
        if self.head is None:
            raise InputError(self.source, "head", "profile has no head rows; cannot price head_rows")
        return self._eval(self.head, ("head tokens", "head rows"), float(tokens), float(rows))

    def latency_s(self, phase: str, batch: int, q: int, context: int,
                  layers: int | None = None, head_rows: int | None = None,
                  logits: int | None = None) -> float:
        key = (phase, batch, q, round(context), layers, head_rows, logits)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        v = self._latency(phase, batch, q, key[3], layers, head_rows, logits)
        self._memo[key] = v
        return v

    def _blocked(self, batch: int, q: float) -> float:
        """Query tokens per sequence as the GEMMs see them: above two blocks (32 rows with AMX)
        rounded up to whole blocks. Up to 32 rows a bf16 GEMM costs about the same whatever the
        count (the linears of Qwen2.5-1.5B: 140 ms at 16 rows, 155 ms at 32, 194 ms at 33; a
        blocked 2 x 9 read 17% high); above, rows cost by the block (36 costs what 48 does)."""
        tokens = batch * q
        if self.token_block > 1 and tokens > 2 * self.token_block:
            return math.ceil(tokens / self.token_block) * self.token_block / batch  # may be fractional
        return q

    def _latency(self, phase, batch, q, context, layers, head_rows, logits=None) -> float:
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} not one of {PHASES}")
        if batch < 1 or q < 1:
            raise ValueError(f"batch={batch}, q={q}: both must be >= 1")
        if layers is not None and not 0 <= layers <= self.num_layers:
            raise ValueError(f"layers={layers} outside 0..{self.num_layers}")
        if head_rows is not None and not 1 <= head_rows <= self.vocab_size:
            raise ValueError(f"head_rows={head_rows} outside 1..{self.vocab_size}")
        tokens = batch * q
        few = phase == "decode" and logits is not None and 1 <= logits < q  # logits of a few rows only
        q = self._blocked(batch, q)
        if phase == "decode":
            x = (float(batch), float(q), float(max(context, 1)))
            names = ("batch", "q", "context")
            total, layer, rest, head = (self.decode_total, self.decode_layer,
                                        self.decode_rest, self.decode_head)
            head_tokens = tokens
            if few:  # the head as timed inside a forward of `logits` query tokens
                xh = (float(batch), float(self._blocked(batch, logits)), x[2])
                head_tokens = batch * logits
                if layers is None and head_rows is None:
                    t = self._eval(total, names, *x) - self._eval(head, names, *x) + self._eval(head, names, *xh)
                    return max(t, 1e-6)
        else:
            # Prefill ignores `context` (chunked prefill over a cache is priced as a fresh one).
            x = (float(batch), float(q))
            names = ("prefill batch", "prompt length")
            total, layer, rest, head = (self.prefill_total, self.prefill_layer,
                                        self.prefill_rest, self.prefill_head)
            head_tokens = batch  # logits of the last prompt token only
        if layers is None and head_rows is None:
            return max(self._eval(total, names, *x), 1e-6)
        n = self.num_layers if layers is None else layers
        h = self._eval(head, names, *(xh if few else x))  # the full head as timed inside a forward
        if head_rows is not None and head_rows != self.vocab_size:
            # K rows: scale by the head-alone ratio, so the in-forward cache state is kept
            h *= self.head_s(head_tokens, head_rows) / self.head_s(head_tokens, self.vocab_size)
        t = max(self._eval(rest, names, *x), 0.0) + n * self._eval(layer, names, *x) + h
        return max(t, 1e-6)
