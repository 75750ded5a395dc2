"""SIGKILL a running study, run it again: the completed trials are kept and it goes on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna

from studyhelpers import REPO, simspec, small_study

N = 60


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
    p = small_study(tmp_path, name="kr", trials=N, requests=160, out_max=256)
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
