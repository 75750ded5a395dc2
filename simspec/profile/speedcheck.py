"""A spot check, per phase, that a profile prices this machine's speed, before a live validation.

Two machines can report the same processor name and ISA (a cloud "Intel(R) Xeon(R)
Processor") and still run a model at other speeds: another generation, clock, memory or host
load. The sidecar comparison (simspec.machine) cannot see that; seen here, the shipped Qwen
profiles of one such Xeon priced another's decode step 47% and its 512-token prefill 3.2x
off, under identical names. So `validate` times a few points of each phase (prefill, plain
decode, multi-token verification; at batch 1 and 4) with the loaded model, through the timing
protocol (simspec.timing), and reports each point's measured / profiled ratio with its noise
figure. A phase is flagged by name when one of its points misses by more than TOLERANCE: the
median over the points it once reported read "1.01x" while a 128-token prefill measured 55%
above the profile. A warning, not a refusal; the figures go into the result's JSON.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from simspec.profile.calibrate import Point, time_points
from simspec.profile.costmodel import ProfileCostModel
from simspec.timing.protocol import Protocol, Result

DECODE = ((1, 1, 512), (4, 1, 512), (1, 5, 512), (4, 5, 512))  # q 5: verifying gamma 4
PREFILL = ((1, 128), (4, 64))
TOLERANCE = 0.15  # |measured / profiled - 1| of a point past which its phase is off
# A few seconds to under a minute: passes over at least 15 s, so one slow phase is not all it sees.
PROTOCOL = Protocol(min_passes=4, max_passes=12, budget_s=45.0, min_seconds=15.0)


def phase(p: Point) -> str:
    """"prefill", "decode" (one query token) or "verify" (several), with the batch: "verify b4"."""
    name = "prefill" if p.kind == "prefill" else ("decode" if p.q == 1 else "verify")
    return f"{name} b{p.batch}"


def _shape(p: Point) -> str:
    return f"len{p.q}" if p.kind == "prefill" else f"q{p.q} ctx{p.context}"


@dataclass
class SpeedCheck:
    profile: str
    points: list[Point]
    protocol: dict | None = None  # the timing protocol's summary (timing.protocol.Result.summary)
    tolerance: float = TOLERANCE

    @property
    def ratio(self) -> float:
        """Median of measured / profiled over the points (1.0: the profile prices this machine);
        a summary only: `phases` and `off_phases` are what the check judges by."""
        return statistics.median(p.measured_s / p.profiled_s for p in self.points)

    def phases(self) -> dict[str, list[Point]]:
        out: dict[str, list[Point]] = {}
        for p in self.points:
            out.setdefault(phase(p), []).append(p)
        return out

    def off_phases(self) -> list[str]:
        """The phases with a point whose ratio is off by more than the tolerance, in point order."""
        return [name for name, pts in self.phases().items()
                if any(abs(p.measured_s / p.profiled_s - 1) > self.tolerance for p in pts)]

    @property
    def off(self) -> bool:
        return bool(self.off_phases())

    def _figures(self, pts: list[Point]) -> str:
        return ", ".join(f"{_shape(p)} {p.measured_s / p.profiled_s:.2f}x ({p.measured_s * 1e3:.1f} ms vs "
                         f"{p.profiled_s * 1e3:.1f}, noise {p.noise:.0%})" for p in pts)

    def unsettled(self) -> str:
        """"" when the timing's halves agreed, else a note of why it stopped and how far they were."""
        pr = self.protocol
        if not pr or pr.get("stop") == "agreed":
            return ""
        halves = pr.get("halves_disagreement", {})
        med, mx = halves.get("median"), halves.get("max")
        far = "" if med is None else f", odd and even passes {med:.1%} apart" + (
            "" if mx is None else f" (median; max {mx:.1%})")
        recorded = "tolerance" in pr and "tolerance_max" in pr
        # the halves agreed, but before agreement could count: too few passes or seconds
        if recorded and Protocol.from_dict(pr).within(med, mx):
            passes, min_passes = pr.get("passes"), pr.get("min_passes")
            seconds, min_s = pr.get("seconds"), pr.get("min_seconds")
            if passes is not None and min_passes and passes < min_passes:
                return (f" [the timing stopped by {pr['stop']}{far}: {passes} passes fit, under the "
                        f"{min_passes} agreement needs]")
            if seconds is not None and min_s and seconds < min_s:
                return (f" [the timing stopped by {pr['stop']}{far}: the passes spanned {seconds:.0f} s, under the "
                        f"{min_s:g} s agreement needs]")
        return f" [the timing stopped by {pr['stop']}{far}: the host was not steady]"

    def line(self) -> str:
        """The warning: the off phases by name, each with its points' ratios and noise figures."""
        ph = self.phases()
        off = "; ".join(f"{name} {self._figures(ph[name])}" for name in self.off_phases())
        return (f"{self.profile} prices this machine off in {', '.join(self.off_phases())} "
                f"(measured / profiled beyond {self.tolerance:.0%}: {off}; median over all points "
                f"{self.ratio:.2f}x): it was captured on a machine of another speed or state; calibrate it "
                f"(simspec profile --calibrate {self.profile} --out NEW){self.unsettled()}")

    def summary(self) -> str:
        """One line per check that passed: every phase's ratio(s)."""
        return (f"speed check: {self.profile} prices this machine within {self.tolerance:.0%} in every phase "
                "(measured / profiled: " + "; ".join(
                    f"{name} " + ", ".join(f"{p.measured_s / p.profiled_s:.2f}x" for p in pts)
                    for name, pts in self.phases().items()) + ")" + self.unsettled())

    def as_dict(self) -> dict:
        return {"profile": self.profile, "ratio": round(self.ratio, 4), "off": self.off,
                "tolerance": self.tolerance, "off_phases": self.off_phases(),
                "phases": {name: [{"shape": _shape(p), "ratio": round(p.measured_s / p.profiled_s, 4),
                                   "noise": round(p.noise, 4), "off": abs(p.measured_s / p.profiled_s - 1) > self.tolerance}
                                  for p in pts] for name, pts in self.phases().items()},
                "protocol": self.protocol, "points": [p.as_dict() for p in self.points]}


