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
        Value = staticmethod(runner.mp.Value)

    monkeypatch.setattr(runner.mp, "get_context", lambda _kind: Ctx)
    runner.run(spec, url, 6, 2, False, own_storage=True, progress=False)
    st = optuna.load_study(study_name=spec.name, storage=url)
    assert seen == [0]
    assert st.trials[0].params == {"gamma": 0, "max_batch": 4} and st.trials[0].state == TrialState.COMPLETE


def test_workers_share_out_exactly_the_trials_left():
    """Local workers take trials from one shared count: however they interleave, exactly the
    trials left are started, and a worker that comes late takes only what remains."""
    import multiprocessing as mp
    import threading

    slots = mp.Value("l", 500)
    took = [0, 0]

    def worker(i: int) -> None:
        while runner.claim(slots):
            took[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(took) == 500 and slots.value == 0
    assert not runner.claim(slots)  # a late worker finds none left

    class Study:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    st, left = Study(), mp.Value("l", 1)
    cb = runner.claim_next(left)
    cb(st, None)
    assert not st.stopped and left.value == 0  # took the last one: this worker runs one more
    cb(st, None)
    assert st.stopped  # none left: it stops after the trial it just finished
