"""Fit a device's roofline efficiencies to a measured profile, and report how well it fits.

The roofline has ten free numbers per device and dtype: bandwidth and FLOP/s efficiency of
each kernel class (gemv: bandwidth only), the per-forward and per-layer overheads, and the
sharpness of the knee between the memory and the compute roof. They
are fitted by least squares on log(predicted / measured) over every decode and prefill point
of the profile's grid (relative error, so a 20 ms point counts as much as a 2 s one), on the
forward's total and on the per-layer and LM-head times the profile measured inside it, and
reported against that grid and against the profile's own holdout (its `*.check*.json`: off-grid
points timed live, including early exits and trimmed heads). A fit is a fit to the machine
that captured the profile, whatever machine runs the fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from simspec.devices import arch
from simspec.devices.catalog import DeviceInfo, Efficiency
from simspec.devices.roofline import RooflineCost

# (kernel, field) of each fitted efficiency, in parameter order; then the two overheads
EFF_PARAMS = (("gemv", "bw"), ("gemm", "bw"), ("gemm", "flops"), ("attention", "bw"),
              ("attention", "flops"), ("head", "bw"), ("head", "flops"))


@dataclass(frozen=True)
class FitReport:
    profile: str
    device: DeviceInfo            # with the fitted efficiencies and overheads
    grid_median: float            # |relative error| over the profile's decode + prefill grid
    grid_max: float
    grid_points: int
    holdout_median: float | None  # over its check reports' points (None: no check report)
    holdout_max: float | None
    holdout_points: int

    def as_dict(self) -> dict:
        eff = {k: {"bw": e.bw, "flops": e.flops} for k, e in self.device.efficiency.items()}
        return {"profile": self.profile, "device": self.device.name,
                "efficiency": eff, "overhead_us": self.device.overhead_s * 1e6,
                "layer_overhead_us": self.device.layer_overhead_s * 1e6, "sharpness": self.device.sharpness,
                "grid": {"points": self.grid_points, "median_abs_error": self.grid_median,
                         "max_abs_error": self.grid_max},
                "holdout": {"points": self.holdout_points, "median_abs_error": self.holdout_median,
                            "max_abs_error": self.holdout_max}}


def _device_with(base: DeviceInfo, x: np.ndarray) -> DeviceInfo:
    eff: dict[str, dict[str, float]] = {}
    for (kern, fld), v in zip(EFF_PARAMS, np.exp(x[:len(EFF_PARAMS)])):
        eff.setdefault(kern, {"bw": 1.0, "flops": 1.0})[fld] = float(v)
    return base.with_efficiency({k: Efficiency(**v) for k, v in eff.items()},
                                overhead_s=float(x[-3]), layer_overhead_s=float(x[-2]), sharpness=float(x[-1]))


def _points(df) -> list[tuple[str, int, int, int, float]]:
    rows = df[df["kind"].isin(["decode", "prefill"])]
    return [(str(r.kind), int(r.batch), int(r.q), int(r.context), float(r.total_s)) for r in rows.itertuples()]


def _parts(df) -> np.ndarray:
    """Measured (layer, head, rest) seconds of each decode/prefill point, as `_points` orders them."""
    rows = df[df["kind"].isin(["decode", "prefill"])]
    return rows[["layer_s", "head_s", "rest_s"]].to_numpy(dtype=float)


def _predict_parts(model: RooflineCost, pts) -> np.ndarray:
    out = []
    n = model.dims.layers
    for k, b, q, c, _ in pts:
        br = model.breakdown(k, b, q, c)
        out.append(((br["linear"] + br["attention"] + br["comm"]) / n + model.device.layer_overhead_s,
                    br["head"], model.device.overhead_s + br["embedding"]))
    return np.array(out)


def _predict(model: RooflineCost, pts) -> np.ndarray:
    return np.array([model.latency_s(k, b, q, c) for k, b, q, c, _ in pts])


def fit_profile(path: str | Path, device: DeviceInfo) -> FitReport:
    """Fit `device`'s efficiencies to the profile at `path` and report grid and holdout errors."""
    from simspec.profile.schema import read_profile  # torch-free

    path = Path(path)
    df, meta = read_profile(path)
    dims = arch.resolve(str(path))
    dtype = meta["dtype"]
    pts = _points(df)
    meas = np.array([p[-1] for p in pts])
    block = int(meta.get("token_block", device.gemm_row_block))
    base = DeviceInfo(**{**device.__dict__, "gemm_row_block": block})

    parts = np.maximum(_parts(df), 1e-6)

    def resid(x: np.ndarray) -> np.ndarray:
        # the total, and the per-layer and head times the profile splits each forward into:
        # without the split, weight reads and fixed overheads are the same constant to a fit
        m = RooflineCost(dims, _device_with(base, x), dtype)
        split = np.log(np.maximum(_predict_parts(m, pts), 1e-7)[:, :2] / parts[:, :2])
        return np.r_[np.log(_predict(m, pts) / meas), split.ravel()]

    # One model's weight reads cost the same constant in every forward, so a fit cannot tell
    # them from a fixed cost per layer: the per-layer overhead is capped at 10% of the fastest
    # layer measured (norms, rotary and adds are the small part of a layer), the per-forward
    # one at the fastest `rest` measured, and efficiencies at 2x the nominal peak.
    layer_cap = 0.1 * float(parts[:, 0].min())
    rest_cap = float(parts[:, 2].min())
    x0 = np.array([math.log(0.5)] * len(EFF_PARAMS) + [0.5 * rest_cap, 0.5 * layer_cap, 2.0])
    lo = np.array([math.log(1e-3)] * len(EFF_PARAMS) + [0.0, 0.0, 1.0])
    hi = np.array([math.log(2.0)] * len(EFF_PARAMS) + [rest_cap, layer_cap, 8.0])
    sol = least_squares(resid, x0, bounds=(lo, hi), x_scale=np.r_[[1.0] * len(EFF_PARAMS), max(rest_cap, 1e-6), max(layer_cap, 1e-7), 1.0])
    fitted = _device_with(base, sol.x)
    model = RooflineCost(dims, fitted, dtype, estimate=False)
    grid_err = np.abs(_predict(model, pts) / meas - 1)
    hold = _holdout(path, model)
    return FitReport(str(path), fitted, float(np.median(grid_err)), float(grid_err.max()), len(pts),
                     float(np.median(hold)) if len(hold) else None,
                     float(hold.max()) if len(hold) else None, len(hold))


def _holdout(path: Path, model: RooflineCost) -> np.ndarray:
    """|relative error| on every live point of the profile's check reports (all seeds)."""
    errs: list[float] = []
    for check in sorted(path.parent.glob(path.stem + ".check*.json")):
        for p in json.loads(check.read_text()).get("points", []):
            phase = "prefill" if p["kind"] == "prefill" else "decode"
            t = model.latency_s(phase, int(p["batch"]), int(p["q"]), int(p["context"]),
                                layers=p.get("layers"), head_rows=p.get("head_rows"))
            errs.append(abs(t / float(p["measured_s"]) - 1))
    return np.array(errs)


_FITTED: dict[tuple[str, int, str], DeviceInfo] = {}


def fitted_device(profile: str, device: DeviceInfo) -> DeviceInfo:
    """`device` with efficiencies fitted to `profile` (cached: a study fits once)."""
    key = (profile, Path(profile).stat().st_mtime_ns, repr(device))
    if key not in _FITTED:
        _FITTED[key] = fit_profile(profile, device).device
    return _FITTED[key]
