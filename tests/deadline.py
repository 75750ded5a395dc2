"""One per-case deadline for the fuzz and limit tests: a hang fails its case, not the suite."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Hang(BaseException):
    """A case ran past its deadline (a BaseException: no `except Exception` on the way, such as
    the in-process CLI's traceback printer, turns it into an ordinary failure)."""


@contextmanager
def within(seconds: float, what: str = "case"):
    """Fail with Hang when the block runs past `seconds` (SIGALRM: also interrupts a blocking
    open() or read(), which Python retries only after the handler has run)."""
    def fire(signum, frame):
        raise Hang(f"{what} ran past its {seconds:g} s deadline")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
