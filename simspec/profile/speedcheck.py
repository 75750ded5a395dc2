"""A few seconds' spot check that a profile prices this machine's speed, before a live validation.

Two machines can report the same processor name and ISA (a cloud "Intel(R) Xeon(R)
Processor") and still run a model at other speeds: another generation, clock, memory or host
load. The sidecar comparison (simspec.machine) cannot see that; seen here, the shipped Qwen
profiles of one such Xeon priced another's decode step 47% and its 512-token prefill 3.2x
off, under identical names. So `validate` times three points with the loaded model and warns
when the profile misses them by more than SLOW: a warning, not a refusal, since the check is
itself a timing on a machine that drifts ~10%; the figures go into the result's JSON.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from simspec.profile.calibrate import Point, time_points
from simspec.profile.costmodel import ProfileCostModel

DECODE = ((1, 1, 512), (1, 4, 512))
PREFILL = ((1, 128),)
SLOW = 0.25  # |measured / profiled - 1| of the points' median past which the profile is off


@dataclass
class SpeedCheck:
    profile: str
    points: list[Point]

    @property
    def ratio(self) -> float:
        """Median of measured / profiled over the points (1.0: the profile prices this machine)."""
        return statistics.median(p.measured_s / p.profiled_s for p in self.points)

    @property
    def off(self) -> bool:
        return abs(self.ratio - 1.0) > SLOW

    def line(self) -> str:
        pts = ", ".join(f"{p.kind} b{p.batch} {'len' if p.kind == 'prefill' else 'q'}{p.q}"
                        f"{f' ctx{p.context}' if p.kind == 'decode' else ''} "
                        f"{p.measured_s * 1e3:.1f} ms vs {p.profiled_s * 1e3:.1f}" for p in self.points)
        return (f"{self.profile} prices this machine {self.ratio:.2f}x off (measured vs profiled: {pts}): "
                f"it was captured on a machine of another speed; calibrate it "
                f"(simspec profile --calibrate {self.profile} --out NEW)")

    def as_dict(self) -> dict:
        return {"profile": self.profile, "ratio": round(self.ratio, 4), "off": self.off,
                "points": [p.as_dict() for p in self.points]}


def check(lm, profile: str, path) -> SpeedCheck:
    """Time DECODE and PREFILL with the loaded model `lm` and price them with the profile at `path`
    (with this machine's GEMM row blocking, as calibration does)."""
    from simspec.profile.capture import gemm_row_block
    from simspec.profile.schema import read_profile

    df, meta = read_profile(path)
    priced = ProfileCostModel(df, dict(meta, token_block=gemm_row_block(lm.device, lm.dtype)), str(path))
    pts = time_points(lm, priced, DECODE, PREFILL)  # the profile's repeat protocol (its grid meta)
    for p in pts:
        p.profiled_s = priced.latency_s(p.kind, p.batch, p.q, p.context)
    return SpeedCheck(profile, pts)
