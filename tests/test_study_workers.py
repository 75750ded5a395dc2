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


def test_no_enqueued_trial_is_left_when_a_second_worker_starts(tmp_path, monkeypatch):
    """SQLite has no row locks: two workers asking at once could both pop the enqueued baseline
    (Optuna then fails one with "Trial#0 has already finished"). The run folder's own storage
    hands the enqueued trials to the main process before any other worker starts."""
    import optuna
    from optuna.trial import TrialState

    from simspec.study.spec import load_study
    from simspec.study.storage import default_url
    from studyhelpers import small_study

    spec = load_study(small_study(tmp_path, trials=6, requests=24))
    url = default_url(tmp_path)
    seen: list[int] = []

    class Started:  # a worker process that only records what the storage held when it started
        exitcode = 0

        def __init__(self, target, args, daemon):
            pass

        def start(self) -> None:
            st = optuna.load_study(study_name=spec.name, storage=url)
            seen.append(len(st.get_trials(states=(TrialState.WAITING,))))

        def join(self) -> None:
            pass

        def is_alive(self) -> bool:
            return False

    class Ctx:
        Process = Started

    monkeypatch.setattr(runner.mp, "get_context", lambda _kind: Ctx)
    runner.run(spec, url, 6, 2, False, own_storage=True, progress=False)
    st = optuna.load_study(study_name=spec.name, storage=url)
    assert seen == [0]
    assert st.trials[0].params == {"gamma": 0, "max_batch": 4} and st.trials[0].state == TrialState.COMPLETE
