"""`simspec validate` end to end on tiny models: the live engine and the simulator replay agree
on acceptance exactly, the table is written whole, and bad plans are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")

from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402

PROMPTS = ["def add(a, b):\n    return a + b\n", "hello hello hello", "The quick brown fox jumps",
           "1, 2, 3, 4, 5,"]

CONFIGS = """
[[config]]
dtype = "fp32"

[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
gamma = 3

[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 2
vocab = 96

[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
tree = [2, 1]

[[config]]
dtype = "fp32"
draft = "ngram"
gamma = 3
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tracehelpers import capture_tiny

    d = tmp_path_factory.mktemp("val")
    capture_tiny(d, PROMPTS, target="tiny:llama:4", prompts=4, max_new_tokens=20, drafters=["tiny:qwen2:2"],
                 exit_layers=[2, 3], vocabs=[None, 96], temperatures=[1.0], batch=2, dtype="fp32")
    for model, name in (("tiny:llama:4", "t"), ("tiny:qwen2:2", "q")):
        res = run_cli("profile", "--model", model, "--dtype", "fp32", "--threads", "1", "--quick",
                      "--out", str(d / f"{name}.parquet"), cache=d)
        assert res.returncode == 0, res.stderr
    return d


def write_plan(d: Path, body: str = CONFIGS, **top) -> Path:
    head = {"name": "tiny", "target": "tiny:llama:4", "trace": "tiny.parquet", "prompts": 3,
            "max_new_tokens": 20, "threads": 1, **top}
    lines = [f"{k} = {json.dumps(v)}" for k, v in head.items() if v is not None]
    lines += ["[profiles]", '"tiny:llama:4" = { fp32 = "t.parquet" }', '"tiny:qwen2:2" = { fp32 = "q.parquet" }',
              '"tiny:qwen2:4" = { fp32 = "t.parquet" }']
    p = d / "plan.toml"
    p.write_text("\n".join(lines) + "\n" + body)
    return p


def test_validate_writes_table_and_acceptance_matches_replay_exactly(setup):
    plan = write_plan(setup)
    out = setup / "out"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "tiny.csv")
    for col in ("config", "predicted_tok_s", "measured_tok_s", "error_pct",
                "predicted_tokens_per_round", "measured_tokens_per_round", "outputs_equal_trace"):
        assert col in df.columns
    assert len(df) == 6 and (df["measured_tok_s"] > 0).all() and (df["predicted_tok_s"] > 0).all()
    assert (out / "tiny.png").stat().st_size > 1000
    meta = json.loads((out / "tiny.json").read_text())
    assert meta["agreement"]["n"] == 6 and meta["sequences"] == [0, 1, 2]
    # fp32 tiny model at batch 1: the live outputs are the traced ones, so the simulator's
    # replay of the rank columns must give the live tokens per round exactly
    assert (df["outputs_equal_trace"] == 3).all(), df[["config", "outputs_equal_trace"]]
    assert df["measured_tokens_per_round"].to_numpy() == pytest.approx(
        df["predicted_tokens_per_round"].to_numpy(), rel=1e-9)
    assert df["measured_tokens_per_round"].max() > 1.0  # some drafter is accepted at all
    # the trace was decoded at batch 2: said once, and recorded beside the table
    num = meta["trace_numerics"]
    assert (num["trace_batch"], num["trace_dtype"], num["live_batch"], num["live_dtypes"], num["match"]) == \
        (2, "fp32", 1, ["fp32"], False)
    assert res.stderr.count("note: tiny.parquet was decoded at batch 2 in fp32") == 1, res.stderr
    assert "Spearman" in res.stdout and f"wrote {out / 'tiny.csv'}" in res.stdout
    page = (out / "tiny.html").read_text()  # the one-page report beside the table
    assert f"and {out / 'tiny.html'}" in res.stdout and page.count("data:image/png;base64,") == 1


def test_predict_only_and_config_subset(setup):
    plan = write_plan(setup)
    res = run_cli("validate", str(plan), "--configs", "1,3", "--predict-only", "--out", str(setup / "p"), cache=setup)
    assert res.returncode == 0, res.stderr
    assert len([l for l in res.stdout.splitlines() if "predicted" in l]) == 2
    assert not (setup / "p").exists()


@pytest.mark.parametrize("mutate,needles", [
    (dict(body=CONFIGS + "\n[[config]]\ndtype = \"fp16\"\n"), ("config[6].dtype",)),
    (dict(body=CONFIGS.replace('gamma = 2\nvocab = 96', 'gamma = 2\nvocab = 96\nbogus = 1')), ("bogus", "unknown key")),
    (dict(body='[[config]]\ndtype = "bf16"\n'), ("profiles.tiny:llama:4", "no bf16 profile")),
    (dict(target="tiny:qwen2:2"), ("target", "not the model the trace")),
    (dict(prompts=9), ("prompts", "past the trace")),
])
def test_bad_plans_are_one_line_errors_and_write_nothing(setup, mutate, needles):
    body = mutate.pop("body", CONFIGS)
    plan = write_plan(setup, body, **mutate)
    out = setup / "bad"
    assert_one_line_exit_2(run_cli("validate", str(plan), "--out", str(out), cache=setup), *needles)
    assert not out.exists()


def test_unknown_config_selector(setup):
    plan = write_plan(setup)
    assert_one_line_exit_2(run_cli("validate", str(plan), "--configs", "nope", "--predict-only", cache=setup),
                           "--configs", "nope")


def test_foreign_profile_is_refused_unless_allowed(setup):
    """A profile whose sidecar says it was captured on another processor prices another machine."""
    import shutil

    shutil.copy(setup / "t.parquet", setup / "xeon.parquet")
    meta = json.loads((setup / "t.json").read_text())
    meta["machine"] = {"cpu": "Intel(R) Xeon(R) Platinum 8480+", "vendor": "GenuineIntel", "arch": "x86_64",
                       "cores": 2, "isa": ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]}
    (setup / "xeon.json").write_text(json.dumps(meta))
    plan = write_plan(setup, '[[config]]\ndtype = "fp32"\n')
    plan.write_text(plan.read_text().replace('"tiny:llama:4" = { fp32 = "t.parquet" }',
                                             '"tiny:llama:4" = { fp32 = "xeon.parquet" }'))
    out = setup / "foreign"
    assert_one_line_exit_2(run_cli("validate", str(plan), "--out", str(out), cache=setup),
                           "xeon.parquet was captured on Intel(R) Xeon(R) Platinum 8480+", "--allow-foreign-profile")
    assert not out.exists()
    res = run_cli("validate", str(plan), "--out", str(out), "--allow-foreign-profile", cache=setup)
    assert res.returncode == 0, res.stderr
    assert "warning: " in res.stderr and "Xeon" in res.stderr
    meta = json.loads((out / "tiny.json").read_text())
    assert meta["machine"]["cpu"] and "isa" in meta["machine"]
    recorded = meta["inputs"]["profiles"]["xeon.parquet"]["machine"]
    assert recorded["cpu"] == "Intel(R) Xeon(R) Platinum 8480+"
    # the profile captured here passes without the flag
    ok = write_plan(setup, '[[config]]\ndtype = "fp32"\n')
    assert run_cli("validate", str(ok), "--predict-only", cache=setup).stderr.count("warning") == 0


def test_measured_result_repriced_without_live_runs(setup):
    """--measured prices an earlier run's measurements with the plan's profiles: same profiles,
    same table; a plan that decodes something else is refused."""
    plan = write_plan(setup, '[[config]]\ndtype = "fp32"\n\n[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ngamma = 2\n')
    first = setup / "m1"
    assert run_cli("validate", str(plan), "--out", str(first), cache=setup).returncode == 0
    again = setup / "m2"
    res = run_cli("validate", str(plan), "--measured", str(first / "tiny.json"), "--out", str(again), cache=setup)
    assert res.returncode == 0, res.stderr
    a, b = pd.read_csv(first / "tiny.csv"), pd.read_csv(again / "tiny.csv")
    pd.testing.assert_frame_equal(a, b)
    meta = json.loads((again / "tiny.json").read_text())
    assert meta["measured_from"]["path"] == str(first / "tiny.json")
    other = write_plan(setup, '[[config]]\ndtype = "fp32"\n', max_new_tokens=12)
    assert_one_line_exit_2(run_cli("validate", str(other), "--measured", str(first / "tiny.json"), cache=setup),
                           "max_new_tokens", "was measured with 20")


def test_a_trace_per_dtype_replays_that_dtypes_configs(setup):
    """`traces = { fp32 = ... }`: the fp32 configs replay a trace decoded with the live run's
    numerics (batch 1, fp32): no numerics note, `match` recorded with the trace used, tokens per
    round equal to the replay. Its trimmed head keeps the primary trace's rows (`simspec trace
    --calibration-from`); one keeping other rows, or tracing other prompts, is refused."""
    import shutil

    from tracehelpers import capture_tiny

    from simspec.validation.run import load_inputs

    (setup / "b1").mkdir(exist_ok=True)
    capture_tiny(setup / "b1", PROMPTS, target="tiny:llama:4", prompts=4, max_new_tokens=20,
                 drafters=["tiny:qwen2:2"], exit_layers=[2, 3], vocabs=[None, 96], temperatures=[1.0],
                 batch=1, dtype="fp32", calibration_from=str(setup / "tiny.parquet"))
    (setup / "other").mkdir(exist_ok=True)  # other prompts (only they matter to the check)
    capture_tiny(setup / "other", PROMPTS[::-1], target="tiny:llama:4", prompts=3, max_new_tokens=4,
                 vocabs=[None, 96], batch=3, dtype="fp32", calibration_from=str(setup / "tiny.parquet"))
    primary = json.loads((setup / "tiny.json").read_text())["calibration"]
    borrowed = json.loads((setup / "b1" / "tiny.json").read_text())["calibration"]
    assert borrowed["order"] == primary["order"][:96] and borrowed["from"] == str(setup / "tiny.parquet")
    body = ('[[config]]\ndtype = "fp32"\n\n[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ngamma = 2\n'
            '\n[[config]]\ndtype = "fp32"\ndraft = "early_exit:3"\ngamma = 2\nvocab = 96\n')
    plan = write_plan(setup, body)
    plan.write_text(plan.read_text().replace("[profiles]", 'traces = { fp32 = "b1/tiny.parquet" }\n[profiles]'))
    inp = load_inputs(plan, None)
    assert [sc.acceptance.trace for sc in inp.scenarios] == ["b1/tiny.parquet"] * 3
    assert inp.trace_of("fp32")[0].meta["batch"] == 1 and inp.trace_of("bf16")[0] is inp.trace
    out = setup / "per-dtype"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    assert "note:" not in res.stderr, res.stderr
    meta = json.loads((out / "tiny.json").read_text())
    num = meta["trace_numerics"]
    assert num["match"] is True and num["note"] is None
    assert num["by_dtype"] == {"fp32": {"trace": "b1/tiny.parquet", "batch": 1, "dtype": "fp32"}}
    assert meta["inputs"]["traces"]["fp32"]["path"] == "b1/tiny.parquet"
    df = pd.read_csv(out / "tiny.csv")
    assert (df["outputs_equal_trace"] == 3).all()
    assert df["measured_tokens_per_round"].to_numpy() == pytest.approx(
        df["predicted_tokens_per_round"].to_numpy(), rel=1e-9)
    # the same trace keeping other K=96 rows: the live trimmed head would not be the replayed one
    (setup / "b1x").mkdir(exist_ok=True)
    shutil.copy(setup / "b1" / "tiny.parquet", setup / "b1x" / "tiny.parquet")
    side = json.loads((setup / "b1" / "tiny.json").read_text())
    side["calibration"]["order"] = primary["order"][96:192]
    (setup / "b1x" / "tiny.json").write_text(json.dumps(side))
    for ref, needles in (("b1x/tiny.parquet", ("traces.fp32", "keeps other K=96 head rows", "--calibration-from")),
                         ("other/tiny.parquet", ("traces.fp32", "another prompt"))):
        plan.write_text(plan.read_text().replace(f'fp32 = "{inp.plan.traces["fp32"]}"', f'fp32 = "{ref}"'))
        inp.plan.traces["fp32"] = ref
        assert_one_line_exit_2(run_cli("validate", str(plan), "--predict-only", cache=setup), *needles)


def test_a_profile_of_another_speed_is_flagged_before_the_live_runs(setup):
    """Same processor name and ISA, other speed (another generation or clock): the sidecars
    agree, so only timing a few points shows it. A profile whose every timing was multiplied by 6
    prices this machine ~6x slow: a warning naming it, and the JSON keeps the check's figures.
    (The tolerance is 25% against a 6x error, so load on the machine cannot flip it.)"""
    import shutil

    from simspec.profile.calibrate import TIME_COLUMNS

    df = pd.read_parquet(setup / "t.parquet")
    for col in TIME_COLUMNS:
        if col in df:
            df[col] = df[col] * 6
    df.to_parquet(setup / "slow.parquet", index=False)
    shutil.copy(setup / "t.json", setup / "slow.json")
    plan = write_plan(setup, '[[config]]\ndtype = "fp32"\n')
    plan.write_text(plan.read_text().replace('"tiny:llama:4" = { fp32 = "t.parquet" }',
                                             '"tiny:llama:4" = { fp32 = "slow.parquet" }'))
    out = setup / "slow"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    warned = [l for l in res.stderr.splitlines() if l.startswith("warning: slow.parquet prices this machine")]
    assert len(warned) == 1 and "--calibrate slow.parquet" in warned[0], res.stderr
    (check,) = json.loads((out / "tiny.json").read_text())["speed_check"]
    assert check["profile"] == "slow.parquet" and check["off"] and check["ratio"] < 0.75
    assert len(check["points"]) == 6 and all(p["measured_s"] > 0 for p in check["points"])
    # per phase, each point's ratio is exact arithmetic on the figures kept; all six phases off
    ratios = {(p["kind"], p["batch"], p["q"]): p["measured_s"] / p["profiled_s"] for p in check["points"]}
    assert check["phases"]["verify b4"][0]["ratio"] == pytest.approx(ratios["decode", 4, 5], rel=1e-3)
    assert check["off_phases"] == list(check["phases"]) and len(check["phases"]) == 6
    assert check["protocol"]["passes"] >= 1 and "prefill b1" in warned[0]


PIPELINE = """
[pipeline]
target_core = 0
draft_core = 1
threads = 1

[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
gamma = 3
pipeline = "sequential"

[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
gamma = 3
pipeline = "overlap"
"""


def test_pipeline_plan_runs_both_processes_live(setup):
    """A pipeline plan through `simspec validate`: each config decoded live by the two-process
    pipeline (simspec.live.pipeline) on cores 0 and 1, its typed row written beside the others'
    columns, the overlap call made on measured figures; --measured prices it again unchanged."""
    import os

    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the pipeline pins its two processes to cores 0 and 1")
    plan = write_plan(setup, PIPELINE)
    out = setup / "pipe"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "tiny.csv")
    assert df["config"].tolist() == ["fp32 draft:tiny:qwen2:2 g3 pipeline sequential",
                                 "fp32 draft:tiny:qwen2:2 g3 pipeline overlap"]
    assert df["overlap"].tolist() == [False, True] and (df["measured_tok_s"] > 0).all()
    assert df["error_pct"].to_numpy() == pytest.approx(  # the CSV's figures have 4 decimals
        ((df["predicted_tok_s"] - df["measured_tok_s"]) / df["measured_tok_s"] * 100).to_numpy(), abs=0.01)
    # lossless in both modes: every live output is the traced greedy one, so the replayed
    # acceptance is the live run's, round for round
    assert (df["outputs_equal_trace"] == 3).all(), df
    assert df["measured_tokens_per_round"].to_numpy() == pytest.approx(
        df["predicted_tokens_per_round"].to_numpy(), rel=1e-9)
    assert (df["measured_rounds"] > 0).all() and df["measured_ready_rounds"].iloc[0] == 0
    meta = json.loads((out / "tiny.json").read_text())
    block = meta["pipeline"]
    assert block["placement"] == {"target_core": 0, "draft_core": 1, "threads": 1}
    assert block["agreement"]["n"] == 2 and len(block["rows"]) == 2 and meta["rows"] == []
    (call,) = block["overlap_calls"]
    assert call["gamma"] == 3 and call["agree"] == (call["predicted_pays"] == call["measured_pays"])
    assert "overlap pays? predicted" in res.stdout and (out / "tiny.html").read_text().count("data:image/png") == 1
    again = setup / "pipe2"
    res = run_cli("validate", str(plan), "--measured", str(out / "tiny.json"), "--out", str(again), cache=setup)
    assert res.returncode == 0, res.stderr
    pd.testing.assert_frame_equal(df, pd.read_csv(again / "tiny.csv"))
