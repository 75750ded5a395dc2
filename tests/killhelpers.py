"""SIGKILL a `simspec study` at chosen points and check what it left (tests/test_study_kill_*).

A kill point is a predicate over (storage, run folder, start time) polled every 20 ms: after
k completed trials, while the report is being written (a result file of this run exists,
the summary does not), at the engine exports, at the plots. After each kill the checks are
the crash-safety contract: no completed trial lost or changed, no trial number twice, and
every output file present is complete (readable to its end); temporaries (*.tmp.*) of a
killed write may be left, and the next complete run replaces them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Callable

import pandas as pd
from sqlalchemy import create_engine, text

from studyhelpers import REPO

OUTPUTS = ("trials.parquet", "pareto.csv", "best.toml", "vllm_speculative_config.json", "sglang_args.txt",
           "history.png", "importances.png", "pareto.png", "gamma_vs_batch.png", "summary.md", "report.html")


class Storage:
    """Read-only counts of one study's trials straight from Optuna's tables (SQLite or
    PostgreSQL; a server may hold other studies)."""

    STUDY = "t.study_id = (SELECT study_id FROM studies WHERE study_name = :name)"

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.engine = create_engine(url.replace("sqlite:///", "sqlite:///file:") + ("?mode=ro&uri=true" if url.startswith("sqlite") else ""),
                                    **({"connect_args": {"timeout": 1}} if url.startswith("sqlite") else {}))

    def count(self, state: str = "COMPLETE") -> int:
        try:
            with self.engine.connect() as c:
                return c.execute(text(f"SELECT count(*) FROM trials t WHERE t.state = :s AND {self.STUDY}"),
                                 {"s": state, "name": self.name}).scalar() or 0
        except Exception:  # noqa: BLE001 - not created yet, or locked for an instant
            return 0

    def running_with_params(self) -> list[int]:
        """Numbers of RUNNING trials whose parameters are already stored."""
        try:
            with self.engine.connect() as c:
                rows = c.execute(text("SELECT DISTINCT t.number FROM trials t JOIN trial_params p "
                                      f"ON p.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND {self.STUDY}"),
                                 {"name": self.name}).fetchall()
                return [r[0] for r in rows]
        except Exception:  # noqa: BLE001
            return []

    def close(self) -> None:
        self.engine.dispose()


def fresh(out: Path, name: str, t0: float) -> bool:
    try:
        return (out / name).stat().st_mtime > t0
    except OSError:
        return False


def after_trials(k: int) -> Callable:
    return lambda st, out, t0: st.count() >= k


def when_fresh(name: str, not_yet: str | None = None) -> Callable:
    """The moment `name` is (re)written by this run (and `not_yet` is not)."""
    return lambda st, out, t0: fresh(out, name, t0) and (not_yet is None or not fresh(out, not_yet, t0))


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simspec.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def kill_at(args: list[str], st: Storage, out: Path, point: Callable, delay_s: float = 0.0,
            env: dict | None = None, timeout: float = 300) -> bool:
    """Run `simspec ARGS`, SIGKILL it once `point` holds (plus `delay_s`). True if it was killed
    while still running; False if it finished first (then it must have exited 0)."""
    t0 = time.time()
    proc = start(args, env)
    deadline = t0 + timeout
    while proc.poll() is None and time.time() < deadline and not point(st, out, t0):
        time.sleep(0.02)
    if delay_s and proc.poll() is None:
        time.sleep(delay_s)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.communicate()
        return True
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return False


def snapshot(url: str, name: str) -> dict[int, tuple]:
    import optuna

    st = optuna.load_study(study_name=name, storage=url)
    trials = st.get_trials(deepcopy=False)
    nums = [t.number for t in trials]
    assert len(nums) == len(set(nums)), "a trial number appears twice"
    return {t.number: (t.state.name, t.params, t.values) for t in trials}


def check_kept(before: dict[int, tuple], after: dict[int, tuple]) -> None:
    """Every trial that was complete (or pruned) is still there, unchanged."""
    for num, rec in before.items():
        if rec[0] in ("COMPLETE", "PRUNED"):
            assert after.get(num) == rec, (num, rec, after.get(num))


def check_outputs(out: Path) -> list[str]:
    """Every output file present is whole; returns the ones present."""
    present = []
    for name in OUTPUTS:
        p = out / name
        if not p.exists():
            continue
        present.append(name)
        data = p.read_bytes()
        assert data, name
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and data.endswith(b"IEND\xaeB`\x82"), name
        elif name == "trials.parquet":
            assert len(pd.read_parquet(p)) >= 1
        elif name == "pareto.csv":
            pd.read_csv(p)
        elif name == "best.toml":
            tomllib.loads(data.decode())
        elif name.endswith(".json"):
            json.loads(data)
        elif name == "summary.md":
            assert "## Files" in data.decode() and data.endswith(b"\n"), name
        elif name == "report.html":
            assert data.rstrip().endswith(b"</html>"), name
        else:
            assert data.endswith(b"\n"), name
    return present


def run(args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`simspec ARGS` to completion, with extra environment variables."""
    return subprocess.run([sys.executable, "-m", "simspec.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def kill_points(rng: random.Random) -> list[tuple[str, object, float]]:
    """(label, point, delay): three during trials, then the report, the exports, the plots."""
    k, pts = 0, []
    for _ in range(3):
        k += rng.randint(3, 7)
        pts.append((f"after {k} trials", after_trials(k), rng.uniform(0.0, 0.15)))
    pts.append(("in the report", when_fresh("trials.parquet"), rng.uniform(0.0, 0.6)))
    pts.append(("at the exports", when_fresh("vllm_speculative_config.json", "summary.md"), 0.0))
    pts.append(("at the plots", when_fresh("history.png", "summary.md"), rng.uniform(0.0, 0.05)))
    return pts


def run_with_kills(study_file, out, url: str, name: str, n: int, extra: list[str], env: dict | None = None,
                   pause_s: float = 0.0) -> dict:
    """Kill `simspec study` at the six kill_points, resume after each, finish; check all along."""
    seed = int(os.environ.get("SIMSPEC_KILL_SEED") or random.randrange(10**6))
    print(f"kill points from SIMSPEC_KILL_SEED={seed}")
    rng = random.Random(seed)
    args = ["study", str(study_file), "--out", str(out), "--no-progress", *extra]
    st = Storage(url, name)
    snap: dict = {}
    killed = []
    try:
        for label, point, delay in kill_points(rng):
            if kill_at(args, st, out, point, delay, env=env):
                killed.append(label)
            now = snapshot(url, name)
            check_kept(snap, now)
            check_outputs(out)
            snap = now
            time.sleep(pause_s)
    finally:
        st.close()
    print("killed:", killed)
    assert len(killed) >= 5, killed  # (a kill point the run finished before is skipped)
    r = run(args, env)
    assert r.returncode == 0, r.stderr
    final = snapshot(url, name)
    check_kept(snap, final)
    assert sum(s in ("COMPLETE", "PRUNED") for s, _, _ in final.values()) == n
    assert all(s != "RUNNING" for s, _, _ in final.values())
    assert check_outputs(out) == [f for f in OUTPUTS if (out / f).exists()] and (out / "summary.md").exists()
    assert not [f.name for f in out.iterdir() if ".tmp" in f.name]  # the complete run replaced every temporary
    return final
