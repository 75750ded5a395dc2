"""A real PostgreSQL server on loopback, two workers on one study: no trial lost or duplicated;
a study on it killed at six random points (trials, report, exports, plots) and resumed: no
completed trial lost, every killed worker's trial failed by the heartbeat and run again.

The server comes from Debian's packages (installed here when missing: `apt-get install -y
postgresql`, as root). The test skips only when the server truly cannot be started, and says why.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from studyhelpers import simspec, small_study


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _skip(reason: str):
    print(f"\nPOSTGRES TEST SKIPPED: {reason}", file=sys.stderr)
    pytest.skip(f"PostgreSQL server cannot start: {reason}")


@pytest.fixture(scope="module")
def pg_url():
    bindir = _pg_bin()
    if bindir is None:
        if os.geteuid() != 0:
            _skip("postgresql is not installed and this user is not root to apt-get install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        up = _run(["apt-get", "update"], env=env, timeout=600)
        inst = _run(["apt-get", "install", "-y", "-q", "postgresql"], env=env, timeout=900)
        bindir = _pg_bin()
        if bindir is None:
            _skip(f"apt-get install postgresql failed: {(up.stderr + inst.stderr).strip()[-300:]}")
    runas: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser") or _run(["id", "postgres"]).returncode != 0:
            _skip("running as root without a 'postgres' user (runuser) to own the server")
        runas = ["runuser", "-u", "postgres", "--"]
    d = Path(tempfile.mkdtemp(prefix="simspec-pg-"))
    os.chmod(d, 0o755)
    if runas:
        shutil.chown(d, "postgres", "postgres")
    data, log = d / "data", d / "server.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init = _run(runas + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], timeout=120)
    if init.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        _skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {d} -c max_connections=50"
    start = _run(runas + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
                 timeout=120)
    if start.returncode != 0:
        logtext = log.read_text()[-400:] if log.exists() else ""
        shutil.rmtree(d, ignore_errors=True)
        _skip(f"pg_ctl start failed: {start.stderr.strip()[-200:]} {logtext}")
    try:
        mk = _run(runas + [str(bindir.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"],
                  timeout=60)
        assert mk.returncode == 0, mk.stderr
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        _run(runas + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def test_two_workers_on_postgres_lose_and_duplicate_nothing(pg_url, tmp_path):
    import psycopg2  # noqa: F401  (the driver is a test dependency: its absence is a failure, not a skip)

    p = small_study(tmp_path, name="pg", trials=16)
    out = tmp_path / "run"
    r = simspec("study", str(p), "--storage", pg_url, "--workers", "2", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert not (out / "study.db").exists()  # the trials live in PostgreSQL
    st = optuna.load_study(study_name="pg", storage=pg_url)
    trials = st.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(16))
    assert len({t._trial_id for t in trials}) == 16
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert trials[0].params == {"gamma": 0, "max_batch": 4}  # the baseline, enqueued once, ran once
    assert sum(bool(t.system_attrs.get("fixed_params")) for t in trials) == 1
    # both processes did work (each trial records the process that ran it)
    assert len({t.user_attrs["summary"]["worker_pid"] for t in trials}) == 2
    # and a rerun with more trials resumes on the same server
    r = simspec("study", str(p), "--storage", pg_url, "--workers", "2", "--trials", "20", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    st = optuna.load_study(study_name="pg", storage=pg_url)
    assert sorted(t.number for t in st.trials) == list(range(20))
    assert "trials in postgresql+psycopg2://postgres@127.0.0.1" in r.stdout


def test_six_random_sigkills_on_postgres_lose_nothing_and_rerun_the_killed_trials(pg_url, tmp_path):
    """Shared storage: no run owns it, so a killed run's RUNNING trial is found by the next
    run's heartbeat check (a 1 s heartbeat, 2 s grace here; the pause between a kill and the
    rerun is longer), marked FAIL, and its parameters enqueued and run again."""
    import killhelpers as kh

    n = 26  # > the 21 trials the three trial kills may wait for
    p = small_study(tmp_path, name="pgkill", trials=n, requests=48, out_max=128)
    out = tmp_path / "run"
    out.mkdir()
    env = {"SIMSPEC_HEARTBEAT_S": "1", "SIMSPEC_HEARTBEAT_GRACE_S": "2"}
    final = kh.run_with_kills(p, out, pg_url, "pgkill", n, ["--storage", pg_url], env=env, pause_s=3.0)
    assert not (out / "study.db").exists()
    st = optuna.load_study(study_name="pgkill", storage=pg_url)
    failed = [t for t in st.trials if t.state.name == "FAIL"]
    for t in failed:  # each trial a kill interrupted was run again (retry_history: Optuna's retry chain)
        again = [u for u in st.trials if t.number in (u.system_attrs.get("retry_history") or [])]
        assert any(u.state.name in ("COMPLETE", "PRUNED") for u in again), t.number
        # with the same parameters: every one the killed trial had drawn (Optuna's retry enqueues
        # them fixed); one killed mid-suggestion draws the rest itself, as one killed before any does
        assert all(t.params.items() <= u.params.items() for u in again), t.number
    assert sum(s == "FAIL" for s, _, _ in final.values()) == len(failed)
