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
