"""Fuzzing the numbers (issue 29, "strict numbers"): inf, -inf, nan, booleans, 0, negatives and
huge values put into the numeric keys of the shipped scenario, study and validation plan, and
into the numeric command-line flags.

Every case must end in a result or in one InputError naming the file (or flag), a key and a
reason; a result's --json figures must be strict JSON. No traceback, and no case may run
past its deadline (SIGALRM, in this process). The cases are drawn from a fixed seed, so CI
runs the same ones every time; SIMSPEC_FUZZ_SEED picks others for a local hunt.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import fuzzhelpers as fz
from deadline import within
from simspec.errors import InputError

REPO = fz.REPO
SEED = int(os.environ.get("SIMSPEC_FUZZ_SEED", "29"))
DEADLINE_S = 10
SPECIAL = [math.inf, -math.inf, math.nan, True, False, 0, 0.0, -1, -0.5, -10**9, 10**30, 1e300, 2**63]
SMALL = {math.inf, -math.inf, True, False, 0, 0.0, -1, -0.5, -10**9}  # a simulation stays small
BOUND = 20_000  # requests x output tokens a fuzz case may simulate
CASES: Counter = Counter()
N = {"scenario": 40, "study": 30, "plan": 16, "cli": 24}


def deadline(seconds: int = DEADLINE_S):
    return within(seconds)


def numeric_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths of every number (int or float, not bool) in a parsed TOML document."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        if isinstance(v, (dict, list)):
            out += numeric_paths(v, prefix + (k,))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(prefix + (k,))
    return out


def put(doc: dict, path: tuple, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def draws(kind: str, paths: list[tuple]) -> list[tuple[tuple, Any]]:
    """N[kind] (path, value) pairs from the fixed seed: every path once before any twice."""
    rng = random.Random(f"{SEED}:{kind}")
    order = paths[:]
    rng.shuffle(order)
    return [(order[i % len(order)], rng.choice(SPECIAL)) for i in range(N[kind])]


def write(tmp: Path, doc: dict, name: str) -> Path:
    p = tmp / name
    p.write_text(fz.dumps(doc), encoding="utf-8")
    return p


def strict_json(summary: dict) -> None:
    from simspec import strict_json as sj

    json.loads(sj.dumps(summary), parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))


def small_enough(sc) -> bool:
    w = sc.workload
    out = [x for x in (w.max_output_len, getattr(w.output_len, "max", w.output_len)) if isinstance(x, int)]
    return w.requests * min(out or [10**9]) <= BOUND and sc.serving.max_batch <= 4096 and sc.placement.replicas <= 8


# -- scenarios -------------------------------------------------------------------------------

SCENARIO = fz.read(REPO / "studies" / "quickstart.toml")
SCENARIO["workload"]["requests"] = 8


@pytest.mark.parametrize("path,value", draws("scenario", numeric_paths(SCENARIO)),
                         ids=lambda x: ".".join(map(str, x)) if isinstance(x, tuple) else repr(x))
def test_scenario_numbers(tmp_path, path, value):
    from simspec.config import load_scenario
    from simspec.sim.run import simulate

    p = write(tmp_path, put(SCENARIO, path, value), "scenario.toml")
    CASES["scenario"] += 1
    with deadline():
        try:
            sc = load_scenario(p)
        except InputError as exc:
            fz.check_input_error(exc, [p], True)
            assert exc.key, exc.line()
            if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
                assert "boolean" in exc.reason or "finite" in exc.reason or path[-1] in exc.key, exc.line()
            return
        assert not isinstance(value, bool) and not (isinstance(value, float) and not math.isfinite(value)), \
            f"{'.'.join(map(str, path))} = {value!r} accepted"
        if value in SMALL and small_enough(sc):
            try:
                strict_json(dict(simulate(sc, str(p)).summary))
            except InputError as exc:
                fz.check_input_error(exc, [p], True)


# -- studies ---------------------------------------------------------------------------------

STUDY = fz.read(REPO / "studies" / "quickstart_study.toml")
STUDY["scenario"] = str(REPO / "studies" / "quickstart.toml")


@pytest.mark.parametrize("path,value", draws("study", numeric_paths(STUDY)),
                         ids=lambda x: ".".join(map(str, x)) if isinstance(x, tuple) else repr(x))
def test_study_numbers(tmp_path, path, value):
    from simspec.study.space import grid  # noqa: F401  (the space must build for an accepted file)
    from simspec.study.spec import load_study

    p = write(tmp_path, put(STUDY, path, value), "study.toml")
    CASES["study"] += 1
    with deadline():
        try:
            spec = load_study(p)
        except InputError as exc:
            fz.check_input_error(exc, [p, REPO / "studies" / "quickstart.toml"], True)
            return
        assert not isinstance(value, bool) and not (isinstance(value, float) and not math.isfinite(value)), \
            f"{'.'.join(map(str, path))} = {value!r} accepted"
        s = spec.file.search
        for knob in ("max_batch", "exit_layer", "vocab"):
            v = getattr(s, knob)
            if v is not None and v != "trace":
                assert (v.low if hasattr(v, "low") else min(v)) >= 1, (knob, v)


# -- validation plans --------------------------------------------------------------------------

PLAN = fz.read(REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml")
PLAN["trace"] = str(REPO / PLAN["trace"])
PLAN.pop("traces", None)
PLAN["profiles"] = {m: {d: str(REPO / f) for d, f in by.items()} for m, by in PLAN["profiles"].items()}
PLAN["config"] = PLAN["config"][:4] + [{"dtype": "bf16", "max_batch": 2, "arrival": "poisson", "rate": 1.0,
                                          "requests": 4, "seed": 1}]


@pytest.mark.parametrize("path,value", draws("plan", numeric_paths(PLAN)),
                         ids=lambda x: ".".join(map(str, x)) if isinstance(x, tuple) else repr(x))
def test_plan_numbers(tmp_path, path, value):
    from simspec.validation.plan import load_plan
    from simspec.validation.scenarios import scenario_for

    p = write(tmp_path, put(PLAN, path, value), "plan.toml")
    CASES["plan"] += 1
    with deadline():
        try:
            plan = load_plan(p)
            for c in plan.config:
                scenario_for(plan, c, str(p))
        except InputError as exc:
            fz.check_input_error(exc, [p], True)
            return
        assert not isinstance(value, bool) and not (isinstance(value, float) and not math.isfinite(value)), \
            f"{'.'.join(map(str, path))} = {value!r} accepted"


# -- command-line flags ----------------------------------------------------------------------------

QS = str(REPO / "studies" / "quickstart_study.toml")
TRACE = "traces/qwen2.5-coder-1.5b__humaneval.parquet"
FLAGS = [  # (argv before the value, flag, values a run may take without work beyond the deadline)
    (["export", QS, "--out", "{tmp}/run", "--schedule-min-gain"], "--schedule-min-gain", "any"),
    (["predict", QS, "--out", "{tmp}/run", "--schedule-min-gain"], "--schedule-min-gain", "any"),
    (["trace", "--summary", TRACE, "--g-max"], "--g-max", "small"),
    (["run", "--target", "nowhere", "--temperature"], "--temperature", "bad"),
    (["run", "--target", "nowhere", "--gamma"], "--gamma", "bad"),
    (["run", "--target", "nowhere", "--batch"], "--batch", "bad"),
    (["study", QS, "--out", "{tmp}/run", "--trials"], "--trials", "bad"),
    (["study", QS, "--out", "{tmp}/run", "--workers"], "--workers", "bad"),
]
FLAG_VALUES = ["nan", "inf", "-inf", "+inf", "-1", "0", "-0.5", "1e309", "-1e300", "true", "1e300", "2", "0.066"]


def _cli_draws() -> list[tuple[int, str]]:
    rng = random.Random(f"{SEED}:cli")
    out = []
    for i in range(N["cli"]):
        f = i % len(FLAGS)
        out.append((f, rng.choice(FLAG_VALUES)))
    return out


def _may_run(kind: str, value: str) -> bool:
    """Values this case must not actually run with (a real model load, a long study, a huge table)."""
    try:
        x = float(value)
    except ValueError:
        return True  # click refuses it
    if kind == "any":
        return True
    if kind == "small":
        return not math.isfinite(x) or x <= 8
    return not math.isfinite(x) or x < 0 or (kind == "bad" and x < 1 and value not in ("0",))


@pytest.mark.parametrize("flag_i,value", _cli_draws(), ids=lambda x: repr(x))
def test_numeric_flags(tmp_path, flag_i, value):
    argv, flag, kind = FLAGS[flag_i]
    if not _may_run(kind, value):
        pytest.skip(f"{flag} {value} would do real work")
    CASES["cli"] += 1
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv] + [value]
    with deadline():
        code, out, err = fz.run_main(*args) if not args[0] == "trace" else _in_repo(args)
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2 and not err.startswith("Usage:"):  # click's own usage error is its standard form
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    try:
        x = float(value)
    except ValueError:
        x = None
    if x is not None and (not math.isfinite(x) or x < 0):
        assert code == 2 and (flag in err or "Usage:" in err), (flag, value, err)


def _in_repo(args: list[str]):
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return fz.run_main(*args)
    finally:
        os.chdir(cwd)


def test_enough_cases_ran():
    """Runs last in this file (pytest keeps file order): the generated cases all ran."""
    assert sum(N.values()) >= 80
    ran = sum(CASES[k] for k in N)
    if ran == 0:
        pytest.skip("run alone (-k): the counters are of the whole file")
    assert ran >= 80, CASES
