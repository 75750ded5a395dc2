"""Fuzzing resumes that ask another question (issue 29: studies that answer a different question).

A finished small study is resumed with one key of its question changed, drawn from a fixed seed
(SIMSPEC_FUZZ_SEED replays another): a search range or list, a drafter's acceptance or cost, an
objective, a constraint. Each must be refused in one line naming the study file and the changed
key, before any trial, leaving the run folder finished; the unchanged file still resumes.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from deadline import within
from simspec import outputs
from studyhelpers import finished_study, simspec

SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "29"))
CASES = 14
DEADLINE_S = 30

# (the text in the small study, a changed text, the key the refusal must name)
EDITS = [
    ("gamma = { low = 0, high = 6 }", "gamma = { low = 0, high = 5 }", "search.gamma"),
    ("gamma = { low = 0, high = 6 }", "gamma = { low = 1, high = 6 }", "search.gamma"),
    ('drafter = ["model", "early_exit", "ngram"]', 'drafter = ["model", "ngram"]', "search.drafter"),
    ('drafter = ["model", "early_exit", "ngram"]', 'drafter = ["ngram", "model", "early_exit", "model"]', "search.drafter"),
    ("exit_layer = { low = 4, high = 20, step = 4 }", "exit_layer = { low = 4, high = 20, step = 8 }", "search.exit_layer"),
    ("vocab = [4096, 32768, 131072]", "vocab = [4096, 131072]", "search.vocab"),
    ("max_batch = [1, 2, 4, 8]", "max_batch = [2, 4, 8]", "search.max_batch"),
    ("max_batch = [1, 2, 4, 8]", "max_batch = [1, 2, 4, 8, 16]", "search.max_batch"),
    ("acceptance = { per_position = [0.8, 0.7, 0.65] }", "acceptance = { per_position = [0.8, 0.7, 0.6] }", "drafters"),
    ("cost = { step_ms = 4.0, per_seq_ms = 0.1 }", "cost = { step_ms = 5.0, per_seq_ms = 0.1 }", "drafters"),
    ("acceptance_by_layer = [[4, 0.1], [12, 0.4], [20, 0.75]]", "acceptance_by_layer = [[4, 0.1], [12, 0.5], [20, 0.75]]", "drafters"),
    ("acceptance = { iid = 0.3 }", "acceptance = { iid = 0.35 }", "drafters"),
    ('throughput = "maximize"', 'cost_per_mtok = "minimize"', "objectives"),
    ("tpot_p99_s = { max = 0.05 }", "tpot_p99_s = { max = 0.06 }", "constraints"),
    ("tpot_p99_s = { max = 0.05 }", "tpot_p99_s = { max = 0.05 }\nttft_p99_s = { max = 5.0 }", "constraints"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_study(tmp_path_factory.mktemp("resume"), "rs", trials=3, requests=16, out_max=48)


def test_a_resume_that_asks_another_question_is_refused(finished, tmp_path):
    study, out = finished
    text = study.read_text()
    rng = random.Random(SEED)
    for i, (old, new, key) in enumerate(rng.sample(EDITS, min(CASES, len(EDITS)))):
        assert old in text, old
        case = f"case {i} (seed {SEED}): {old!r} -> {new!r}"
        changed = tmp_path / f"rs{i}" / "rs.toml"
        changed.parent.mkdir()
        changed.write_text(text.replace(old, new))
        copy = tmp_path / f"rs{i}" / "run"
        shutil.copytree(out, copy)
        with within(DEADLINE_S, case):
            r = simspec("study", str(changed), "--out", str(copy), "--no-progress")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (case, r.stderr)
        assert str(changed) in lines[0] and key in lines[0], (case, lines[0])
        assert outputs.is_complete(copy), case  # a refused resume changes nothing
    # controls: the same question resumes, from a copy of the file elsewhere too (what the
    # refusals above name is the edit, not where the file lies)
    same = tmp_path / "same" / "rs.toml"
    same.parent.mkdir()
    same.write_text(text)
    for f, folder in ((same, tmp_path / "same" / "run"), (study, out)):
        if not folder.exists():
            shutil.copytree(out, folder)
        with within(DEADLINE_S, f"the unchanged file {f}"):
            r = simspec("study", str(f), "--out", str(folder), "--no-progress")
        assert r.returncode == 0 and "resumed study 'rs'" in r.stdout, r.stderr