def check(lm, profile: str, path, proto: Protocol = PROTOCOL) -> SpeedCheck:
    """Time DECODE and PREFILL with the loaded model `lm` through the timing protocol and price
    them with the profile at `path` (with this machine's GEMM row blocking, as calibration does)."""
    from simspec.profile.capture import gemm_row_block
    from simspec.profile.schema import read_profile

    df, meta = read_profile(path)
    priced = ProfileCostModel(df, dict(meta, token_block=gemm_row_block(lm.device, lm.dtype)), str(path))
    decode, prefill = within_grid(meta.get("grid"))
    pts, res = time_points(lm, decode, prefill, proto=proto)
    return priced_check(profile, priced, pts, res)


def within_grid(grid: dict | None) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """DECODE and PREFILL moved inside a profile's grid: a batch, q, context or prompt length
    past the grid's largest becomes that largest (a capture cut to one plan, say batch <= 2,
    would otherwise be judged on a price it extrapolates, and flagged for it)."""
    if not grid:
        return list(DECODE), list(PREFILL)
    top = {k: max(grid[k]) for k in ("batch", "q", "context", "prefill_batch", "prefill_len") if grid.get(k)}
    cap = lambda k, v: min(v, top.get(k, v))  # noqa: E731
    decode = list(dict.fromkeys((cap("batch", b), cap("q", q), cap("context", c)) for b, q, c in DECODE))
    prefill = list(dict.fromkeys((cap("prefill_batch", b), cap("prefill_len", n)) for b, n in PREFILL))
    return decode, prefill


def priced_check(profile: str, priced: ProfileCostModel, pts: list[Point], res: Result | None = None) -> SpeedCheck:
    """The check of timed points `pts` against the profile `priced` (no clock involved)."""
    for p in pts:
        p.profiled_s = priced.latency_s(p.kind, p.batch, p.q, p.context)
    return SpeedCheck(profile, pts, None if res is None else res.summary())
