"""The two-process pipeline plan is a `simspec validate` plan: its [pipeline] placement and the
configs' `pipeline` mode are plan schema (bad ones are one-line errors naming file, key and
reason), it predicts through the same path as every plan (typed pipeline rows), and a profile
captured at other threads than the pipeline's processes run is refused for a live run.
Torch-free: the live half runs on tiny models in tests/test_validate.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelpers import cli

REPO = Path(__file__).resolve().parents[1]
# the plan as it shipped before its live run (2-thread bf16 profiles): its predictions are pinned
PLAN = REPO / "tests" / "fixtures" / "qwen-pipeline-2t-bf16.toml"
SHIPPED = REPO / "studies" / "validation" / "qwen-pipeline.toml"

# what simspec.live.pipeline_validate.predict gave for this plan's six configs on the same
# profiles and trace before the plan became a `simspec validate` plan (tokens/s, tokens/round)
BEFORE = {(2, False): (8.629759890478905, 2.94375), (2, True): (13.997383531483745, 2.94375),
          (4, False): (10.235200639095044, 4.8061224489795915), (4, True): (14.508844116905461, 4.8061224489795915),
          (6, False): (10.925161808215842, 6.541666666666667), (6, True): (14.13344454475768, 6.541666666666667)}


def shipped_inputs():
    from simspec.validation.run import load_inputs

    return load_inputs(PLAN, None)


def test_predict_only_gives_typed_pipeline_rows():
    from simspec.validation.rows import Figures, PipelineRow
    from simspec.validation.run import predict

    inp = shipped_inputs()
    rows = predict(inp)
    assert len(rows) == 6 and all(type(r) is PipelineRow and r.kind == "pipeline" for r in rows)
    assert all(type(r.predicted) is Figures and r.measured is None for r in rows)
    got = {(r.config.gamma, r.config.overlap): (r.predicted.tok_s, r.predicted.tokens_per_round) for r in rows}
    assert got.keys() == BEFORE.keys()
    for k, (tok_s, per_round) in BEFORE.items():
        assert got[k] == pytest.approx((tok_s, per_round), rel=1e-9), k
    rec = rows[1].record()
    assert rec == {"config": "bf16 draft:0.5b g2 pipeline overlap", "dtype": "bf16",
                   "draft": "model:qwen2.5-coder-0.5b", "gamma": 2, "overlap": True,
                   "predicted_tok_s": rows[1].predicted.tok_s,
                   "predicted_tokens_per_round": rows[1].predicted.tokens_per_round}
    with pytest.raises(ValueError, match="not measured"):
        rows[0].error_pct
    # the scenario each was predicted with: two devices, the drafter on the other core, the
    # first round after the prefill, no clip, overlap as the config says
    for r, sc in zip(rows, inp.scenarios):
        pl = sc.placement
        assert (sorted(pl.devices), pl.target, pl.draft, pl.overlap) == (["core0", "core1"], "core0", "core1",
                                                                         r.config.overlap)
        assert (sc.speculation.first_round, sc.speculation.clip_to_budget, sc.speculation.draft_len) == \
            ("after_prefill", False, r.config.gamma)
        assert sc.acceptance.drafter == "qwen2.5-coder-0.5b" and sc.acceptance.sequences == [0, 1, 2, 3]


def test_predict_only_cli_prints_rows_and_the_overlap_calls():
    res = cli("validate", str(PLAN), "--predict-only")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len([l for l in lines if " pipeline " in l and "predicted" in l]) == 6
    assert [l.split(": overlap")[0] for l in lines if "overlap pays? predicted yes" in l] == \
        [f"bf16 model:qwen2.5-coder-0.5b g{g}" for g in (2, 4, 6)]
    # the shipped profiles were captured at 2 threads; the plan's processes run 1: said, not refused
    assert res.stderr.count("torch threads, a pipeline process runs 1") == 2, res.stderr


def test_profiles_at_other_threads_are_refused_for_a_live_run():
    from simspec import machine
    from simspec.errors import InputError
    from simspec.profile.select import sidecar
    from simspec.validation.run import check_machines

    inp = shipped_inputs()
    ref = REPO / "profiles" / "intel-xeon" / "qwen2.5-coder-1.5b-bf16.parquet"
    capture_machine = machine.from_sidecar(sidecar(ref))  # only the threads differ from the capture
    with pytest.raises(InputError) as exc:
        check_machines(inp, allow_foreign=False, here=capture_machine)
    line = exc.value.line()
    assert line.startswith(f"{PLAN}: profiles: ") and "captured at 2 torch threads" in line
    assert "--threads 1" in line and "--allow-foreign-profile" in line
    assert len(check_machines(inp, allow_foreign=True, here=capture_machine)) == 2


def test_a_profile_of_the_other_one_row_path_is_refused_for_a_live_run(tmp_path):
    import shutil

    from simspec import machine
    from simspec.errors import InputError
    from simspec.profile.schema import sidecar_path
    from simspec.validation.run import check_machines, load_inputs

    plan = PLAN.read_text()
    for size, kernels in (("1.5b", {"one_row_linear": "gemm"}), ("0.5b", None)):  # the 0.5B's: no record
        src = REPO / "profiles" / "intel-xeon" / f"qwen2.5-coder-{size}-bf16.parquet"
        copy = tmp_path / src.name
        shutil.copy(src, copy)
        meta = json.loads(sidecar_path(src).read_text())
        meta.update(threads=1, **({"kernels": kernels} if kernels else {}))  # at the pipeline's threads
        sidecar_path(copy).write_text(json.dumps(meta))
        plan = plan.replace(f'"../../profiles/intel-xeon/{src.name}"', f'"{copy}"')
    (tmp_path / "plan.toml").write_text(plan.replace('"../../', f'"{REPO}/'))
    inp = load_inputs(tmp_path / "plan.toml", None)
    asked = []

    def mv_here(threads: int) -> str:
        asked.append(threads)
        return "mv"

    here = machine.from_sidecar(meta)  # the capture machine: only the one-row path differs
    gemm = tmp_path / "qwen2.5-coder-1.5b-bf16.parquet"
    assert check_machines(inp, allow_foreign=True, here=here, one_row=mv_here) == [
        f"{gemm} priced one-row bf16 linears on the gemm path, this machine takes mv"]
    assert asked == [1]  # asked at the threads the profile was captured at
    with pytest.raises(InputError, match="SIMSPEC_ONE_ROW_LINEAR to the profile's path"):
        check_machines(inp, allow_foreign=False, here=here, one_row=mv_here)
    # the same path here, or no question asked (predicting): no line
    assert check_machines(inp, allow_foreign=False, here=here, one_row=lambda t: "gemm") == []
    assert check_machines(inp, allow_foreign=False, here=here) == []


def plan_text(tmp_path: Path, old: str = "", new: str = "", extra: str = "") -> Path:
    text = PLAN.read_text()
    if old:
        assert old in text, old
        text = text.replace(old, new, 1)
    p = tmp_path / "pipe.toml"
    p.write_text(text.replace('"../../', f'"{REPO}/') + extra)
    return p


FIRST = 'gamma = 2\npipeline = "sequential"'
BAD = [
    (FIRST, 'gamma = 2\npipeline = "both"', "config[0].pipeline", "'sequential' or 'overlap'"),
    ('draft = "model:qwen2.5-coder-0.5b"\ngamma = 2\npipeline = "sequential"',
     'draft = "early_exit:20"\ngamma = 2\npipeline = "sequential"', "config[0]",
     "runs a drafter model in its own process"),
    (FIRST, 'tree = [2, 1]\npipeline = "sequential"', "config[0]", "drafts chains"),
    (FIRST, FIRST + "\nvocab = 4096", "config[0]", "full head"),
    (FIRST, FIRST + '\nmax_batch = 2\narrival = "closed"\nrequests = 4', "config[0]", "runs batch 1: no serving keys"),
    ("target_core = 0", "target_core = 1", "pipeline", "must differ"),
    ("threads = 1", "threads = 0", "pipeline.threads", "greater than 0"),
    ("threads = 1", "threads = 1\ncores = 2", "pipeline.cores", "unknown key"),
    ('pipeline = "', 'pipelines = "', "config[0].pipelines", "unknown key"),
]


@pytest.mark.parametrize("old,new,key,reason", BAD, ids=[b[3] for b in BAD])
def test_bad_pipeline_keys_are_one_line_errors(tmp_path, old, new, key, reason):
    plan = plan_text(tmp_path, old, new)
    res = cli("validate", str(plan), "--predict-only")
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {plan}: {key}: "), res.stderr
    assert reason in lines[0], lines[0]


def test_a_pipeline_table_without_pipeline_configs_is_an_error(tmp_path):
    text = PLAN.read_text()
    head = text[:text.index("[[config]]")]
    plan = tmp_path / "p.toml"
    plan.write_text(head.replace('"../../', f'"{REPO}/')
                    + '[[config]]\ndraft = "model:qwen2.5-coder-0.5b"\ngamma = 2\n')
    res = cli("validate", str(plan), "--predict-only")
    assert res.returncode == 2 and res.stderr.strip() == (
        f"error: {plan}: pipeline: [pipeline] places pipeline configs, but no [[config]] sets `pipeline`"), res.stderr


def test_a_plan_mixes_kinds_and_each_row_is_its_kinds(tmp_path):
    """One plan, a batch-1, a serving and a pipeline config: each predicted through the one path
    into its own row type, the batch-1 one keeping the batch-1 scenario."""
    from simspec.validation.rows import Batch1Row, PipelineRow, ServingRow
    from simspec.validation.run import load_inputs, predict

    extra = ('\n[[config]]\ndraft = "model:qwen2.5-coder-0.5b"\ngamma = 2\n'
             '\n[[config]]\ndraft = "model:qwen2.5-coder-0.5b"\ngamma = 2\n'
             'max_batch = 2\narrival = "closed"\nrequests = 4\n')
    plan = plan_text(tmp_path, extra=extra)
    inp = load_inputs(plan, "1,7,8")
    rows = predict(inp)
    assert [type(r) for r in rows] == [PipelineRow, Batch1Row, ServingRow]
    assert [r.label for r in rows] == ["bf16 draft:0.5b g2 pipeline sequential", "bf16 draft:0.5b g2",
                                       "bf16 draft:0.5b g2 serve b2 closed c2 n4"]
    pipe, one, served = inp.scenarios
    assert (one.placement.overlap, len(one.placement.devices), one.speculation.first_round) == \
        (False, 1, "with_prefill")
    assert (served.serving.max_batch, served.workload.concurrency, len(served.placement.devices)) == (2, 2, 1)
    assert len(pipe.placement.devices) == 2
    # the same drafter, gamma and acceptance: the same tokens per round on one device or two
    assert rows[0].predicted.tokens_per_round == pytest.approx(rows[1].predicted.tokens_per_round, rel=0.05)
    assert json.dumps(rows[2].record())  # a serving record is plain data


@pytest.mark.parametrize("plan, folder", [("qwen-pipeline.toml", "intel-xeon-1t"),
                                          ("qwen-pipeline-amx.toml", "intel-xeon-amx-1t")])
def test_the_shipped_plans_price_with_one_thread_profiles_of_their_own(plan, folder):
    """The measured plans (a host without AMX, one with): fp32, their profiles captured at the one
    torch thread each process runs (so a live run is not refused for threads), the fp32 batch-1
    trace, six pipeline rows."""
    from simspec.profile.select import sidecar
    from simspec.validation.rows import PipelineRow
    from simspec.validation.run import load_inputs, predict

    inp = load_inputs(SHIPPED.with_name(plan), None)
    rows = predict(inp)
    assert len(rows) == 6 and all(type(r) is PipelineRow and r.config.dtype == "fp32" for r in rows)
    assert sorted((r.config.gamma, r.config.overlap) for r in rows) == sorted(BEFORE)
    for ref in ("qwen2.5-coder-1.5b-fp32", "qwen2.5-coder-0.5b-fp32"):
        meta = sidecar(REPO / "profiles" / folder / f"{ref}.parquet")
        assert meta["threads"] == 1, ref
        assert f'"profiles/{folder}/{ref}.parquet"' in SHIPPED.with_name(plan).read_text(), ref
