"""Helpers of the size-limit tests (tests/test_limits.py, tests/test_fuzz_limits.py): a per-case
deadline (a hang fails the case instead of the suite), and the contract of a refusal (exit 2,
one line on stderr naming the file or flag, the key, the value and the limit, no traceback)."""

from __future__ import annotations

from pathlib import Path

import deadline
from clihelpers import cli

DEADLINE_S = 10.0  # the bound: no example may run past 10 s


def within(seconds: float = DEADLINE_S, what: str = "case"):
    return deadline.within(seconds, what)


def refused(*args, must: tuple[str, ...] = (), seconds: float = DEADLINE_S, cwd: Path | None = None) -> str:
    """`simspec ARGS` must exit 2 with one line on stderr holding every string of `must`,
    within the deadline; returns the line."""
    with within(seconds, "simspec " + " ".join(map(str, args))):
        r = cli(*map(str, args), cwd=cwd)
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr[-2000:]
    for s in must:
        assert s in err, (s, err)
    return err
