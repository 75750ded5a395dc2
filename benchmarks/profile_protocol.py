"""The timing protocol run through capture, --check and --calibrate: what it reports on this
machine's clock.

Run: .venv/bin/python benchmarks/profile_protocol.py [--strict]   (about 20-60 s on the 2-core VM)

Part 1 drives the real capture / check / calibrate code with scripted forwards (no model: each
point's n-th sample is its fast time, or twice it in a "slow phase") and prints, per path, the
passes run, the stop reason and how far the estimate is from the scripted fast time. The stop
rule's budget and minimum span read the real clock, so on a stalled VM a path can stop by
budget: that is why this is a script and not a test (it was tests/test_profile_protocol.py).
tests/test_timing_protocol.py checks the estimate and the stop rule on fake clocks.
Part 2 times a real tiny model's quick capture through the protocol and prints its stop reason,
passes, the odd/even halves' disagreement and the noise figures: the host's noise floor now.
Exit code 0 unless --strict is given and a part-1 expectation does not hold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # profhelpers: a synthetic profile for --check's predictions


def fast_time(f) -> float:
    """A made-up fast-state time per point, growing with the tokens and the context."""
    return 1e-3 * (1 + f.batch * f.q + f.context / 1000 + (getattr(f, "rows", None) or 0) / 1e4)


class ScriptedForwards:
    """simspec.profile.forwards.Forwards' interface over no model: a point's n-th sample is 2x its
    fast time when n is even (a slow phase every other pass), or only its first one (`first_slow`)."""

    made: list["ScriptedForwards"] = []
    first_slow = False

    def __init__(self, lm, points, seed=0, settle_q=None, around=None):
        self.points = list(points)
        self.splits: dict = {}
        ScriptedForwards.made.append(self)

    def __call__(self, f) -> float:
        from simspec.profile.timer import Split

        n = len(self.splits.get(f, []))
        slow = n == 0 if self.first_slow else n % 2 == 0
        t = fast_time(f) * (2.0 if slow else 1.0)
        self.splits.setdefault(f, []).append(Split(t, t / 10, t / 5, t / 2))
        return t

    def measured(self, f):
        from simspec.profile import forwards

        return forwards.measured(self.splits[f])

    def close(self) -> None:
        pass


def scripted(strict_failures: list[str]) -> None:
    """Part 1, with simspec.profile's Forwards swapped for ScriptedForwards while it runs."""
    from simspec.profile import capture, check, forwards

    real = forwards.Forwards
    for mod in (forwards, capture, check):
        mod.Forwards = ScriptedForwards
    try:
        _scripted_paths(strict_failures)
    finally:
        for mod in (forwards, capture, check):
            mod.Forwards = real


def _scripted_paths(strict_failures: list[str]) -> None:
    from profhelpers import write_synthetic
    from simspec.profile import calibrate, capture, check
    from simspec.profile.costmodel import ProfileCostModel
    from simspec.profile.grid import QUICK
    from simspec.timing.protocol import Protocol

    lm = SimpleNamespace(dims=SimpleNamespace(vocab=1000), model=None, device="cpu")
    proto = Protocol(min_passes=4, max_passes=6, budget_s=600.0)

    def line(path: str, res, worst: float, expect: str) -> None:
        ok = res.stop == expect and worst < 1e-9
        print(f"{path:<10} passes {res.passes}, stop {res.stop} (expected {expect}), {res.seconds:.2f} s; "
              f"estimate vs scripted fast time: worst {worst:.1e} relative  {'ok' if ok else 'DIFFERENT'}")
        if not ok:
            strict_failures.append(path)

    ScriptedForwards.first_slow = True  # one slow pass, then steady: the halves agree
    rows, res = capture.capture(lm, QUICK, proto=proto)
    worst = max(abs(r["total_s"] / fast_time(SimpleNamespace(batch=r["batch"], q=r["q"], context=r["context"],
                                                             rows=r["rows"] if r["kind"] == "head" else 0)) - 1)
                for r in rows)
    blocks_whole = all(sum(a != b for a, b in zip(bl, bl[1:])) == len(set(bl)) - 1
                       for bl in ([f.group() for f in order] for order in res.orders))
    if len(rows) != QUICK.with_vocab(1000).points() or not blocks_whole:  # a row per point; KV blocks contiguous
        strict_failures.append("capture rows/blocks")
        print("capture: a row per grid point, or each pass's (batch, context) blocks contiguous: DIFFERENT")
    line("capture", res, worst, "agreed")
    ScriptedForwards.first_slow = False  # slow every other pass: the halves never agree
    pts, res = calibrate.time_points(lm, [(1, 1, 512), (1, 4, 512)], [(1, 32)], proto=proto)
    worst = max(abs(p.measured_s / fast_time(SimpleNamespace(batch=p.batch, q=p.q, context=p.context)) - 1)
                for p in pts)
    if calibrate.pass_spread(pts)["steady"] is not False:  # odd passes 2x even: not steady
        strict_failures.append("calibrate spread")
        print("calibrate: passes 2x apart read as steady: DIFFERENT")
    line("calibrate", res, worst, "max_passes")
    with tempfile.TemporaryDirectory() as d:
        cm = ProfileCostModel.load(write_synthetic(Path(d) / "p.parquet"))
        results, res = check.run_check(lm, cm, points=30, repeats=3)
    worst = max(abs(r.measured_s / fast_time(SimpleNamespace(batch=r.batch, q=r.q, context=r.context,
                                                             rows=(r.head_rows or 0) * (r.kind == "partial"))) - 1)
                for r in results)
    line("check", res, worst, "max_passes")


def real_capture() -> None:
    from simspec.models import load_model
    from simspec.profile.capture import QUICK_PROTOCOL, capture
    from simspec.profile.grid import QUICK

    lm = load_model("tiny:llama", dtype="fp32", device="cpu")
    t0 = time.perf_counter()
    _rows, res = capture(lm, QUICK, proto=QUICK_PROTOCOL)
    s = res.summary()
    print(f"tiny:llama quick capture, real clock: {time.perf_counter() - t0:.1f} s, passes {s['passes']}, "
          f"stop {s['stop']}; odd/even halves disagree by median {s['halves_disagreement']['median']:.1%}, "
          f"max {s['halves_disagreement']['max']:.1%}; noise (median-min)/min over the points: "
          f"median {s['noise']['median']:.1%}, p90 {s['noise']['p90']:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strict", action="store_true", help="exit 1 when a scripted path stops otherwise than expected")
    ap.add_argument("--no-real", action="store_true", help="skip part 2 (the tiny model's capture)")
    args = ap.parse_args()
    failures: list[str] = []
    scripted(failures)
    if not args.no_real:
        real_capture()
    if failures and args.strict:
        sys.exit(f"not as expected: {', '.join(failures)}")


if __name__ == "__main__":
    main()
