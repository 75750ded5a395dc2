"""The timing protocol for noisy hosts: interleaved passes until two halves agree, or a budget ends.

A protocol run measures a set of points in passes. Each pass measures every point once, in a
new random order (seeded), so the repetitions of one point are spread across the whole run and
never back to back: a slow phase of seconds to minutes then slows a few passes of every point
instead of all repetitions of the points it happened to overlap. Points that share a costly
setup (a KV cache of one batch and context) form a group: a group's points run together inside
a pass, the groups in random order.

After each pass, the stop rule splits the passes into two independent halves (odd and even
passes), takes each half's fastest-state estimate per point (timing.estimate) and their relative
disagreement |a - b| / min(a, b). The run stops when, after at least `min_passes` passes and
`min_seconds`, the median disagreement over the points is <= `tolerance` and the largest
<= `tolerance_max` ("agreed"); when one more pass, at the mean pass time so far, would end past `budget_s`
("budget"); or after `max_passes` ("max_passes"). The result says which, so a profile or
report shows whether its figures met the tolerance. The halves interleave in time, so they
agree when every point has met the fast state in both -- and also when every pass so far sat
in one slow phase. Hence `min_seconds`: agreement counts only once the passes span longer than
the phases the host is known for (seconds to over a minute here), so the minimum has had a fast
phase to find. A sustained slow state longer than the whole run stays invisible to any
estimator over that run (the drift probes of `--check` compare with the profile instead).

The clock and `measure(point) -> seconds` are arguments: tests drive the protocol with fake
clocks and scripted slow phases, and any primitive (a hooked forward, a plain call) plugs in.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Generic, Hashable, Sequence, TypeVar

from simspec.timing import estimate

K = TypeVar("K", bound=Hashable)
NAME = "interleaved passes, fastest state, split-half stop"
STOPS = ("agreed", "budget", "max_passes")


@dataclass(frozen=True)
class Protocol:
    """The settings of one protocol run (recorded beside what it measured)."""

    tolerance: float = 0.02  # median over the points of the halves' disagreement
    tolerance_max: float = 0.05  # the largest point's
    min_passes: int = 4  # two per half before agreement counts (it needs 2 at least)
    max_passes: int = 12
    budget_s: float = 120.0
    min_seconds: float = 0.0  # agreement counts only after the passes span this long
    seed: int = 0

    def problems(self) -> list[tuple[str, str]]:
        """(setting, reason) for each setting out of range (empty: usable)."""
        out = []
        if not 0 <= self.tolerance <= self.tolerance_max:
            out.append(("tolerance", f"{self.tolerance:g} must be >= 0 and <= tolerance_max ({self.tolerance_max:g})"))
        if not self.min_passes >= 1:
            out.append(("min_passes", f"{self.min_passes} must be >= 1 (agreement needs 2 at least)"))
        if not self.max_passes >= max(self.min_passes, 1):
            out.append(("max_passes", f"{self.max_passes} must be >= min_passes ({self.min_passes})"))
        if not self.budget_s > 0:
            out.append(("budget_s", f"{self.budget_s:g} must be > 0"))
        if not 0 <= self.min_seconds <= self.budget_s:
            out.append(("min_seconds", f"{self.min_seconds:g} must be >= 0 and <= budget_s ({self.budget_s:g})"))
        return out

    def within(self, median: float | None, largest: float | None) -> bool:
        """Whether halves that disagree by `median` / `largest` meet the tolerance: the one rule a
        run's stop and a reader of its sidecar (the speed check) both apply."""
        return median is not None and largest is not None and median <= self.tolerance and largest <= self.tolerance_max

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        """The settings a sidecar recorded (unknown keys, such as a run's outcome, ignored)."""
        return cls(**{k: type(getattr(cls(), k))(d[k]) for k in asdict(cls()) if k in d})


