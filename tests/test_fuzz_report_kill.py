"""Fuzzing interrupted report phases (issue 29: half-written run folders).

A finished study's run folder is rerun (no new trial: the report phase only) and killed at the
k-th file it renames into place, k drawn from a fixed seed over every write of that phase
(SIMSPEC_FUZZ_SEED replays another). Whatever k, the folder must read as unfinished (no
COMPLETE.json), `export` and `predict` must refuse it in one line naming the folder, no file
may be half written (no temporary left beside it), and the next run must complete it.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from deadline import within
from simspec import outputs
from studyhelpers import finished_study, simspec

SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "29"))
CASES = 10
DEADLINE_S = 120  # one study rerun with its plots on a loaded 2-core host


class Killed(BaseException):
    """Stands for SIGKILL at a rename: nothing of the command runs after it but cleanup."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_study(tmp_path_factory.mktemp("reportkill"), "rk", trials=4, requests=16, out_max=48)


def renames_of_a_rerun(study: Path, out: Path, tmp: Path, monkeypatch) -> int:
    """How many files a rerun's report phase renames into place."""
    copy = tmp / "count"
    shutil.copytree(out, copy)
    real, n = os.replace, [0]

    def counting(src, dst):
        n[0] += 1
        return real(src, dst)

    monkeypatch.setattr(os, "replace", counting)
    r = simspec("study", str(study), "--out", str(copy), "--no-progress")
    monkeypatch.setattr(os, "replace", real)
    assert r.returncode == 0 and outputs.is_complete(copy), r.stderr
    return n[0]


def test_a_report_phase_killed_anywhere_leaves_a_visibly_unfinished_folder(finished, tmp_path, monkeypatch):
    study, out = finished
    total = renames_of_a_rerun(study, out, tmp_path, monkeypatch)
    assert total >= 8  # the results, the exports, the figures, summary.md, report.html, the marker
    rng = random.Random(SEED)
    ks = sorted(rng.sample(range(1, total + 1), min(CASES, total)))
    real = os.replace
    for k in ks:
        case = f"kill at rename {k} of {total} (seed {SEED})"
        copy = tmp_path / f"k{k}"
        shutil.copytree(out, copy)
        n = [0]

        def killing(src, dst):
            n[0] += 1
            if n[0] == k:
                raise Killed(case)
            return real(src, dst)

        monkeypatch.setattr(os, "replace", killing)
        try:
            with within(DEADLINE_S, case):
                r = simspec("study", str(study), "--out", str(copy), "--no-progress")
        except Killed:
            pass
        else:
            assert r.returncode != 0, case
        finally:
            monkeypatch.setattr(os, "replace", real)
        assert not outputs.is_complete(copy), case
        assert not [p.name for p in copy.iterdir() if ".tmp." in p.name], case
        for cmd in ("export", "predict"):
            with within(DEADLINE_S, f"{cmd} after {case}"):
                r = simspec(cmd, str(study), "--out", str(copy))
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (case, r.stderr)
            assert "unfinished" in lines[0] and str(copy) in lines[0], (case, lines[0])
        with within(DEADLINE_S, f"rerun after {case}"):
            r = simspec("study", str(study), "--out", str(copy), "--no-progress")
        assert r.returncode == 0 and outputs.is_complete(copy), (case, r.stderr)
