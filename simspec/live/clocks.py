"""Clocks for the live serving loop: real time, or deterministic time for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep_until(self, t: float) -> None: ...


class WallClock:
    """Real time: seconds since the clock was made (time.perf_counter); waiting sleeps."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sleep_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            time.sleep(dt)


class FakeClock:
    """Deterministic time for tests: each reading returns the time, then advances it by `step`
    (the loop reads the clock once per iteration, so every iteration lasts `step`); waiting
    jumps ahead to the time waited for. With step = 0 the time moves only when something
    sleeps (fake forwards that script each iteration's duration)."""

    def __init__(self, step: float = 1.0, start: float = 0.0) -> None:
        self.t, self.step = float(start), float(step)

    def now(self) -> float:
        t = self.t
        self.t += self.step
        return t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)
