"""A validation without the CLI: predict each config of a plan, measure it live, compare.

    inp = load_inputs(plan_file, "1,4")          # every input error, before any model loads
    rows = predict(inp)                            # typed rows (simspec.validation.rows), simulated
                                                   # only (torch-free)
    models = load_models(inp, "cpu", threads=2)    # every model error, before any live run
    res = validate(inp, models, out, command)      # writes <name>.csv and <name>.json
    res = validate(inp, models, out, command, rounds=3)  # every config 3 times, interleaved
                                                   # (simspec.validation.rounds), serving configs'
                                                   # error decomposed (simspec.validation.decompose)

The figure and the HTML page are simspec.report.validation's (report/ reads validation/,
never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from simspec.atomic import write_text
from simspec.config import Scenario, resolve_data_path
from simspec.errors import InputError
from simspec.validation.compare import (Agreement, agreement, crossover_calls, error_table, overlap_calls,
                                        serving_agreement, serving_table)
from simspec.validation.decompose import decompose, plan_summary
from simspec.validation.plan import LiveConfig, Plan, load_plan, select
from simspec.validation.replay import Workload
from simspec.validation.rounds import combine_batch1, combine_plain, combine_serving, interleaved, run_interleaved
from simspec.validation.rows import (Batch1Predicted, Batch1Row, Figures, PipelineRow, Row, ServingPredicted,
                                     ServingRow, Timeline)
from simspec.validation.scenarios import scenario_for

if TYPE_CHECKING:
    from simspec.trace.schema import Trace

# (where the run is, the config's row, its measured figures of this round: None before it runs)
Progress = Callable[["Step", "Row", "Figures | None"], None]


@dataclass
class Inputs:
    """A plan, the configs chosen from it, its traced prompts and one scenario per config."""

    plan: Plan
    file: str
    configs: list[LiveConfig]
    trace: Trace
    prompts: list[list[int]]
    traced: list[list[int]]
    scenarios: list[Scenario]
    by_dtype: dict | None = None  # dtype -> (trace, traced outputs) of the plan's `traces` entries

    def trace_of(self, dtype: str) -> tuple[Trace, list[list[int]]]:
        """The trace a config of `dtype` replays and its traced outputs (what its live run is
        compared with, token for token)."""
        return (self.by_dtype or {}).get(dtype, (self.trace, self.traced))


@dataclass
class Validation:
    """What a validation found and where it wrote it."""

    plan: Plan
    table: pd.DataFrame  # one row per batch-1 config: predicted, measured, error_pct (empty: none)
    agreement: Agreement | None  # over the batch-1 configs (None: none)
    meta: dict  # what <name>.json holds
    written: list[Path]  # <name>.csv, <name>.json
    serving: pd.DataFrame | None = None  # one row per serving config (None: none)
    serving_agreement: dict | None = None  # compare.serving_agreement of it
    pipeline: pd.DataFrame | None = None  # one row per pipeline config (None: none)
    pipeline_agreement: Agreement | None = None
    overlap_calls: list[dict] | None = None  # compare.overlap_calls of the pipeline table

    def timelines(self) -> dict:
        """Serving config -> its live and simulated arrivals and iterations (JSON's)."""
        return (self.meta.get("serving") or {}).get("timelines") or {}


def resolve_policies(configs: list[LiveConfig], scenarios: list, file: str) -> tuple[list[LiveConfig], list]:
    """A config's static policy (a budget tree) resolved once, from its own trace: the scenario
    simulates that shape, and the config the live engine runs gets it as its gamma / tree."""
    from simspec.sim.static_policy import is_static, resolved

    cfgs, scs = [], []
    for c, sc in zip(configs, scenarios):
        if is_static(sc):
            try:
                sc = resolved(sc, file)
            except InputError as exc:
                raise InputError(file, f"config[{c.label()}].policy", f"{exc.key}: {exc.reason}") from None
            s = sc.shape
            c = c.model_copy(update={"tree": None if s.is_chain else list(s.branching),
                                     "gamma": s.max_depth if s.is_chain else 0})
        cfgs.append(c)
        scs.append(sc)
    return cfgs, scs


def load_inputs(plan_file: Path, selector: str | None) -> Inputs:
    """Plan, configs (`--configs` selector), prompts and scenarios, checked whole."""
    from simspec.validation.live import load_dtype_traces, load_prompts

    file = str(plan_file)
    plan = load_plan(plan_file)
    chosen = select(plan, selector, file)
    trace, prompts, traced = load_prompts(plan, file)
    by_dtype = load_dtype_traces(plan, file, trace, prompts)
    scenarios = [scenario_for(plan, c, file) for c in chosen]
    chosen, scenarios = resolve_policies(chosen, scenarios, file)
    for c, sc in zip(chosen, scenarios):
        if c.serving and c.kv_capacity_tokens:  # the live loop and the simulator both refuse it later
            need = max(len(p) + len(t) for p, t in zip(prompts[:c.requests], traced[:c.requests])) + sc.shape.size
            if need > c.kv_capacity_tokens:
                raise InputError(file, f"config[{c.label()}].kv_capacity_tokens",
                                 f"{c.kv_capacity_tokens} cannot hold a request: the largest needs {need} KV tokens "
                                 f"(prompt + traced output + {sc.shape.size} verify queries)")
    return Inputs(plan, file, chosen, trace, prompts, traced, scenarios, by_dtype)


def predict(inp: Inputs) -> list[Row]:
    """One typed row per config (simspec.validation.rows), its predicted figures filled: the
    simulator's tokens/s, tokens per round and, batch-1 and serving, seconds per phase; a serving
    row's latencies and mean batch too, and the simulated run's arrivals and iterations."""
    from simspec.sim.run import simulate

    rows: list[Row] = []
    for cfg, sc in zip(inp.configs, inp.scenarios):
        res = simulate(sc, inp.file)
        s = res.summary
        if cfg.kind == "serving":
            log = [it.row() for rep in res.iterations for it in rep]
            pred = ServingPredicted.from_summary(s, log)
            rows.append(ServingRow(cfg, pred, sim=Timeline(res.records.arrival.tolist(), log)))
        elif cfg.kind == "pipeline":
            rows.append(PipelineRow(cfg, Figures(s["throughput_tok_s"], s["mean_tokens_per_round"])))
        else:
            rows.append(Batch1Row(cfg, Batch1Predicted.from_summary(s)))
    return rows


def load_models(inp: Inputs, device: str, threads: int | None):
    """Set torch's threads (`threads`, else the plan's) and load every model the configs use,
    checking the target against the trace: a wrong model fails before anything runs."""
    import torch

    from simspec.validation.live import Models, check_target

    n_threads = threads or inp.plan.threads
    if n_threads is not None:
        if n_threads < 1:
            raise InputError(None, "--threads", f"{n_threads} must be >= 1")
        torch.set_num_threads(n_threads)
    if any(c.kind == "pipeline" for c in inp.configs):
        check_cores(inp)
    models = Models(device)
    for cfg in inp.configs:  # a pipeline config's are loaded here too: its speed check times them
        check_target(inp.trace, models.get(inp.plan.target, cfg.dtype), inp.file)
        if cfg.draft_kind == "model":
            models.get(cfg.arg, cfg.dtype)
    return models


def check_cores(inp: Inputs) -> None:
    """The plan's [pipeline] cores exist for this process (a pipeline pins one process to each)."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return
    have = sorted(os.sched_getaffinity(0))
    p = inp.plan.placement
    for key, core in (("pipeline.target_core", p.target_core), ("pipeline.draft_core", p.draft_core)):
        if core not in have:
            raise InputError(inp.file, key, f"core {core} is not one this process may run on ({have})")


def speed_checks(inp: Inputs, models) -> list:
    """A speedcheck.SpeedCheck per profile the configs price with, each timed with the model it
    prices (a drafter's profile with the drafter, early exit's and the target's with the target),
    a pipeline config's at the torch threads of its processes."""
    from simspec.profile.speedcheck import check
    from simspec.validation.live import torch_threads_set

    owner: dict[str, tuple[str, str, int | None]] = {}
    for cfg, sc in zip(inp.configs, inp.scenarios):
        n = inp.plan.placement.threads if cfg.kind == "pipeline" else None
        owner.setdefault(sc.target.profile, (inp.plan.target, cfg.dtype, n))
        if sc.draft.profile:
            model = cfg.arg if cfg.draft_kind == "model" else inp.plan.target
            owner.setdefault(sc.draft.profile, (model, cfg.dtype, n))
    out = []
    for ref in profiles_used(inp):
        model, dtype, n = owner[ref]
        with torch_threads_set(n):
            out.append(check(models.get(model, dtype), ref, resolve_data_path(ref, inp.file)))
    return out


def validate(inp: Inputs, models, out: Path, command: str, progress: Progress | None = None,
             checks: list | None = None, rounds: int | None = None,
             steadiness: Callable[[], dict] | None = None) -> Validation:
    """Predict and measure every config, `rounds` times (default: the plan's) in interleaved
    order (simspec.validation.rounds), combine each config's rounds, compare, and write
    <name>.csv and <name>.json in `out` (with the profiles' speed `checks`, when run).
    `steadiness`: a probe of the machine (simspec.timing.steadiness.probe) run just before and
    just after the live runs; both go into the JSON as `machine_steadiness`."""
    from simspec import machine
    from simspec.validation.live import Pipelines, environment, measure, pipeline_measure, serve_measure, torch_threads

    rows = predict(inp)
    n_rounds = rounds or inp.plan.rounds
    steady = {"before": steadiness()} if steadiness is not None else None
    t0 = time.perf_counter()
    with Pipelines(inp.plan) as pipes:  # started by the first pipeline config, if any

        def one(i: int, r: int):
            row = rows[i]
            cfg = row.config
            trace, traced = inp.trace_of(cfg.dtype)
            if isinstance(row, ServingRow):
                return serve_measure(inp.plan, cfg, models, trace, inp.prompts, traced, inp.file)
            if isinstance(row, PipelineRow):
                return pipeline_measure(inp.plan, cfg, pipes, trace, inp.prompts, traced)
            return measure(inp.plan, cfg, models, trace, inp.prompts, traced, inp.file)

        def step(r: int, pos: int, i: int, res) -> None:
            if progress:
                got = res[0] if isinstance(res, tuple) else res
                progress(Step(r, n_rounds, pos, len(rows), i + 1), rows[i], got)

        results = run_interleaved(len(rows), n_rounds, inp.plan.order_seed, one, step)
    combine(inp, rows, results)
    extra = {"wall_s": round(time.perf_counter() - t0, 1), "environment": environment(models),
             "machine": machine.identify(models.device, torch_threads()),
             "protocol": {"rounds": n_rounds, "order_seed": inp.plan.order_seed,
                          "order": [[rows[i].label for i in perm]
                                    for perm in interleaved(len(rows), n_rounds, inp.plan.order_seed)]}}
    if checks is not None:
        extra["speed_check"] = [c.as_dict() for c in checks]
    if steady is not None:
        extra["machine_steadiness"] = steady | {"after": steadiness()}
    return _write(inp, rows, out, command, extra)


@dataclass(frozen=True)
class Step:
    """Where an interleaved live run is: round `round` of `rounds`, the `position`-th of the
    round's `configs` configs, which is config `index` (1-based) of the plan's chosen ones."""

    round: int
    rounds: int
    position: int
    configs: int
    index: int


def combine(inp: Inputs, rows: list[Row], results: list[list]) -> None:
    """Each row's measured figures (and a serving row's live timeline) from its rounds."""
    for row, sc, res in zip(rows, inp.scenarios, results):
        if isinstance(row, ServingRow):
            cfg = row.config
            row.measured, row.live, row.rounds = combine_serving(
                res, lambda t, c=cfg, s=sc: workload_of(inp, c, s, t), cfg.arrival == "closed")
        elif isinstance(row, PipelineRow):
            row.measured, row.rounds = combine_plain(res)
        else:
            row.measured, row.rounds = combine_batch1(res)


def workload_of(inp: Inputs, cfg: LiveConfig, sc: Scenario, live: Timeline) -> Workload:
    """The replay workload of a serving config's live timeline: its requests' prompt lengths and
    budgets (simspec.validation.live.serving_requests' rule), the tokens each kept per round,
    the live arrivals (Poisson) or the closed loop's users, the config's policy settings."""
    _, traced = inp.trace_of(cfg.dtype)
    n = len(inp.prompts)
    idx = [i % n for i in range(cfg.requests)]
    if live.kept is None:
        raise ValueError(f"{cfg.label()}: its live timeline has no tokens kept per round")
    return Workload([len(inp.prompts[i]) for i in idx], [len(traced[i]) for i in idx], live.kept, sc.shape,
                    cfg.max_batch, cfg.kv_capacity_tokens,
                    arrivals=list(live.arrivals) if cfg.arrival != "closed" else None,
                    concurrency=cfg.users if cfg.arrival == "closed" else None)


def read_measured(measured: Path) -> dict:
    """An earlier validation result (<name>.json), for `reprice` and for the machine check
    (its `machine`: where those measurements ran)."""
    try:
        old = json.loads(Path(measured).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(measured), None, f"not a validation result ({exc})") from None
    if not isinstance(old, dict):
        raise InputError(str(measured), None, "not a validation result (not a JSON object)")
    return old


def reprice(inp: Inputs, measured: Path, old: dict, out: Path, command: str) -> Validation:
    """A measured validation (`old`, read from `measured` by `read_measured`) priced again with
    this plan's profiles: the live figures do not depend on the profiles, so a new or calibrated
    profile is checked against them without decoding again. The plan must decode what was
    measured (same trace, prompts, token budget and configs)."""
    key, where = "--measured", str(measured)
    want = provenance(inp)["trace"]["sha256"]
    got = ((old.get("inputs") or {}).get("trace") or {}).get("sha256")
    for what, a, b in (("trace", want, got), ("sequences", inp.plan.seqs(), old.get("sequences")),
                       ("max_new_tokens", inp.plan.max_new_tokens, old.get("max_new_tokens"))):
        if a != b:
            raise InputError(where, what, f"was measured with {b!r}, the plan decodes {a!r}")
    blocks = {kind: old.get(kind) or {} for kind in ("serving", "pipeline")}
    measured_rows = {"batch-1": old.get("rows") or [], **{k: b.get("rows") or [] for k, b in blocks.items()}}
    timelines = blocks["serving"].get("timelines") or {}
    rounds = old.get("rounds") or {}
    rows = predict(inp)
    for row in rows:
        m = {r.get("config"): r for r in measured_rows[row.kind]}.get(row.label)
        if m is None:
            raise InputError(where, key, f"has no measured {row.kind} row for config {row.label!r}")
        row.measured = row.MEASURED.from_record(m, where, row.label)
        row.rounds = rounds.get(row.label)
        if isinstance(row, ServingRow):
            live = timelines.get(row.label) or {}
            row.live = Timeline(live.get("live_arrivals"), live.get("live_iterations"), live.get("live_kept"))
    extra = {"wall_s": old.get("wall_s"), "environment": old.get("environment"), "machine": old.get("machine"),
             "protocol": old.get("protocol"),
             "measured_from": {"path": str(measured), "date": old.get("date"), "command": old.get("command")}}
    for key in ("speed_check", "machine_steadiness"):  # what the live run saw of the machine
        if old.get(key) is not None:
            extra[key] = old[key]
    return _write(inp, rows, out, command, extra)


def _table(rows: list[Row]) -> pd.DataFrame | None:
    """The kind's table: one record per row, errors added (None: no row of the kind)."""
    if not rows:
        return None
    records = [r.record() for r in rows]
    return serving_table(records) if isinstance(rows[0], ServingRow) else error_table(records)


def _records(df: pd.DataFrame) -> list[dict]:
    """A table's rows for the JSON at full precision (pandas' default keeps 10 decimals, and
    --measured recomputes errors from these figures: rounded ones could flip a CSV digit)."""
    return json.loads(df.to_json(orient="records", double_precision=15))


def _write(inp: Inputs, rows: list[Row], out: Path, command: str, extra: dict) -> Validation:
    """<name>.csv: one row per config, batch-1 rows first, then serving and pipeline rows with
    their extra columns; <name>.json: the batch-1 table and agreement as ever, plus a "serving"
    block (its rows, agreement per metric and each config's live and simulated timelines) and a
    "pipeline" block (its rows, agreement, placement and whether overlapping pays)."""
    decomposition = _decompose(inp, rows)
    df, sdf, pdf = (_table([r for r in rows if r.kind == k]) for k in ("batch-1", "serving", "pipeline"))
    plan = inp.plan
    csv, js = out / f"{plan.name}.csv", out / f"{plan.name}.json"
    write_text(csv, pd.concat([t for t in (df, sdf, pdf) if t is not None], ignore_index=True)
               .to_csv(index=False, float_format="%.4f"))
    ag = agreement(df) if df is not None else None
    meta = {"plan": inp.file, "name": plan.name, "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": extra.pop("wall_s"),
            "prompts": len(inp.prompts), "max_new_tokens": plan.max_new_tokens, "sequences": plan.seqs(),
            **extra, "inputs": provenance(inp), "trace_numerics": trace_numerics(inp),
            "agreement": ag.as_dict() if ag else None,
            "rows": _records(df) if df is not None else [],
            "rounds": {r.label: r.rounds for r in rows if r.rounds is not None}}
    sag = pag = calls = None
    if sdf is not None:
        sag = serving_agreement(sdf)
        meta["serving"] = {"agreement": sag, "rows": _records(sdf), "crossover": crossover_calls(sdf),
                           "decomposition": decomposition,
                           "timelines": {r.label: r.timelines() for r in rows if isinstance(r, ServingRow)}}
    if pdf is not None:
        pag, calls = agreement(pdf), overlap_calls(pdf)
        meta["pipeline"] = {"placement": plan.placement.model_dump(), "agreement": pag.as_dict(),
                            "overlap_calls": calls, "rows": _records(pdf)}
    write_text(js, json.dumps(meta, indent=1) + "\n")
    return Validation(plan, df if df is not None else pd.DataFrame(), ag, meta, [csv, js], sdf, sag, pdf, pag, calls)


def _decompose(inp: Inputs, rows: list[Row]) -> dict | None:
    """Each measured serving row's decomposed error (row.decomposition, the table's columns) and
    the JSON's block: per config, then over the plan (simspec.validation.decompose)."""
    per = {}
    for row, sc in zip(rows, inp.scenarios):
        if not isinstance(row, ServingRow) or row.measured is None:
            continue
        w = workload_of(inp, row.config, sc, row.live) if row.live is not None and row.live.kept else None
        row.decomposition = per[row.label] = decompose(row, w)
    if not per:
        return None
    closed = {r.label for r in rows if isinstance(r, ServingRow) and r.config.arrival == "closed"}
    return {"plan": plan_summary(per, closed), "configs": per}


def trace_numerics(inp: Inputs) -> dict:
    """What each config's trace was decoded with against what its live run decodes with (batch 1,
    the config's dtype). In bf16 a batch of 16 and a batch of 1 round near-tied logits differently,
    and fp32 and bf16 part at near-ties too, so a live greedy path can leave the traced one; the
    replay then prices other tokens than the live run accepted. `outputs_equal_trace` in the table
    counts the sequences that stayed on it; a plan's `traces` entry per dtype avoids it."""
    live = sorted({c.dtype for c in inp.configs})
    by = {}
    for d in live:
        t = inp.trace_of(d)[0]
        by[d] = {"trace": inp.plan.trace_for(d), "batch": t.meta.get("batch"), "dtype": t.meta.get("dtype")}
    differ = [d for d in live if by[d]["batch"] != 1 or by[d]["dtype"] != d]
    line = None
    if differ:
        line = "; ".join(f"{by[d]['trace']} was decoded at batch {by[d]['batch']} in {by[d]['dtype']}, the live "
                         f"{d} runs at batch 1" for d in differ)
        line += (": near-tied logits can round apart, so a live greedy path may leave the traced one "
                 "(outputs_equal_trace counts the sequences that stayed on it; a `traces` entry per dtype "
                 "names a trace decoded at batch 1 in that dtype)")
    first = by[live[0]] if live else {}
    return {"trace_batch": first.get("batch"), "trace_dtype": first.get("dtype"), "live_batch": 1,
            "live_dtypes": live, "by_dtype": by, "match": not differ, "note": line}


def profiles_used(inp: Inputs, kinds: tuple[str, ...] = ("batch-1", "serving", "pipeline")) -> list[str]:
    """The profile references the chosen configs (of `kinds`) price with, each once, in order."""
    refs: list[str] = []
    for cfg, sc in zip(inp.configs, inp.scenarios):
        if cfg.kind not in kinds:
            continue
        for ref in (sc.target.profile, sc.draft.profile):
            if ref and ref not in refs:
                refs.append(ref)
    return refs


def check_machines(inp: Inputs, allow_foreign: bool, here: dict | None = None,
                   one_row: Callable[[int], str] | None = None) -> list[str]:
    """One line per profile captured on another machine than this one, per profile of a
    pipeline config captured at other torch threads than its processes run, and (given
    `one_row`, this machine's one-row bf16 linear path at N threads) per profile that priced the
    other path. A foreign profile prices someone else's kernels (an AMX Xeon's profile read an
    EPYC 30% off), a 2-thread one a 1-thread process's twice as fast: refused unless
    `allow_foreign`, then returned as warnings."""
    from simspec import machine
    from simspec.profile.select import fit, mismatch_line, sidecar

    here = here or machine.here()
    foreign = []
    for ref in profiles_used(inp):
        path = Path(resolve_data_path(ref, inp.file))
        captured, verdict = fit(path, here)
        if verdict.foreign:
            foreign.append((mismatch_line(path, captured, here, verdict),
                            f"calibrate it to this machine (simspec profile --calibrate {path} --out NEW)"))
        if one_row is not None:
            meta = sidecar(path)
            kept = (meta.get("kernels") or {}).get("one_row_linear")
            runs = one_row(int(meta.get("threads") or 1)) if kept else None
            if kept and kept != runs:
                foreign.append((f"{path} priced one-row bf16 linears on the {kept} path, this machine takes {runs}",
                                "capture it again here, or set SIMSPEC_ONE_ROW_LINEAR to the profile's path,"))
    threads = inp.plan.placement.threads
    for ref in profiles_used(inp, kinds=("pipeline",)):
        path = Path(resolve_data_path(ref, inp.file))
        got = sidecar(path).get("threads")
        if got is not None and got != threads:
            foreign.append((f"{path} was captured at {got} torch threads, a pipeline process runs {threads} "
                            f"([pipeline] threads)", f"capture it with --threads {threads}"))
    if foreign and not allow_foreign:
        line, fix = foreign[0]
        raise InputError(inp.file, "profiles", f"{line}: {fix} or pass --allow-foreign-profile")
    return [line for line, _ in foreign]


def provenance(inp: Inputs) -> dict:
    """sha256, capture date and machine of the trace and of every profile the predictions used."""
    from simspec import machine
    from simspec.profile.select import sidecar

    def one(rel: str) -> dict:
        p = Path(resolve_data_path(rel, inp.file))
        meta = sidecar(p)
        return {"path": rel, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "date": meta.get("date"),
                "machine": machine.from_sidecar(meta), "calibrated": "calibrated" in meta}

    out = {"trace": one(inp.plan.trace), "profiles": {ref: one(ref) for ref in profiles_used(inp)}}
    if inp.plan.traces:
        out["traces"] = {d: one(ref) for d, ref in inp.plan.traces.items()}
    return out
