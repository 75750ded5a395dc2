"""`simspec study` without --workers: both cores for a long run, one process for a short one."""

from __future__ import annotations

import os

from simspec.study import runner


def test_two_workers_from_the_threshold_on_a_two_core_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert runner.auto_workers(runner.AUTO_WORKERS_FROM - 1) == 1
    assert runner.auto_workers(runner.AUTO_WORKERS_FROM) == 2
    assert runner.auto_workers(100_000) == 2  # never more than both cores of a small machine


def test_one_worker_on_one_core(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert runner.auto_workers(10_000) == 1
