"""Capture re-times a decode point slower than one with more query tokens (a stall)."""

from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

from simspec.profile.capture import retime_non_monotone  # noqa: E402


def block(*totals):
    return [SimpleNamespace(total=t) for t in totals]


def test_stalled_point_is_timed_again_and_the_faster_kept():
    b = block(1.0, 2.0, 5.5, 3.0, 4.0)
    calls = []
    n = retime_non_monotone(b, lambda i: calls.append(i) or SimpleNamespace(total=2.9))
    assert n == 1 and calls == [2] and [m.total for m in b] == [1.0, 2.0, 2.9, 3.0, 4.0]


def test_a_slower_second_timing_is_not_kept_and_monotone_blocks_untouched():
    b = block(1.0, 3.5, 3.0)
    assert retime_non_monotone(b, lambda i: SimpleNamespace(total=9.0)) == 1
    assert [m.total for m in b] == [1.0, 3.5, 3.0]
    flat = block(1.0, 1.01, 1.0, 2.0)  # within the 2% slack: noise, not a stall
    assert retime_non_monotone(flat, lambda i: pytest.fail("re-timed")) == 0


class FakeClock:
    """A perf_counter that only moves when a fake forward says so: no test here sleeps or
    depends on how long anything takes on this machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    from simspec.profile import capture, timer

    c = FakeClock()
    monkeypatch.setattr(timer, "time", c)
    monkeypatch.setattr(capture, "time", c)
    return c


class FakeTimer:
    """time_once returns scripted totals; the warm-up is timed by the fake clock (see warm)."""

    def __init__(self, totals):
        from simspec.profile.timer import Split

        self.splits = [Split(t, 0.0, 0.0, t) for t in totals]
        self.clock = SimpleNamespace(sync=lambda: None)
        self.calls = 0

    def time_once(self, fn):
        self.calls += 1
        return self.splits.pop(0)


def warm(clock, seconds):
    """A forward whose untimed warm-up run takes exactly `seconds` on the fake clock."""
    def fn():
        clock.now += seconds

    return fn


def test_runs_until_two_agree_then_keeps_the_fastest(clock):
    from simspec.profile.timer import measure

    t = FakeTimer([0.020, 0.030, 0.0205, 9.0])  # warm-up 0.05 s: a stall, then 20 vs 30 ms
    m = measure(t, warm(clock, 0.05), runs=1, agree=0.05, max_runs=4)
    assert t.calls == 3  # 50/20 and 30/20 disagree; 20.5/20 agree
    assert m.total == pytest.approx(0.020) and m.repeats == 4


def test_agreement_stops_at_max_runs_and_is_off_by_default(clock):
    from simspec.profile.timer import measure

    t = FakeTimer([0.010, 0.020, 0.040, 0.080])
    m = measure(t, warm(clock, 0.05), runs=1, agree=0.05, max_runs=3)
    assert t.calls == 2 and m.total == pytest.approx(0.010)
    t = FakeTimer([0.010, 0.020])
    measure(t, warm(clock, 0.05), runs=1)  # no agree: exactly `runs` timed runs
    assert t.calls == 1


def test_a_quiet_point_needs_one_timed_run(clock):
    from simspec.profile.timer import measure

    t = FakeTimer([0.0105])
    m = measure(t, warm(clock, 0.010), runs=1, agree=0.5, max_runs=4)
    assert t.calls == 1 and m.repeats == 2


def test_check_summary_separates_machine_drift():
    from simspec.profile.check import CheckPoint, summarize

    pts = [CheckPoint("decode", 1, 3, 100, None, None, 1.10, 1.00),  # +10% slow machine
           CheckPoint("prefill", 1, 50, 0, None, None, 2.42, 2.00),  # +10% drift, +10% model
           CheckPoint("grid", 1, 1, 128, None, None, 0.55, 0.50),
           CheckPoint("grid", 2, 4, 512, None, None, 1.10, 1.00),
           CheckPoint("grid", 4, 8, 512, None, None, 3.30, 3.00),
           CheckPoint("partial", 1, 1, 512, 3, 64, 0.2, 0.2)]
    s = summarize(pts)
    assert s["holdout"]["points"] == 2 and s["partial"]["points"] == 1
    assert s["holdout"]["max_rel_error"] == pytest.approx(0.42 / 2.42)
    assert s["drift"]["points"] == 3 and s["drift"]["median"] == pytest.approx(0.10)
    w = s["drift"]["holdout_without_drift"]
    assert w["max_rel_error"] == pytest.approx(0.22 / 2.42) and w["median_rel_error"] == pytest.approx(0.11 / 2.42)


def test_a_later_run_merges_into_a_point():
    from simspec.profile.timer import Measured

    m = Measured(0.2, 0.25, 0.3, layer=0.01, head=0.02, rest=0.04, repeats=2, totals=(0.3, 0.2))
    faster = m.merge(0.1)
    assert (faster.total, faster.total_median, faster.total_max, faster.repeats) == (0.1, 0.2, 0.3, 3)
    assert faster.layer == pytest.approx(0.005) and faster.rest == pytest.approx(0.02)
    slower = m.merge(0.4)
    assert (slower.total, slower.total_max, slower.layer) == (0.2, 0.4, 0.01)


def test_second_prefill_pass_keeps_the_faster_and_stops_at_the_deadline(monkeypatch, clock):
    from simspec.profile import capture
    from simspec.profile.timer import Measured

    monkeypatch.setattr(capture, "prefill_fn", lambda model, b, n: None)
    pts = {(1, 16): Measured(0.2, 0.2, 0.2, 0.0, 0.0, 0.0, 2),
           (1, 4096): Measured(30.0, 30.0, 30.0, 0.0, 0.0, 0.0, 2),  # would pass the deadline
           (2, 16): Measured(0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 2)}
    t, labels = FakeTimer([0.1, 0.5]), []
    n = capture.again_prefill(t, None, pts, clock.perf_counter() + 10.0, labels.append)
    assert n == 2 and t.calls == 2 and len(labels) == 3 and "skipped" in labels[1]
    assert pts[1, 16].total == 0.1 and pts[2, 16].total == 0.3 and pts[1, 4096].repeats == 2
