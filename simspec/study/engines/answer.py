"""The study's per-batch answer, as one engine can run it: its drafter, K per batch bucket,
the best single K, and whether a per-batch schedule is worth exporting at all.

A schedule is not free: vLLM users measured it costing 6.6-21.6% TPOT (vLLM issue #49548:
K changes between steps defeat CUDA-graph reuse, lookahead slots stay reserved). So the
schedule is recommended only when, in some batch bucket, its predicted throughput beats the
best single K by at least SCHEDULE_MIN_GAIN, the lowest of those overheads; otherwise one K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simspec.study.schedule import Point, best_per_bucket, ranges

SCHEDULE_MIN_GAIN = 0.066  # vLLM #49548: the schedule itself cost 6.6-21.6% TPOT


@dataclass
class Bucket:
    batch: int
    best: Point          # the engine's drafter (or plain decoding) at its best gamma here
    single: Point        # the same batch at the best single K
    gain: float          # best / single throughput - 1


@dataclass
class Answer:
    wanted: str | None            # the study's drafter
    kind: str | None              # the drafter the engine runs (None: none of the study's)
    per: dict[int, Point]         # best point per batch bucket (this drafter or plain)
    single_k: int                 # the best single K (0: speculation does not pay overall)
    buckets: list[Bucket] = field(default_factory=list)
    threshold: float = SCHEDULE_MIN_GAIN

    @property
    def fell_back(self) -> bool:
        return self.kind is not None and self.wanted not in (None, "none") and self.wanted != self.kind

    @property
    def lacking(self) -> bool:
        """The engine runs none of the study's drafters (the study's best is one it lacks)."""
        return self.kind is None and self.wanted not in (None, "none")

    def lacks_line(self, title: str) -> str:
        return f"{title} has no {self.wanted!r} drafter (nor another of the study's)"

    @property
    def max_gain(self) -> float:
        return max((b.gain for b in self.buckets), default=0.0)

    @property
    def schedule_pays(self) -> bool:
        return len({p.gamma for p in self.per.values()}) > 1 and self.max_gain >= self.threshold

    @property
    def ranges(self) -> list[list[int]]:
        """The schedule [[lo, hi, K], ...] (contiguous, equal neighbours merged)."""
        return ranges(self.per)

    @property
    def max_k(self) -> int:
        """The most draft tokens the exported config ever asks for."""
        if self.schedule_pays:
            return max(p.gamma for p in self.per.values())
        return self.single_k

    def k_at(self, batch: int) -> int:
        """The K the exported config runs at `batch` (the schedule's, or the single K)."""
        if not self.schedule_pays:
            return self.single_k
        rs = self.ranges
        for lo, hi, k in rs:
            if lo <= batch <= hi:
                return k
        return rs[-1][2] if batch > rs[-1][1] else rs[0][2]

    @property
    def speculates(self) -> bool:
        return self.kind is not None and self.max_k > 0


def engine_drafter(best_kind: str | None, pts: list[Point], runnable: set[str]) -> str | None:
    """The study's drafter if the engine runs it, else the runnable drafter whose per-batch
    schedule delivers the most (summed over buckets)."""
    if best_kind in runnable:
        return best_kind
    scores = {}
    for kind in sorted(runnable):
        per = best_per_bucket(pts, kind)
        if any(p.drafter == kind for p in per.values()):
            scores[kind] = sum(p.throughput_tok_s for p in per.values())
    return max(scores, key=scores.get) if scores else None


def single_k(pts: list[Point], kind: str | None, per: dict[int, Point]) -> tuple[int, dict[int, Point]]:
    """The one K (0 = plain decoding) with the highest throughput relative to each bucket's best,
    summed over the buckets (ties: the smaller K), and its point in every bucket. A K missing
    from some bucket (the simulator refused it there) cannot be the single K."""
    plain = {p.batch: p for p in pts if p.drafter == "none"}
    cands: dict[int, dict[int, Point]] = {0: plain}
    for p in pts:
        if kind is not None and p.drafter == kind:
            cands.setdefault(p.gamma, {})[p.batch] = p
    best_k, best_score, best_pts = 0, -1.0, plain
    for k in sorted(cands):
        at = cands[k]
        if set(at) != set(per):
            continue
        score = sum(at[b].throughput_tok_s / per[b].throughput_tok_s for b in per if per[b].throughput_tok_s > 0)
        if score > best_score * (1 + 1e-12):
            best_k, best_score, best_pts = k, score, at
    return best_k, best_pts


def answer(best: dict, pts: list[Point], runnable: set[str], threshold: float = SCHEDULE_MIN_GAIN) -> Answer:
    wanted = best.get("drafter")
    kind = engine_drafter(wanted, pts, runnable)
    per = best_per_bucket(pts, kind) if kind is not None else best_per_bucket(
        [p for p in pts if p.drafter == "none"])
    k, at = single_k(pts, kind, per)
    buckets = []
    for b, p in per.items():
        s = at.get(b, p)
        gain = p.throughput_tok_s / s.throughput_tok_s - 1 if s.throughput_tok_s > 0 else 0.0
        buckets.append(Bucket(b, p, s, gain))
    return Answer(wanted, kind, per, k, buckets, threshold)
