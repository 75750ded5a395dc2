"""Validate the simulator on heterogeneous placement: drafter and target in two processes on
two cores (simspec.live.pipeline), predicted from 1-thread profiles, measured live.

    name = "qwen-pipeline"
    target = "qwen2.5-coder-1.5b"
    draft = "qwen2.5-coder-0.5b"
    trace = "traces/qwen2.5-coder-1.5b__humaneval.parquet"   # prompts, stop ids, acceptance
    prompts = 4
    max_new_tokens = 128
    [profiles]                     # each model captured at ONE thread (it runs on one core)
    target = "profiles/intel-xeon-1t/qwen2.5-coder-1.5b-bf16.parquet"
    draft = "profiles/intel-xeon-1t/qwen2.5-coder-0.5b-bf16.parquet"
    [[config]]
    gamma = 2
    overlap = false

Each config's scenario puts the target on device `core0`, the drafter on `core1` (a second
device: prefills run side by side), replays the trace's acceptance for the plan's sequences in
order, batch 1, first round after the prefill (as the pipeline runs), and `overlap` as PEARL's
pre-drafting. The table has the columns of `simspec validate` (config, predicted_tok_s,
measured_tok_s, error_pct), and `overlap_calls` says, per gamma, whether the simulator and
the measurement agree on whether overlapping pays. Torch is imported only to measure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Callable

from pydantic import Field, ValidationError, model_validator

from simspec.config import Scenario, parse_scenario
from simspec.config.fields import PosInt, Strict, TokenLen
from simspec.config.files import read_toml
from simspec.config.pydantic_errors import input_error as _pydantic_error
from simspec.errors import InputError


class PipelineRun(Strict):
    gamma: PosInt
    overlap: bool = False

    def label(self) -> str:
        return f"{'overlap' if self.overlap else 'sequential'} g{self.gamma}"


class PipelineProfiles(Strict):
    target: str
    draft: str


class PipelinePlan(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    target: str
    draft: str
    trace: str
    column: str | None = None            # the drafter's trace column (default: `draft`)
    prompts: PosInt
    max_new_tokens: TokenLen = 128
    dtype: str = "bf16"
    target_core: Annotated[int, Field(ge=0)] = 0
    draft_core: Annotated[int, Field(ge=0)] = 1
    profiles: PipelineProfiles
    config: list[PipelineRun] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "PipelinePlan":
        labels = [c.label() for c in self.config]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"two configs are both {sorted(dup)[0]!r}")
        if self.target_core == self.draft_core:
            raise ValueError("target_core and draft_core must differ (one core each)")
        return self

    def seqs(self) -> list[int]:
        return list(range(self.prompts))

    @property
    def sequences(self) -> None:  # what simspec.validation.live.load_prompts reads of a plan
        return None


def load_pipeline_plan(path: str | Path) -> PipelinePlan:
    try:
        return PipelinePlan.model_validate(read_toml(path))
    except ValidationError as err:
        raise _pydantic_error(str(path), err) from None


def scenario_for(plan: PipelinePlan, run: PipelineRun, file: str) -> Scenario:
    """The scenario predicting one pipeline config (data paths resolve against `file`)."""
    data = {
        "target": {"name": plan.target, "profile": plan.profiles.target},
        "draft": {"kind": "model", "name": plan.draft, "profile": plan.profiles.draft},
        "acceptance": {"trace": plan.trace, "drafter": plan.column or plan.draft, "sequences": plan.seqs()},
        "speculation": {"draft_len": run.gamma, "first_round": "after_prefill"},
        "placement": {"devices": {"core0": {}, "core1": {}}, "target": "core0", "draft": "core1",
                      "overlap": run.overlap},
        "workload": {"requests": plan.prompts, "arrival": "closed", "concurrency": 1, "dataset": "trace",
                     "max_output_len": plan.max_new_tokens},
        "serving": {"max_batch": 1, "seed": 0},
    }
    return parse_scenario(data, file)


def predict(plan: PipelinePlan, file: str) -> list[dict]:
    from simspec.sim.run import simulate

    rows = []
    for run in plan.config:
        s = simulate(scenario_for(plan, run, file), file).summary
        rows.append({"config": run.label(), "gamma": run.gamma, "overlap": run.overlap,
                     "predicted_tok_s": s["throughput_tok_s"],
                     "predicted_tokens_per_round": s["mean_tokens_per_round"]})
    return rows


def overlap_calls(df) -> list[dict]:
    """Per gamma with both modes: does overlap pay, predicted and measured, and do they agree."""
    out = []
    for g in sorted(set(df["gamma"])):
        part = df[df["gamma"] == g].set_index("overlap")
        if {True, False} <= set(part.index):
            p = bool(part.loc[True, "predicted_tok_s"] > part.loc[False, "predicted_tok_s"])
            m = bool(part.loc[True, "measured_tok_s"] > part.loc[False, "measured_tok_s"])
            out.append({"gamma": int(g), "predicted_pays": p, "measured_pays": m, "agree": p == m})
    return out


def validate(plan_file: Path, out: Path, command: str,
             progress: Callable[[str], None] = lambda s: None) -> dict:
    """Predict, measure and compare every config; writes <name>.csv and <name>.json to `out`."""
    from simspec.atomic import write_text
    from simspec.live.pipeline import PipelineConfig, run_pipeline
    from simspec.validation.compare import agreement, error_table
    from simspec.validation.live import load_prompts

    file = str(plan_file)
    plan = load_pipeline_plan(plan_file)
    for key, ref in (("profiles.target", plan.profiles.target), ("profiles.draft", plan.profiles.draft)):
        from simspec.config import resolve_data_path

        if not resolve_data_path(ref, file).exists():
            raise InputError(file, key, f"profile not found: {ref} (capture it at --threads 1)")
    rows = predict(plan, file)
    trace, prompts, traced = load_prompts(plan, file)  # a plan with .trace, .seqs(), .max_new_tokens
    stops = frozenset(trace.meta.get("stop_ids") or [])
    t0 = time.perf_counter()
    for run, row in zip(plan.config, rows):
        progress(f"{run.label()}: running")
        cfg = PipelineConfig(plan.target, plan.draft, run.gamma, run.overlap, plan.dtype,
                             plan.target_core, plan.draft_core, threads=1)
        res = run_pipeline(cfg, prompts, plan.max_new_tokens, stops)
        row.update({"measured_tok_s": res.tok_s, "measured_tokens_per_round": res.tokens_per_round,
                    "outputs_equal_trace": sum(a == b for a, b in zip(res.outputs, traced))})
        progress(f"{run.label()}: predicted {row['predicted_tok_s']:.2f}, measured {res.tok_s:.2f} tok/s")
    df = error_table(rows)
    ag = agreement(df)
    calls = overlap_calls(df)
    meta = {"plan": file, "name": plan.name, "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(time.perf_counter() - t0, 1), "prompts": plan.prompts,
            "max_new_tokens": plan.max_new_tokens, "agreement": ag.as_dict(), "overlap_calls": calls,
            "rows": json.loads(df.to_json(orient="records"))}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"{plan.name}.csv", df.to_csv(index=False, float_format="%.4f"))
    write_text(out / f"{plan.name}.json", json.dumps(meta, indent=1) + "\n")
    return meta
