"""Fuzzing the size limits and the special files (issue 29, classes "sizes without limits" and
"only regular files are read as inputs").

Cases are generated from a fixed seed (SIMSPEC_FUZZ_SEED changes it for a local bug hunt):
every size of simspec/limits.py's table set near and past its limit (limit - k, the limit,
limit + k, multiples, 2^63, 0, negatives) in a scenario, a study and on the command line, and
special files (/dev/zero, /dev/null, a FIFO, a folder, a link to a device, a file past the size
cap) given wherever simspec reads a file. Each case runs in this process under a deadline and
must end in success or in one line naming the file (or flag) and the key (exit 2 through the
CLI, or one InputError), never a traceback; a value past its limit must be refused, naming its
key. A value within the limits is simulated when its work is small (else only validated).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

import fuzzhelpers as fz
from clihelpers import cli
from limitshelpers import DEADLINE_S, within
from simspec import limits
from simspec.config import load_scenario
from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "29"))
TRACE = REPO / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-fp32.parquet"
SIM_WORK = 50_000  # output tokens a within-limits case may simulate (beyond: validated only)
COUNT: dict[str, int] = {}


def _near(rng: random.Random, limit: int | float, low: int = 1) -> list:
    """Values around a limit: under, at, just past, far past, and below the floor."""
    lim = int(limit)
    return sorted({lim - rng.randint(1, 3), lim, lim + rng.randint(1, 3), lim * rng.choice([2, 10, 1000]),
                   rng.randint(max(low, lim // 2), lim), 2 ** 63, low - 1, -rng.randint(1, 10 ** 6)})


def _count(group: str) -> None:
    COUNT[group] = COUNT.get(group, 0) + 1


def _one_line(r, *must: str) -> str:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr[-1500:]
    for s in must:
        assert s in err, (s, err)
    return err


# -- scenarios ----------------------------------------------------------------------------

BASE = {
    "target": {"cost": {"step_ms": 5.0, "per_seq_ms": 0.1}},
    "draft": {"kind": "model", "cost": {"step_ms": 1.0}},
    "acceptance": {"rank_probs": [0.6, 0.2]},
    "speculation": {"draft_len": 2},
    "workload": {"requests": 6, "arrival": "closed", "concurrency": 3, "prompt_len": 8, "output_len": 6},
    "serving": {"max_batch": 4},
}


def _set(doc: dict, key: str, value) -> None:
    sec, k = key.split(".")
    doc.setdefault(sec, {})[k] = value


def _scenario_cases(rng: random.Random) -> list[tuple[str, object, bool]]:
    """(key, value, past its limit) for every scenario size."""
    out = []
    for key, lim in (("workload.requests", limits.REQUESTS), ("placement.replicas", limits.REPLICAS),
                     ("serving.max_batch", limits.MAX_BATCH), ("speculation.draft_len", limits.GAMMA),
                     ("workload.prompt_len", limits.TOKEN_LEN), ("workload.output_len", limits.TOKEN_LEN),
                     ("workload.max_output_len", limits.TOKEN_LEN)):
        floor = 0 if key == "speculation.draft_len" else 1
        out += [(key, v, not floor <= v <= lim.value) for v in _near(rng, lim.value, floor)]
    for _ in range(8):  # trees: depth and nodes near their limits
        shape = rng.choice([[rng.randint(4000, 4200)], [64, rng.randint(60, 70)], [1] * rng.randint(120, 135),
                            [rng.randint(1, 9) for _ in range(rng.randint(1, 6))], [10 ** rng.randint(3, 9)] * 3])
        past = len(shape) > limits.GAMMA.value or limits.tree_nodes(shape) > limits.TREE_NODES.value
        out.append(("speculation.tree", shape, past))
    for _ in range(8):  # Poisson rates around the clock limit (requests / rate vs 2^32 s)
        rate = 6 / limits.CLOCK_S.value * rng.choice([0.5, 0.99, 1.01, 2.0, 1e-3, 1e3, 1e-9])
        out.append(("workload.rate", rate, 6 / rate > limits.CLOCK_S.value))
    return out


def _scenario_doc(key: str, value) -> dict:
    doc = json.loads(json.dumps(BASE))
    if key == "speculation.tree":
        doc["speculation"] = {"tree": value}
    elif key == "workload.rate":
        doc["workload"].update({"arrival": "poisson", "rate": value})
        del doc["workload"]["concurrency"]
    else:
        _set(doc, key, value)
    return doc


def _work(doc: dict) -> int:
    wl = doc["workload"]
    out = min(wl["output_len"], wl.get("max_output_len", wl["output_len"]))
    return wl["requests"] * out


def test_scenario_sizes_near_and_past_their_limits(tmp_path):
    from simspec.sim.run import simulate

    rng = random.Random(SEED)
    cases = _scenario_cases(rng)
    assert len(cases) >= 60
    for i, (key, value, past) in enumerate(cases):
        p = tmp_path / f"s{i}.toml"
        doc = _scenario_doc(key, value)
        p.write_text(fz.dumps(doc))
        what = f"{key} = {value!r}"[:120]
        with within(DEADLINE_S, what):
            if past:  # through the console entry point: exit 2, one line naming file and key
                _one_line(cli("simulate", str(p)), str(p), key)
            else:
                try:
                    sc = load_scenario(p)
                except InputError as exc:
                    fz.check_input_error(exc, [p], True)
                    continue
                if _work(doc) <= SIM_WORK:
                    res = simulate(sc, str(p))
                    assert res.summary["requests"] == doc["workload"]["requests"], what
        _count("scenario")


# -- studies ------------------------------------------------------------------------------

def _study_cases(rng: random.Random) -> list[tuple[str, object, bool]]:
    out = []
    for key, lim, shape in (("search.gamma", limits.GAMMA, "range"), ("search.max_batch", limits.MAX_BATCH, "list"),
                            ("trials", limits.TRIALS, "int"), ("startup_trials", limits.TRIALS, "int"),
                            ("capacity.max_replicas", limits.REPLICAS, "int"),
                            ("capacity.requests", limits.REQUESTS, "int"),
                            ("schedule.batch_sizes", limits.MAX_BATCH, "list"),
                            ("schedule.min_requests", limits.REQUESTS, "int")):
        for v in rng.sample(_near(rng, lim.value), 4):
            floor = 0 if key == "search.gamma" else 1
            value = {"low": max(0, v - 5), "high": v} if shape == "range" else [v] if shape == "list" else v
            out.append((key, value, not floor <= v <= lim.value))
    for n in (limits.SCHEDULE_BUCKETS.value, limits.SCHEDULE_BUCKETS.value + rng.randint(1, 40)):
        out.append(("schedule.batch_sizes", list(range(1, n + 1)), n > limits.SCHEDULE_BUCKETS.value))
    for rps in (1, 2441, 2442, 10 ** 6):  # x the largest default bucket (4096) vs REQUESTS
        out.append(("schedule.requests_per_slot", rps, rps * limits.MAX_BATCH.value > limits.REQUESTS.value))
    return out


def test_study_sizes_near_and_past_their_limits(tmp_path):
    from simspec.study.spec import load_study

    rng = random.Random(SEED + 1)
    shutil.copy(REPO / "studies" / "quickstart.toml", tmp_path / "quickstart.toml")
    base = fz.read(REPO / "studies" / "quickstart_study.toml")
    cases = _study_cases(rng)
    assert len(cases) >= 30
    for i, (key, value, past) in enumerate(cases):
        doc = json.loads(json.dumps(base))
        parts = key.split(".")
        if len(parts) == 1:
            doc[key] = value
        else:
            doc.setdefault(parts[0], {"rate": 1.0} if parts[0] == "capacity" else {})[parts[1]] = value
        p = tmp_path / f"study{i}.toml"
        p.write_text(fz.dumps(doc))
        with within(DEADLINE_S, f"{key} = {value!r}"[:120]):
            try:
                load_study(p)
                assert not past, f"{key} = {value!r} past its limit was accepted"
            except InputError as exc:
                fz.check_input_error(exc, [p, tmp_path / "quickstart.toml"], True)
                if past:
                    assert exc.key and exc.key.startswith(key), exc.line()
        _count("study")


# -- flags --------------------------------------------------------------------------------

def test_flags_near_and_past_their_limits(tmp_path):
    rng = random.Random(SEED + 2)
    shutil.copy(REPO / "studies" / "quickstart.toml", tmp_path / "quickstart.toml")
    shutil.copy(REPO / "studies" / "quickstart_study.toml", tmp_path / "study.toml")
    n = 0
    for flag, lim in (("--trials", limits.TRIALS), ("--workers", limits.WORKERS)):
        for v in _near(rng, lim.value):
            if 1 <= v <= lim.value:
                continue  # a valid count starts a real study: not a limit case
            with within(DEADLINE_S, f"{flag} {v}"):
                _one_line(cli("study", str(tmp_path / "study.toml"), flag, str(v), "--out", str(tmp_path / "run")), flag)
            n += 1
    for v in _near(rng, limits.G_MAX.value) + [1]:
        with within(DEADLINE_S, f"--g-max {v}"):
            r = cli("trace", "--summary", str(TRACE), "--g-max", str(v))
            if 1 <= v <= limits.G_MAX.value:
                assert r.returncode == 0 and f"g={v}" in r.stdout, r.stderr[-1500:]
            else:
                _one_line(r, "--g-max")
        n += 1
    for flag in ("--gamma", "--batch", "--max-new-tokens", "--prompts"):  # refused before a model loads
        with within(DEADLINE_S, f"run {flag}"):
            _one_line(cli("run", "--target", "tiny:llama", flag, str(10 ** 12)), flag)
        n += 1
    COUNT["flags"] = n
    assert n >= 15


# -- special files --------------------------------------------------------------------------

def _specials(d: Path) -> dict[str, Path]:
    fifo = d / "fifo"
    os.mkfifo(fifo)
    link = d / "link"
    link.symlink_to("/dev/zero")
    big = d / "big"
    with open(big, "wb") as fh:
        fh.truncate(int(limits.INPUT_BYTES.value) + 1)  # sparse
    folder = d / "folder"
    folder.mkdir()
    return {"/dev/zero": Path("/dev/zero"), "/dev/null": Path("/dev/null"), "fifo": fifo,
            "link to /dev/zero": link, "past the size cap": big, "folder": folder}


def test_special_files_wherever_a_file_is_read(tmp_path):
    specials = _specials(tmp_path)
    n = 0
    for name, path in specials.items():
        uses = [("simulate", ["simulate", str(path)]), ("study", ["study", str(path), "--out", str(tmp_path / "r")]),
                ("validate", ["validate", str(path), "--predict-only"]),
                ("trace", ["trace", "--summary", str(path)])]
        for data_key, section in (("target.profile", "target"), ("acceptance.trace", "acceptance")):
            doc = json.loads(json.dumps(BASE))
            if section == "target":
                doc["target"] = {"profile": str(path)}
            else:
                doc["acceptance"] = {"trace": str(path), "drafter": "ngram:2"}
            sc = tmp_path / f"ref-{n}.toml"
            sc.write_text(fz.dumps(doc))
            uses.append((data_key, ["simulate", str(sc)]))
            n += 1
        for use, args in uses:
            if name == "past the size cap" and use in ("trace", "target.profile", "acceptance.trace"):
                continue  # a regular file: Parquet readers seek its footer, they never read it whole
            with within(DEADLINE_S, f"{name} as {use}"):
                line = _one_line(cli(*args))
            assert str(path) in line or use in line or (name == "link to /dev/zero" and "/dev/zero" in line), line
            _count("special")
    assert COUNT["special"] >= 25


def test_ran_enough_cases():
    """The groups above ran at least 80 generated cases between them (run with them)."""
    total = sum(COUNT.values())
    if total == 0:
        pytest.skip("run with the other tests of this file")
    assert total >= 80, COUNT