@dataclass
class Result(Generic[K]):
    """Every sample of every point (in pass order), the passes' orders and why the run stopped."""

    protocol: Protocol
    points: list[K]
    samples: dict[K, list[float]] = field(default_factory=dict)
    orders: list[list[K]] = field(default_factory=list)
    stop: str = ""
    seconds: float = 0.0

    @property
    def passes(self) -> int:
        return len(self.orders)

    def estimate(self, point: K) -> float:
        return estimate.fastest(self.samples[point])

    def noise(self, point: K) -> float:
        return estimate.noise(self.samples[point])

    def halves(self) -> tuple[float | None, float | None]:
        """(median, max) over the points of the halves' disagreement; (None, None) under two passes."""
        d = [x for x in (estimate.disagreement(self.samples[p]) for p in self.points) if x is not None]
        return (statistics.median(d), max(d)) if d else (None, None)

    def agreed(self) -> bool:
        return self.protocol.within(*self.halves())

    def summary(self) -> dict:
        """What a sidecar or report records: the protocol, its outcome, the noise over the points."""
        med, mx = self.halves()
        spread = sorted(self.noise(p) for p in self.points) if self.passes else []
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {
            "name": NAME, "estimate": "min over passes", "noise_figure": "(median - min) / min per point",
            **self.protocol.to_dict(), "passes": self.passes, "stop": self.stop,
            "seconds": round(self.seconds, 1), "points": len(self.points),
            "halves_disagreement": {"median": r(med), "max": r(mx)},
            "noise": {"median": r(statistics.median(spread)) if spread else None,
                      "p90": r(spread[min(len(spread) - 1, int(0.9 * len(spread)))]) if spread else None,
                      "max": r(spread[-1]) if spread else None},
        }

    def line(self) -> str:
        """One line for a terminal: passes, why it stopped, the halves' disagreement."""
        med, mx = self.halves()
        halves = "n/a (one pass)" if med is None else f"median {med:.1%}, max {mx:.1%}"
        why = {"agreed": "halves agree", "budget": f"time budget {self.protocol.budget_s:g} s",
               "max_passes": f"max {self.protocol.max_passes} passes"}[self.stop]
        return (f"{self.passes} interleaved passes over {len(self.points)} points in {self.seconds:.0f} s, "
                f"stopped by {why} (odd vs even passes disagree {halves}; tolerance "
                f"{self.protocol.tolerance:.0%} / {self.protocol.tolerance_max:.0%})")


def pass_order(points: Sequence[K], rng: random.Random, group: Callable[[K], Hashable] | None,
               previous: K | None) -> list[K]:
    """One pass's order: groups shuffled, points shuffled inside their group; the first point is
    never `previous` (the last one measured) when another could start."""
    groups: dict[Hashable, list[K]] = {}
    for p in points:
        groups.setdefault(group(p) if group else p, []).append(p)
    blocks = list(groups.values())
    rng.shuffle(blocks)
    for b in blocks:
        rng.shuffle(b)
    if previous is not None and blocks[0][0] == previous:
        if len(blocks[0]) > 1:
            blocks[0][0], blocks[0][1] = blocks[0][1], blocks[0][0]
        elif len(blocks) > 1:
            blocks[0], blocks[1] = blocks[1], blocks[0]
    return [p for b in blocks for p in b]


def run(points: Sequence[K], measure: Callable[[K], float], protocol: Protocol = Protocol(),
        clock: Callable[[], float] = time.perf_counter, group: Callable[[K], Hashable] | None = None,
        step: Callable[[str], None] = lambda s: None, label: Callable[[K], str] = str) -> Result[K]:
    """Measure `points` in interleaved passes until the stop rule says so (module docstring).

    `measure(point)` returns one sample in seconds; `group(point)` names the points that run
    together in a pass; `step(text)` is called after each measurement (progress)."""
    bad = protocol.problems()
    if bad:
        raise ValueError(f"protocol {bad[0][0]}: {bad[0][1]}")
    pts = list(dict.fromkeys(points))
    if not pts:
        raise ValueError("no points to measure")
    res: Result[K] = Result(protocol, pts, {p: [] for p in pts})
    rng = random.Random(protocol.seed)
    t0 = clock()
    previous = None
    while True:
        order = pass_order(pts, rng, group, previous)
        for p in order:
            res.samples[p].append(float(measure(p)))
            step(f"pass {res.passes + 1}: {label(p)}")
        res.orders.append(order)
        previous = order[-1]
        elapsed = clock() - t0
        res.seconds = elapsed
        if res.passes >= protocol.min_passes and elapsed >= protocol.min_seconds and res.agreed():
            res.stop = "agreed"
        elif res.passes >= protocol.max_passes:
            res.stop = "max_passes"
        elif elapsed + elapsed / res.passes > protocol.budget_s:
            res.stop = "budget"
        if res.stop:
            return res
