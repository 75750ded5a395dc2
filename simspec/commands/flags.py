"""Checks of numeric command-line flags: click reads `nan`, `inf` and `-1` as floats like any
other, so a flag's range and finiteness are checked here, one line naming the flag (a count's
range is a size: simspec.limits.check_flag)."""

from __future__ import annotations

import math

from simspec.errors import InputError


def finite(flag: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """`value` if it is finite and within [low, high], else InputError naming `flag`."""
    bounds = " and ".join(b for b in ((f">= {low:g}" if low is not None else ""),
                                      (f"<= {high:g}" if high is not None else "")) if b)
    ok = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise InputError(None, flag, f"must be a finite number{' ' + bounds if bounds else ''} (got {value:g})")
    return value

