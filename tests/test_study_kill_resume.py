"""SIGKILL a running study, run it again: the completed trials are kept and it goes on.

Six kills at random points of one study on its own SQLite file: three during the trials
(after a random number of completed trials each), one while the report is being written
(a random delay after this run's trials.parquet), one at the engine exports and one at the
plots; after each, the next run resumes. Nothing completed is ever lost, changed or
duplicated, and every output file present after a kill is whole (see killhelpers). The
random points come from SIMSPEC_KILL_SEED when set (the seed is printed), so a failure can
be replayed.

Shared storage has no single owner to clean up after a killed run, so there Optuna's
heartbeat does it (simspec.study.storage): a killed worker's RUNNING trial is marked FAIL
once its heartbeat is older than the grace period, and its parameters are run again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna

import killhelpers as kh
from studyhelpers import REPO, simspec, small_study

N = 36


def _count(db, state="COMPLETE") -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE state = ?", (state,)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_then_rerun_keeps_completed_trials(tmp_path):
    p = small_study(tmp_path, name="kr", trials=N, requests=48, out_max=128)
    out = tmp_path / "run"
    db = out / "study.db"
    proc = subprocess.Popen([sys.executable, "-m", "simspec.cli", "study", str(p), "--out", str(out), "--no-progress"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _count(db) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the study must still be running when it is killed"

    st = optuna.load_study(study_name="kr", storage=f"sqlite:///{db}")
    before = {t.number: (t.params, t.values) for t in st.trials if t.state.name == "COMPLETE"}
    assert 8 <= len(before) < N
    assert not (out / "summary.md").exists()  # killed before the report: nothing half written

    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resumed study 'kr'" in r.stdout
    st = optuna.load_study(study_name="kr", storage=f"sqlite:///{db}")
    done = [t for t in st.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == N
    for num, (params, values) in before.items():  # kept as they were
        t = st.trials[num]
        assert t.state.name == "COMPLETE" and t.params == params and t.values == values
    # the trial the kill interrupted (if any) is marked failed, not left running
    assert all(t.state.name != "RUNNING" for t in st.trials)
    assert len(st.trials) - len(done) == sum(t.state.name == "FAIL" for t in st.trials) <= 1
    assert (out / "summary.md").exists() and (out / "best.toml").exists()


def test_six_random_sigkills_lose_nothing_and_leave_no_half_file(tmp_path):
    n = 26  # > the 21 trials the three trial kills may wait for
    p = small_study(tmp_path, name="kr6", trials=n, requests=48, out_max=128)
    out = tmp_path / "run"
    url = f"sqlite:///{out / 'study.db'}"
    out.mkdir()
    final = kh.run_with_kills(p, out, url, "kr6", n, [])
    # own storage: a killed run's RUNNING trial is failed by the next run, at most one per kill
    assert sum(s == "FAIL" for s, _, _ in final.values()) <= 3


def test_heartbeat_fails_a_killed_workers_trial_and_runs_it_again(tmp_path):
    """--storage (shared): the next run finds the killed worker's trial RUNNING with a stale
    heartbeat, marks it FAIL and re-runs its parameters (Optuna's RetryFailedTrialCallback)."""
    p = small_study(tmp_path, name="hb", trials=12, requests=160, out_max=256)
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    env = {"SIMSPEC_HEARTBEAT_S": "1", "SIMSPEC_HEARTBEAT_GRACE_S": "2"}
    args = ["study", str(p), "--storage", url, "--out", str(tmp_path / "run"), "--no-progress"]
    st = kh.Storage(url, "hb")
    try:
        assert kh.kill_at(args, st, tmp_path / "run",
                          lambda s, o, t0: s.count() >= 3 and s.running_with_params(), env=env)
    finally:
        st.close()
    study = optuna.load_study(study_name="hb", storage=url)
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) == 1 and running[0].params, [t.state.name for t in study.trials]
    victim = running[0]
    time.sleep(3)  # past the grace period
    r = kh.run(args, env)
    assert r.returncode == 0, r.stderr
    assert "1 left running by a killed run marked failed" in r.stdout
    study = optuna.load_study(study_name="hb", storage=url)
    trials = study.trials
    assert trials[victim.number].state.name == "FAIL"
    again = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    # every parameter the victim had drawn is kept (Optuna's retry enqueues them fixed); killed
    # mid-suggestion, it had only some, and the retry draws the rest itself
    assert len(again) == 1 and victim.params.items() <= again[0].params.items(), (victim.params, again[0].params)
    assert again[0].state.name in ("COMPLETE", "PRUNED")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 12
    assert not any(t.state.name == "RUNNING" for t in trials)


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path, monkeypatch):
    """Optuna's own stale check skips RUNNING trials without any heartbeat (a worker killed
    between creating its trial and its first beat); simspec fails those too, after the grace
    period, and enqueues their parameters again."""
    from simspec.study import storage as sto

    monkeypatch.setattr(sto, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sto, "GRACE_S", 1)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name="beatless", storage=sto.open_storage(url, heartbeat=True))
    dead = study.ask()  # RUNNING, and no heartbeat thread was ever started for it
    dead.suggest_int("x", 0, 9)
    assert sto.fail_stale_heartbeats(study) == 0  # within the grace period: maybe alive
    time.sleep(1.5)
    assert sto.fail_stale_heartbeats(study) == 1
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state.name == "WAITING" and retry[0].params == trials[dead.number].params
    study.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=1)  # the retry runs first
    assert study.trials[retry[0].number].state.name == "COMPLETE"
    assert study.trials[retry[0].number].params == trials[dead.number].params
