"""Fuzzing every user-file entry point: bad input is one InputError line, never a crash.

Scenario, study and validation-plan files are mutated from the shipped examples along the keys
of their real schemas (config.scenario.Scenario, study.spec.StudyFile, validation.plan.Plan): random
and unknown keys, wrong types, out-of-range values, unicode, huge numbers, NaN/inf, empty
values, deep nesting, and files damaged as bytes. Profiles and traces are copies of the shipped
files (profiles/intel-xeon/, a slice of traces/) corrupted as tables (dropped or retyped columns,
NaN/negative/huge values, missing or duplicated grid rows, shuffled rows), as sidecars
(missing, not JSON, keys dropped or retyped) and as bytes (truncated Parquet).

Each case runs the public entry point in this process (load_scenario + simulate, load_study
+ the study's probe evaluations, load_plan + scenario_for + simulate, ProfileCostModel.load
+ prices, load_trace + a replaying simulation, and `simspec simulate|validate` through the
console entry point) and must end in success or in exactly one InputError naming the file, a
key and a reason (the CLI: exit code 2, one line on stderr, no traceback, no output file
left). Anything else fails the test with hypothesis' minimal reproducer.

Settings come from the profiles in conftest.py: a fixed seed in CI (`derandomize`), random
locally; no per-example deadline (machine speed must not fail a test, see
benchmarks/); every case is bounded by construction instead (small workloads; a simulation
whose requested work is beyond BOUND is validated but not run). Each test checks that it ran
at least its share of the >= 300 cases.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzhelpers as fz
from simspec.config import Scenario, load_scenario
from simspec.config.workload import LogNormalLen, UniformLen
from simspec.errors import InputError

REPO = fz.REPO
CASES: Counter = Counter()
MIN_CASES = {"scenario": 300, "study": 150, "plan": 120, "profile": 200, "trace": 150, "cli": 80}
assert sum(MIN_CASES.values()) >= 300
# SIMSPEC_FUZZ_SCALE=10 runs ten times the cases (a local bug hunt; CI runs the numbers above)
SCALE = max(1, int(os.environ.get("SIMSPEC_FUZZ_SCALE", "1")))


def n_examples(kind: str) -> int:
    return MIN_CASES[kind] * SCALE


_DIRS: list[Path] = []


def _tmp() -> Path:
    d = Path(tempfile.mkdtemp(prefix="simspec-fuzz-"))
    _DIRS.append(d)
    return d


@atexit.register
def _cleanup() -> None:
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)


def _no_leftovers(root: Path) -> None:
    """No half-written file anywhere: nothing named *.tmp*."""
    left = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert not left, left


def _count(kind: str, n_before: int) -> None:
    ran = CASES[kind] - n_before
    assert ran >= MIN_CASES[kind], f"only {ran} {kind} cases ran (want >= {MIN_CASES[kind]})"


# -- crashes found here whose fix is a patch to a file this suite does not own ----------------
# Each is tolerated in the fuzz cases only while its reproducer still crashes (fuzzhelpers.KnownBug),
# and test_known_fuzz_crash_is_fixed below runs each reproducer (a strict xfail until its patch
# was applied; a regression of any of them fails it).

def _toml_file(text: str) -> Path:
    d = _tmp()
    p = d / "case.toml"
    p.write_text(text, encoding="utf-8")
    return p


def _scenario(extra: str = "", target: str = 'cost = { step_ms = 10.0 }') -> Path:
    return _toml_file(f"[target]\n{target}\n[workload]\nrequests = 2\nprompt_len = 8\noutput_len = 4\n{extra}")


def _load_and_run(p: Path, *refs: Path) -> None:
    from simspec.sim.run import simulate

    try:
        simulate(load_scenario(p), str(p))
    except InputError as exc:
        fz.check_input_error(exc, [p, *refs], True)


@fz.known("read_toml-deep-nesting", RecursionError, "tomllib", "config/files.py read_toml")
def _bug_deep_toml():
    """A TOML value nested ~1000 deep: RecursionError inside tomllib (read_toml catches only
    TOMLDecodeError and UnicodeDecodeError)."""
    load_scenario(_toml_file("a = " + "[" * 1200 + "]" * 1200 + "\n"))


@fz.known("error-line-control-characters", fz.ContractViolation, "multiline", "errors.py InputError.line")
def _bug_control_chars():
    """An unknown key (or any user text quoted in a reason, e.g. a profile path with a NUL or
    a newline) holding a control character ends up raw in the message: `simspec` prints two
    lines (or a terminal escape)."""
    _load_and_run(_scenario('[serving]\n"max\\nbatch" = 2\n'))


@fz.known("data-path-is-a-directory", fz.ContractViolation, "no-file",
          "sim/build.py _profile, trace/schema.py load_trace, study/spec.py load_study",
          text="profile file not found|is a directory|Parquet")
def _bug_directory_path():
    """`profile = ""` (or "." or any folder) resolves to a folder that exists: the error then
    names the folder, with no key, instead of the scenario file and `target.profile`."""
    _load_and_run(_scenario(target='profile = ""'))


@fz.known("negative-seed", ValueError, "simspec/sim/run.py:simulate", "config/scenario.py ServingSpec.seed",
          text="non-negative")
def _bug_negative_seed():
    """`[serving] seed = -1` validates, then numpy refuses it inside simulate (ValueError)."""
    _load_and_run(_scenario("[serving]\nseed = -1\n"))


@fz.known("unusable-data-path", OSError, "files.py:resolve_data_path", "config/files.py resolve_data_path",
          text="too long")
def _bug_long_path():
    """A profile path with a component over 255 bytes: Path.exists() raises OSError
    (ENAMETOOLONG) inside resolve_data_path."""
    _load_and_run(_scenario(target=f'profile = "{"a" * 300}.parquet"'))


@fz.known("exit-layer-beyond-profile", ValueError, "simspec/sim/run.py:simulate", "sim/build.py draft_cost",
          text=r"(layers|head_rows)=\d+ outside")
def _bug_exit_layer_beyond_profile():
    """An early exit at layer 49 of a 30-layer profiled target (or draft.vocab above the
    profile's vocabulary): only a synthetic target's `layers` is checked, so the cost model's
    ValueError ends the simulation."""
    prof = REPO / "profiles" / "intel-xeon" / "smollm2-135m-bf16.parquet"
    _load_and_run(_scenario('[draft]\nkind = "early_exit"\nexit_layer = 49\n[acceptance]\niid = 0.5\n'
                            '[speculation]\ndraft_len = 2\n', target=f'profile = "{prof}"'))


@fz.known("plan-prompts-huge", MemoryError, "plan.py:seqs", "validation/plan.py Plan.prompts")
def _bug_plan_prompts():
    """`prompts = 2**62` in a validation plan: Plan.seqs() builds list(range(2**62))."""
    from simspec.validation.plan import load_plan
    from simspec.validation.scenarios import scenario_for

    plan = fz.read(REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml")
    plan["prompts"] = 2**62
    p = _toml_file(fz.dumps(plan))
    pl = load_plan(p)
    scenario_for(pl, pl.config[0], str(p))


@fz.known("trace-sidecar-not-an-object", AttributeError, "oracle.py", "trace/schema.py load_trace")
def _bug_trace_sidecar_list():
    """A trace whose sidecar JSON is a list: load_trace accepts it as `meta`, and replaying a
    column then calls meta.get (AttributeError)."""
    d = _tmp()
    t = d / "t.parquet"
    shutil.copy(TRACE, t)
    t.with_suffix(".json").write_text("[1, 2]")
    _load_and_run(_toml_file(fz.dumps({
        "target": {"profile": str(REPO / "profiles" / "intel-xeon" / "qwen2.5-coder-1.5b-bf16.parquet")},
        "draft": {"kind": "early_exit", "exit_layer": 21},
        "acceptance": {"trace": str(t), "drafter": "exit21"}, "speculation": {"draft_len": 2},
        "workload": {"requests": 2, "dataset": "trace", "max_output_len": 8}})), t, t.with_suffix(".json"))


@fz.known("study-base-section-not-a-table", (ValueError, TypeError, AttributeError), "simspec/study/space.py",
          "study/spec.py load_study")
def _bug_study_section_type():
    """A study whose base scenario has `speculation = "ab"` (or `draft = [1]`): space.build and
    space.check treat the unvalidated base sections as tables (dict("ab") is a ValueError)."""
    from simspec.study.spec import load_study

    study = fz.read(REPO / "studies" / "quickstart_study.toml")
    study["scenario"] = str(REPO / "studies" / "quickstart.toml")
    study["patch"] = {"speculation": "ab"}
    p = _toml_file(fz.dumps(study))
    try:
        load_study(p)
    except InputError as exc:
        fz.check_input_error(exc, [p], True)


@fz.known("plan-trace-not-found-names-no-plan", fz.ContractViolation, "no-file",
          "validation/live.py load_prompts", text="trace file not found")
def _bug_plan_trace_missing():
    """`trace = " "` in a validation plan: `simspec validate` says "error:  : trace file not
    found: ' '" (load_prompts calls load_trace without the plan file), naming neither the
    plan nor its `trace` key."""
    plan = fz.read(REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml")
    plan["trace"] = " "
    p = _toml_file(fz.dumps(plan))
    code, _, err = fz.run_main("validate", str(p), "--predict-only")
    if code == 2 and not err.startswith(f"error: {p}: trace: "):
        raise fz.ContractViolation("no-file", err.strip())


@pytest.mark.parametrize("bug", [pytest.param(b, id=b.name) for b in fz.KNOWN_BUGS])
def test_known_fuzz_crash_is_fixed(bug):
    """The minimal reproducer of a crash fuzzing found ends in a good InputError (or succeeds)."""
    try:
        bug.reproduce()
    except InputError as exc:  # the reproducers check the contract themselves where they can
        assert all(c.isprintable() for c in exc.line()), exc.line()


# -- shared inputs ------------------------------------------------------------------------

SMALL_PROFILE = REPO / "profiles" / "intel-xeon" / "smollm2-135m-bf16.parquet"
TRACE = REPO / "traces" / "qwen2.5-coder-1.5b__humaneval.parquet"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("fuzzdata"))


def make_data(d: Path) -> dict:
    """Copies of the shipped profile and a 6-sequence slice of a shipped trace."""
    prof = d / SMALL_PROFILE.name
    shutil.copy(SMALL_PROFILE, prof)
    shutil.copy(SMALL_PROFILE.with_suffix(".json"), prof.with_suffix(".json"))
    table = pq.read_table(TRACE).slice(0, 6)
    keep = [c for c in table.column_names if not c.startswith(("rank:", "beta:"))
            or c.split(":", 1)[1].split("@")[0] in ("exit21", "exit26", "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b/k8192")]
    trace = d / "slice.parquet"
    pq.write_table(table.select(keep), trace)
    meta = json.loads(TRACE.with_suffix(".json").read_text())
    kept = table.select(keep)  # the sidecar describes the slice (a sidecar must agree with its Parquet)
    meta.update(sequences=6, prompts=6, positions=int(sum(kept.column("output_len").to_pylist())),
                drafters=[c[5:] for c in keep if c.startswith("rank:")])
    trace.with_suffix(".json").write_text(json.dumps(meta))
    return {"profile": prof, "trace": trace, "profiles": REPO / "profiles" / "intel-xeon"}


def scenario_bases(data) -> list[dict]:
    quick = fz.read(REPO / "studies" / "quickstart.toml")
    quick["workload"]["requests"] = 12  # the shipped file with a short workload
    prof = {
        "target": {"name": "smollm2-135m", "profile": str(data["profile"])},
        "draft": {"kind": "early_exit", "exit_layer": 15, "vocab": 4096},
        "acceptance": {"rank_probs": [0.5, 0.2, 0.1]},
        "speculation": {"tree": [2, 1]},
        "workload": {"requests": 8, "arrival": "closed", "concurrency": 4,
                     "prompt_len": {"dist": "uniform", "min": 8, "max": 300}, "output_len": 24},
        "serving": {"max_batch": 4, "kv_capacity_tokens": 20000, "seed": 3},
    }
    traced = {
        "target": {"name": "qwen2.5-coder-1.5b", "profile": str(data["profiles"] / "qwen2.5-coder-1.5b-bf16.parquet")},
        "draft": {"kind": "model", "name": "qwen2.5-coder-0.5b",
                  "profile": str(data["profiles"] / "qwen2.5-coder-0.5b-bf16.parquet")},
        "acceptance": {"trace": str(data["trace"]), "drafter": "qwen2.5-coder-0.5b", "sequences": [0, 2, 4]},
        "speculation": {"draft_len": 3, "first_round": "with_prefill", "clip_to_budget": True},
        "workload": {"requests": 3, "arrival": "closed", "concurrency": 1, "dataset": "trace", "max_output_len": 40},
        "serving": {"max_batch": 1},
    }
    return [quick, prof, traced]


SCENARIO_SCHEMA = fz.schema_paths(Scenario)
BOUND = 20_000  # output tokens a fuzzed simulation may ask for (beyond: validated, not run)


def _len_bound(spec) -> float:
    if spec is None:
        return 4096
    if isinstance(spec, int):
        return spec
    if isinstance(spec, UniformLen):
        return max(spec.min, spec.max)
    if isinstance(spec, LogNormalLen):
        return min(spec.max, spec.median * math.exp(6 * spec.sigma)) if spec.sigma < 100 else spec.max
    return math.inf


def bounded(sc: Scenario) -> bool:
    """Is this valid scenario small enough to simulate in a fuzz case?"""
    w = sc.workload
    out = min(_len_bound(w.output_len), w.max_output_len or math.inf)
    tree = sc.speculation.tree or []
    nodes = sum(math.prod(tree[:i + 1]) for i in range(len(tree)))
    return (w.requests * out <= BOUND and sc.placement.replicas <= 8 and sc.gamma <= 64 and nodes <= 4096
            and (sc.serving.max_batch <= 4096))


def simulate_checked(sc: Scenario, file: Path) -> dict | None:
    from simspec.sim.run import simulate

    if not bounded(sc):
        CASES["not simulated (beyond BOUND)"] += 1
        return None
    s = simulate(sc, str(file)).summary
    assert s["requests"] == sc.workload.requests
    for k, v in s.items():
        assert isinstance(v, (int, float)) and not (isinstance(v, float) and math.isinf(v) and k != "wall_s"), (k, v)
    return s


def _run_scenario(path: Path, refs: list[Path]) -> str:
    try:
        sc = load_scenario(path)
        simulate_checked(sc, path)
        return "ok"
    except InputError as exc:
        fz.check_input_error(exc, [path, *refs], fz.parses_as_toml(path))
        return "input error"


# -- scenario files -----------------------------------------------------------------------

@pytest.mark.parametrize("i", [0, 1, 2], ids=["quickstart", "profile-tree", "trace"])
def test_each_scenario_base_is_valid_and_simulates(data, i, tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(fz.dumps(scenario_bases(data)[i]))
    assert simulate_checked(load_scenario(p), p) is not None


def test_fuzz_scenario_files(data):
    bases = scenario_bases(data)
    n0 = CASES["scenario"]
    refs = [data["profile"], data["trace"], data["trace"].with_suffix(".json"),
            *sorted(data["profiles"].glob("*.parquet"))]

    @settings(max_examples=n_examples("scenario"), suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(bases))).flatmap(
        lambda i: fz.mutated(bases[i], SCENARIO_SCHEMA).flatmap(fz.file_bytes)))
    def case(raw: bytes):
        d = _tmp()
        try:
            p = d / "scenario.toml"
            p.write_bytes(raw)
            CASES["scenario"] += 1
            CASES["scenario: " + fz.outcome(lambda: _run_scenario(p, refs), CASES)] += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("scenario", n0)


# -- study files ----------------------------------------------------------------------------

def study_bases() -> list[dict]:
    quick = fz.read(REPO / "studies" / "quickstart_study.toml")
    quick["workload"]["requests"] = 10
    quick["scenario"] = str(REPO / "studies" / "quickstart.toml")
    inline = fz.read(REPO / "studies" / "quickstart_study.toml")
    inline["scenario"] = fz.read(REPO / "studies" / "quickstart.toml")
    inline["workload"] = {"requests": 6, "arrival": "closed", "concurrency": 2, "prompt_len": 32, "output_len": 16}
    inline["search"]["tree"] = ["2,1", "2,2,1"]
    for k in ("model", "ngram"):
        inline["drafters"][k]["acceptance"] = {"rank_probs": [0.5, 0.2]}
    inline["drafters"]["early_exit"] = {"acceptance": {"rank_probs": [0.4, 0.1]}, "vocab_size": 151936, "head_ms": 5.0}
    inline["objectives"] = {"throughput": "maximize", "tpot_p99": "minimize"}
    inline["capacity"] = {"rate": 2.0, "max_replicas": 4, "requests": 8}
    return [quick, inline]


def _study_schema():
    from simspec.study.spec import StudyFile

    return fz.schema_paths(StudyFile)


def _run_study(path: Path) -> str:
    from simspec.study import space
    from simspec.study.evaluate import Evaluator
    from simspec.study.spec import load_study

    try:
        spec = load_study(path)
    except InputError as exc:
        fz.check_input_error(exc, [path, REPO / "studies" / "quickstart.toml"], fz.parses_as_toml(path))
        return "input error"
    # what each trial does with a point of the space: build, validate, simulate; a trial may
    # end in an InputError (it is recorded as invalid) but in nothing else
    ev = Evaluator(spec)
    kinds = space.drafter_choices(spec)
    gmax = spec.file.search.gamma.high if hasattr(spec.file.search.gamma, "high") else max(spec.file.search.gamma)
    points = [{"gamma": 0}] + [space.probe(spec, k, max(1, gmax)) for k in kinds]
    for p in points:
        for knob in ("max_batch",):
            v = getattr(spec.file.search, knob)
            if v is not None:
                p[knob] = v.low if hasattr(v, "low") else min(v)
        try:
            sc = ev.scenario(p)
        except InputError as exc:
            fz.check_input_error(exc, [path], False)
            continue
        if not bounded(sc):
            CASES["not simulated (beyond BOUND)"] += 1
            continue
        try:
            ev.run(sc)
        except InputError as exc:
            fz.check_input_error(exc, [path, REPO / "studies" / "quickstart.toml"], False)
    return "ok"


def test_fuzz_study_files():
    bases = study_bases()
    schema = _study_schema()
    n0 = CASES["study"]

    @settings(max_examples=n_examples("study"), suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(bases))).flatmap(lambda i: fz.mutated(bases[i], schema).flatmap(fz.file_bytes)))
    def case(raw: bytes):
        d = _tmp()
        try:
            p = d / "study.toml"
            p.write_bytes(raw)
            CASES["study"] += 1
            CASES["study: " + fz.outcome(lambda: _run_study(p), CASES)] += 1
            assert sorted(x.name for x in d.iterdir()) == ["study.toml"]  # loading writes nothing
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("study", n0)


# -- validation plans -----------------------------------------------------------------------

def plan_base(data) -> dict:
    plan = fz.read(REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml")
    plan["trace"] = str(data["trace"])
    plan.pop("traces", None)  # the shipped per-dtype traces hold the shipped prompts, not these
    plan["profiles"] = {m: {d: str(REPO / f) for d, f in by.items()} for m, by in plan["profiles"].items()}
    plan["max_new_tokens"] = 24
    plan["prompts"] = 2
    return plan


def _plan_schema():
    from simspec.validation.plan import Plan

    return fz.schema_paths(Plan)


def _run_plan(path: Path, refs: list[Path]) -> str:
    from simspec.sim.run import simulate
    from simspec.validation.plan import load_plan
    from simspec.validation.scenarios import scenario_for

    try:
        plan = load_plan(path)
        scs = [scenario_for(plan, c, str(path)) for c in plan.config]
        for sc in scs[:2]:
            if bounded(sc):
                simulate(sc, str(path))
        return "ok"
    except InputError as exc:
        fz.check_input_error(exc, [path, *refs], fz.parses_as_toml(path))
        return "input error"


def test_fuzz_validation_plans(data):
    base = plan_base(data)
    from simspec.validation.plan import LiveConfig

    # the plan's own keys, and those of a few of its [[config]] entries
    schema = _plan_schema() + [(("config", i) + p, l) for i in (0, 3, 7) for p, l in fz.schema_paths(LiveConfig)]
    refs = [data["trace"], data["trace"].with_suffix(".json"), *sorted(data["profiles"].glob("*.parquet"))]
    n0 = CASES["plan"]

    @settings(max_examples=n_examples("plan"), suppress_health_check=list(HealthCheck))
    @given(fz.mutated(base, schema).flatmap(fz.file_bytes))
    def case(raw: bytes):
        d = _tmp()
        try:
            p = d / "plan.toml"
            p.write_bytes(raw)
            CASES["plan"] += 1
            CASES["plan: " + fz.outcome(lambda: _run_plan(p, refs), CASES)] += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("plan", n0)


# -- profiles -------------------------------------------------------------------------------

PROFILE_COLUMNS = ["kind", "batch", "q", "context", "rows", "total_s", "total_median_s", "total_max_s",
                   "layer_s", "head_s", "rest_s", "repeats"]
SIDECAR_BAD = st.one_of(fz.SCALARS, st.just(None), st.just({}), st.just([]), st.just({"layers": "x"}))


@st.composite
def profile_damage(draw):
    """A list of operations on (table, sidecar, files)."""
    ops = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        ops.append(draw(st.one_of(
            st.tuples(st.just("cell"), st.sampled_from(PROFILE_COLUMNS), st.integers(0, 10_000),
                      st.one_of(fz.ODD_FLOATS, st.sampled_from([-1.0, 0.0, -1e-3, 1e12]), fz.HUGE_INTS,
                                st.just(None))),
            st.tuples(st.just("column"), st.sampled_from(PROFILE_COLUMNS),
                      st.sampled_from(["drop", "string", "rename", "all_nan", "negate", "zero", "float"])),
            st.tuples(st.just("rows"), st.sampled_from(["drop_one", "duplicate", "shuffle", "drop_kind", "only_head",
                                                        "empty", "unknown_kind", "none_kind", "reverse"]),
                      st.integers(0, 10_000)),
            st.tuples(st.just("sidecar"), st.sampled_from(["schema_version", "dims", "dims.layers", "dims.vocab",
                                                           "dims.kv_heads", "dims.head_dim", "kv_bytes_per_token",
                                                           "weights_bytes", "token_block", "grid", "model"]),
                      st.one_of(st.just("__delete__"), SIDECAR_BAD, fz.HUGE_INTS)),
            st.tuples(st.just("file"), st.sampled_from(["truncate_parquet", "junk_parquet", "no_sidecar",
                                                        "sidecar_not_json", "sidecar_list", "sidecar_truncate",
                                                        "parquet_is_dir", "sidecar_binary"]),
                      st.integers(0, 10_000)),
        )))
    return ops


def apply_profile_damage(src: Path, dst: Path, ops) -> None:
    df = pd.read_parquet(src)
    meta = json.loads(src.with_suffix(".json").read_text())
    file_ops = []
    for op in ops:
        kind = op[0]
        if kind == "cell" and op[1] in df.columns and len(df):
            col, i, v = op[1], op[2] % len(df), op[3]
            numeric = pd.api.types.is_numeric_dtype(df[col])
            if isinstance(v, int) and abs(v) > 2**62:
                v = float(v)  # Parquet has no integers that large
            if not numeric:  # a text column holds text (or nothing)
                df[col] = df[col].astype(object)
                v = None if v is None else str(v)
            elif v is None or isinstance(v, float):
                df[col] = df[col].astype(float)
            df.loc[df.index[i], col] = v
        elif kind == "column" and op[1] in df.columns:
            col, how = op[1], op[2]
            if how == "drop":
                df = df.drop(columns=[col])
            elif how == "string":
                df[col] = df[col].astype(str)
            elif how == "rename":
                df = df.rename(columns={col: col + "_x"})
            elif how == "all_nan":
                df[col] = np.nan
            elif how in ("negate", "zero") and pd.api.types.is_numeric_dtype(df[col]):
                df[col] = -df[col] if how == "negate" else 0
            elif how == "float" and pd.api.types.is_numeric_dtype(df[col]):
                df[col] = df[col].astype(float) + 0.5
        elif kind == "rows":
            how, i = op[1], op[2]
            if how == "drop_one" and len(df):
                df = df.drop(index=df.index[i % len(df)])
            elif how == "duplicate" and len(df):
                df = pd.concat([df, df.iloc[[i % len(df)]]])
            elif how == "shuffle":
                df = df.sample(frac=1.0, random_state=i)
            elif how == "reverse":
                df = df.iloc[::-1]
            elif how == "drop_kind" and "kind" in df.columns:
                df = df[df["kind"].astype(str) != ["decode", "prefill", "head"][i % 3]]
            elif how == "only_head" and "kind" in df.columns:
                df = df[df["kind"].astype(str) == "head"]
            elif how == "empty":
                df = df.iloc[0:0]
            elif how in ("unknown_kind", "none_kind") and "kind" in df.columns and len(df):
                df["kind"] = df["kind"].astype(object)
                df.loc[df.index[i % len(df)], "kind"] = "verify" if how == "unknown_kind" else None
        elif kind == "sidecar":
            key, v = op[1], op[2]
            parts = key.split(".")
            tgt = meta
            for k in parts[:-1]:
                tgt = tgt.get(k) if isinstance(tgt, dict) else None
            if isinstance(tgt, dict):
                if v == "__delete__":
                    tgt.pop(parts[-1], None)
                else:
                    tgt[parts[-1]] = v
        elif kind == "file":
            file_ops.append(op)
    df.to_parquet(dst, index=False)
    side = dst.with_suffix(".json")
    side.write_text(json.dumps(meta))
    for _, how, i in sorted(file_ops, key=lambda op: op[1] == "parquet_is_dir"):
        if how in ("truncate_parquet", "junk_parquet") and dst.is_file():
            data = dst.read_bytes()
            cut = i % max(len(data), 1)
            dst.write_bytes(data[:cut] if how == "truncate_parquet" else data[:cut] + b"\x00junk" + data[cut + 5:])
        elif how == "no_sidecar":
            side.unlink(missing_ok=True)
        elif how == "sidecar_not_json":
            side.write_text("{not json")
        elif how == "sidecar_list":
            side.write_text("[1, 2]")
        elif how == "sidecar_truncate" and side.exists():
            t = side.read_bytes()
            side.write_bytes(t[: i % max(len(t), 1)])
        elif how == "sidecar_binary":
            side.write_bytes(b"\xff\xfe\x00\x81" * 8)
        elif how == "parquet_is_dir" and dst.is_file():
            dst.unlink()
            dst.mkdir()


def _prices(cm) -> list[float]:
    L, V = cm.num_layers, cm.vocab_size
    out = []
    for b, q, c in [(1, 1, 128), (3, 5, 700), (64, 1, 9000)]:
        out.append(cm.latency_s("decode", b, q, c))
        out.append(cm.latency_s("decode", b, q, c, layers=max(0, L // 2), head_rows=max(1, V // 3)))
        out.append(cm.latency_s("decode", b, q, c, logits=1))
    out += [cm.latency_s("prefill", 2, 100, 0), cm.latency_s("prefill", 1, 4000, 0, layers=L)]
    return out


def test_fuzz_profiles(data):
    import warnings

    from simspec.profile.costmodel import ProfileCostModel

    n0 = CASES["profile"]

    @settings(max_examples=n_examples("profile"), suppress_health_check=list(HealthCheck))
    @given(profile_damage())
    def case(ops):
        d = _tmp()
        try:
            p = d / "p.parquet"
            apply_profile_damage(data["profile"], p, ops)
            CASES["profile"] += 1

            def run() -> str:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        cm = ProfileCostModel.load(p)
                        prices = _prices(cm)
                    assert all(math.isfinite(x) and x > 0 for x in prices), prices
                    return "ok"
                except InputError as exc:
                    fz.check_input_error(exc, [p, p.with_suffix(".json")], False)
                    return "input error"

            CASES["profile: " + fz.outcome(run, CASES)] += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("profile", n0)


# -- traces ---------------------------------------------------------------------------------

@st.composite
def trace_damage(draw):
    ops = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        ops.append(draw(st.one_of(
            st.tuples(st.just("base"), st.sampled_from(["seq", "prompt_len", "output_len"]),
                      st.integers(0, 100), st.one_of(fz.HUGE_INTS, st.integers(-3, 3), st.just(None))),
            st.tuples(st.just("list"), st.sampled_from(["tokens", "prompt_ids", "rank:exit21", "beta:exit21@1",
                                                        "rank:qwen2.5-coder-0.5b", "beta:qwen2.5-coder-0.5b@1"]),
                      st.integers(0, 100), st.sampled_from(["nan", "neg", "huge", "drop_entry", "add_entry", "null",
                                                           "null_entry", "empty"])),
            st.tuples(st.just("column"), st.sampled_from(["seq", "prompt_len", "output_len", "tokens", "prompt_ids",
                                                          "rank:exit21", "beta:exit21@1", "rank:exit26"]),
                      st.sampled_from(["drop", "to_string", "to_float", "scalar", "rename_bad", "rename_beta_bad"])),
            st.tuples(st.just("table"), st.sampled_from(["empty", "unknown_column", "duplicate_row", "reverse",
                                                         "one_row"])),
            st.tuples(st.just("sidecar"), st.sampled_from(["delete", "not_json", "list", "vocab", "stop_ids",
                                                           "calibration", "exit_layers", "layers", "rank_cap"]),
                      st.one_of(fz.SCALARS, st.just(None), st.just([]), st.just({}))),
            st.tuples(st.just("file"), st.sampled_from(["truncate", "junk", "empty", "is_dir"]), st.integers(0, 10**6)),
        )))
    return ops


def apply_trace_damage(src: Path, dst: Path, ops) -> None:
    table = pq.read_table(src)
    cols = {n: table.column(n).to_pylist() for n in table.column_names}
    types = {n: table.schema.field(n).type for n in table.column_names}
    meta = json.loads(src.with_suffix(".json").read_text())
    file_ops = []
    for op in ops:
        k = op[0]
        n = len(next(iter(cols.values()))) if cols else 0
        if k == "base" and op[1] in cols and n:
            cols[op[1]][op[2] % n] = op[3] if op[3] is None or abs(op[3]) < 2**31 else -1
        elif k == "list" and op[1] in cols and n:
            name, i, how = op[1], op[2] % n, op[3]
            lst = cols[name][i]
            if not isinstance(lst, list):
                continue
            lst = list(lst)
            beta = name.startswith("beta:")
            if how == "nan" and lst:
                lst[0] = math.nan if beta else 0
            elif how == "neg" and lst:
                lst[-1] = -1.0 if beta else -5
            elif how == "huge" and lst:
                lst[0] = 7.0 if beta else 127
            elif how == "drop_entry" and lst:
                lst = lst[:-1]
            elif how == "add_entry":
                lst = lst + [lst[0] if lst else 0]
            elif how == "null_entry" and lst:
                lst[0] = None
            elif how == "empty":
                lst = []
            cols[name][i] = None if how == "null" else lst
        elif k == "column" and op[1] in cols:
            name, how = op[1], op[2]
            if how == "drop":
                cols.pop(name)
                types.pop(name)
            elif how == "to_string":
                cols[name] = [str(x) for x in cols[name]]
                types[name] = pa.string()
            elif how == "to_float":
                cols[name] = [([None if y is None else float(y) for y in x] if isinstance(x, list) else float(x))
                              if x is not None else None for x in cols[name]]
                types[name] = pa.list_(pa.float64()) if pa.types.is_list(types[name]) else pa.float64()
            elif how == "scalar":
                cols[name] = [len(x) if isinstance(x, list) else x for x in cols[name]]
                types[name] = pa.int64()
            elif how in ("rename_bad", "rename_beta_bad"):
                new = "rank:bad name!" if how == "rename_bad" else "beta:exit21@warm"
                cols[new] = cols.pop(name)
                types[new] = types.pop(name)
        elif k == "table":
            how = op[1]
            if how == "empty":
                cols = {c: [] for c in cols}
            elif how == "unknown_column":
                cols["extra"] = [1] * n
                types["extra"] = pa.int64()
            elif how == "duplicate_row" and n:
                cols = {c: v + v[:1] for c, v in cols.items()}
            elif how == "reverse":
                cols = {c: v[::-1] for c, v in cols.items()}
            elif how == "one_row":
                cols = {c: v[:1] for c, v in cols.items()}
        elif k == "sidecar":
            key, v = op[1], op[2]
            if key == "delete":
                meta = None
            elif key == "not_json":
                meta = "{oops"
            elif key == "list":
                meta = [1, 2, 3]
            elif isinstance(meta, dict):
                meta[key] = v
        elif k == "file":
            file_ops.append(op)
    arrays = {}
    for c, v in cols.items():
        try:
            arrays[c] = pa.array(v, type=types[c])
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays[c] = pa.array([None if x is None else str(x) for x in v], type=pa.string())
    pq.write_table(pa.table(arrays), dst)
    side = dst.with_suffix(".json")
    if meta is None:
        pass
    elif isinstance(meta, str):
        side.write_text(meta)
    else:
        side.write_text(json.dumps(meta))
    for _, how, i in file_ops:
        if how in ("truncate", "junk") and dst.is_file():
            b = dst.read_bytes()
            cut = i % max(len(b), 1)
            dst.write_bytes(b[:cut] if how == "truncate" else b[:cut] + b"\xde\xad\xbe\xef" + b[cut + 4:])
        elif how == "empty" and dst.is_file():
            dst.write_bytes(b"")
        elif how == "is_dir" and dst.is_file():
            dst.unlink()
            dst.mkdir()


def _trace_scenario(trace: Path, data, drafter: str, kind: str) -> dict:
    sc = {
        "target": {"name": "qwen2.5-coder-1.5b", "profile": str(data["profiles"] / "qwen2.5-coder-1.5b-bf16.parquet")},
        "draft": {"kind": kind},
        "acceptance": {"trace": str(trace), "drafter": drafter},
        "speculation": {"draft_len": 3},
        "workload": {"requests": 4, "arrival": "closed", "concurrency": 2, "dataset": "trace", "max_output_len": 40},
        "serving": {"max_batch": 2},
    }
    if kind == "early_exit":
        sc["draft"]["exit_layer"] = 21
    elif kind == "model":
        sc["draft"] |= {"name": "qwen2.5-coder-0.5b",
                        "profile": str(data["profiles"] / "qwen2.5-coder-0.5b-bf16.parquet")}
    return sc


def test_fuzz_traces(data):
    from simspec.config import parse_scenario
    from simspec.sim.run import simulate
    from simspec.trace.schema import load_trace

    n0 = CASES["trace"]

    @settings(max_examples=n_examples("trace"), suppress_health_check=list(HealthCheck))
    @given(trace_damage(), st.sampled_from([("exit21", "early_exit"), ("qwen2.5-coder-0.5b", "model"),
                                            ("ngram", "ngram"), ("exit21@1", "early_exit")]))
    def case(ops, use):
        d = _tmp()
        try:
            p = d / "t.parquet"
            apply_trace_damage(data["trace"], p, ops)
            CASES["trace"] += 1
            files = [p, p.with_suffix(".json")]

            def run() -> str:
                try:
                    tr = load_trace(p)
                    assert tr.n_seq >= 1 and len(tr.offsets) == tr.n_seq + 1
                    sc = parse_scenario(_trace_scenario(p, data, *use), str(d / "s.toml"))
                    s = simulate(sc, str(d / "s.toml")).summary
                    assert s["requests"] == 4
                    return "ok"
                except InputError as exc:
                    fz.check_input_error(exc, files + [d / "s.toml"], False)
                    return "input error"

            CASES["trace: " + fz.outcome(run, CASES)] += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("trace", n0)


# -- the command line -----------------------------------------------------------------------

def test_fuzz_cli_simulate_and_validate(data):
    """`simspec simulate FILE --json --out DIR` and `simspec validate PLAN --predict-only`:
    exit 0, or exit 2 with one `error: FILE: ...` line on stderr, no traceback, and no output
    folder or temporary file left behind."""
    bases = scenario_bases(data)
    plan = plan_base(data)
    n0 = CASES["cli"]

    @settings(max_examples=n_examples("cli"), suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(bases) + 1)).flatmap(
        lambda i: st.tuples(st.just(i), fz.mutated(bases[i] if i < len(bases) else plan,
                                                   SCENARIO_SCHEMA if i < len(bases) else _plan_schema(),
                                                   max_mutations=2).flatmap(fz.file_bytes))))
    def case(arg):
        i, raw = arg
        d = _tmp()
        try:
            p = d / ("scenario.toml" if i < len(bases) else "plan.toml")
            p.write_bytes(raw)
            out = d / "out"
            CASES["cli"] += 1
            if i < len(bases):
                try:
                    if not bounded(load_scenario(p)):
                        CASES["not simulated (beyond BOUND)"] += 1
                        return
                except Exception:  # noqa: BLE001 - the command itself says what is wrong below
                    pass
                args = ("simulate", str(p), "--json", "--out", str(out))
            else:
                args = ("validate", str(p), "--predict-only", "--out", str(out))

            def run() -> str:
                code, stdout, stderr = fz.run_main(*args)
                assert "Traceback" not in stderr, stderr
                if code == 0:
                    if i < len(bases):
                        json.loads(stdout.splitlines()[0])
                        assert sorted(x.name for x in out.iterdir()) == ["COMPLETE.json", "requests.parquet",
                                                                          "scenario.json", "summary.json"]
                    return "ok"
                assert code == 2, (code, stderr)
                assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
                # one error line (warnings, e.g. a profile captured on another machine, may precede it)
                lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith("warning: ")]
                if len(lines) != 1 or any(not c.isprintable() for c in lines[0]):
                    raise fz.ContractViolation("multiline", stderr)
                if not (lines[0].startswith(f"error: {p}") or lines[0].startswith("error: /")):
                    raise fz.ContractViolation("no-file", lines[0])  # names neither this file nor a data file
                return "exit 2"

            CASES["cli: " + fz.outcome(run, CASES)] += 1
            _no_leftovers(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    case()
    _count("cli", n0)
