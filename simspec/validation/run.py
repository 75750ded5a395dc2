"""A validation without the CLI: predict each config of a plan, measure it live, compare.

    inp = load_inputs(plan_file, "1,4")          # every input error, before any model loads
    rows = predict(inp)                            # simulated only (torch-free)
    models = load_models(inp, "cpu", threads=2)    # every model error, before any live run
    res = validate(inp, models, out, command)      # writes <name>.csv and <name>.json

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
from simspec.validation.compare import (SUMMARY_KEYS, Agreement, agreement, error_table, serving_agreement,
                                        serving_table)
from simspec.validation.plan import LiveConfig, Plan, load_plan, scenario_for, select

if TYPE_CHECKING:
    from simspec.trace.schema import Trace

# (1-based index, config, its row: None before the live run, with the measured figures after)
Progress = Callable[[int, LiveConfig, "dict | None"], None]


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

    def timelines(self) -> dict:
        """Serving config -> its live and simulated arrivals and iterations (JSON's)."""
        return (self.meta.get("serving") or {}).get("timelines") or {}


def load_inputs(plan_file: Path, selector: str | None) -> Inputs:
    """Plan, configs (`--configs` selector), prompts and scenarios, checked whole."""
    from simspec.validation.live import load_dtype_traces, load_prompts

    file = str(plan_file)
    plan = load_plan(plan_file)
    chosen = select(plan, selector, file)
    trace, prompts, traced = load_prompts(plan, file)
    by_dtype = load_dtype_traces(plan, file, trace, prompts)
    scenarios = [scenario_for(plan, c, file) for c in chosen]
    for c, sc in zip(chosen, scenarios):
        if c.serving and c.kv_capacity_tokens:  # the live loop and the simulator both refuse it later
            need = max(len(p) + len(t) for p, t in zip(prompts[:c.requests], traced[:c.requests])) + sc.shape.size
            if need > c.kv_capacity_tokens:
                raise InputError(file, f"config[{c.label()}].kv_capacity_tokens",
                                 f"{c.kv_capacity_tokens} cannot hold a request: the largest needs {need} KV tokens "
                                 f"(prompt + traced output + {sc.shape.size} verify queries)")
    return Inputs(plan, file, chosen, trace, prompts, traced, scenarios, by_dtype)


def predict(inp: Inputs) -> list[dict]:
    """One row per config: the simulator's tokens/s, tokens per round and seconds per phase; a
    serving config's row also has its latencies and mean batch (predicted_<metric>) and, under
    `sim_arrivals` and `sim_iterations`, the simulated run's arrivals and iterations."""
    from simspec.sim.run import simulate

    rows = []
    for cfg, sc in zip(inp.configs, inp.scenarios):
        res = simulate(sc, inp.file)
        s = res.summary
        row = {"config": cfg.label(), "dtype": cfg.dtype, "draft": cfg.draft, "gamma": cfg.gamma,
               "tree": "-".join(map(str, cfg.tree)) if cfg.tree else "", "vocab": cfg.vocab or ""}
        if cfg.serving:
            row |= {"max_batch": cfg.max_batch, "arrival": cfg.arrival,
                    "concurrency": cfg.users if cfg.arrival == "closed" else "",
                    "rate": cfg.rate if cfg.rate is not None else "", "requests": cfg.requests,
                    "kv_capacity_tokens": cfg.kv_capacity_tokens or "", "seed": (cfg.seed or 0) if cfg.arrival == "poisson" else ""}
            row |= {f"predicted_{m}": s[k] for m, k in SUMMARY_KEYS.items()}
            log = [it for rep in res.iterations for it in rep]
            rounds = [it.batch for it in log if it.kind == "round"]
            row["predicted_mean_batch"] = sum(rounds) / len(rounds) if rounds else float("nan")
            row |= {f"predicted_{k}_s": s[f"phase_{k}_s"] for k in ("prefill", "draft", "verify")}
            row["sim_arrivals"] = res.records.arrival.tolist()
            row["sim_iterations"] = [it.row() for it in log]
        else:
            row |= {"predicted_tok_s": s["throughput_tok_s"],
                    "predicted_tokens_per_round": s["mean_tokens_per_round"],
                    **{f"predicted_{k}_s": s[f"phase_{k}_s"] for k in ("prefill", "draft", "verify")}}
        rows.append(row)
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
    models = Models(device)
    for cfg in inp.configs:
        check_target(inp.trace, models.get(inp.plan.target, cfg.dtype), inp.file)
        if cfg.kind == "model":
            models.get(cfg.arg, cfg.dtype)
    return models


def speed_checks(inp: Inputs, models) -> list:
    """A speedcheck.SpeedCheck per profile the configs price with, each timed with the model it
    prices (a drafter's profile with the drafter, early exit's and the target's with the target)."""
    from simspec.profile.speedcheck import check

    owner: dict[str, tuple[str, str]] = {}
    for cfg, sc in zip(inp.configs, inp.scenarios):
        owner.setdefault(sc.target.profile, (inp.plan.target, cfg.dtype))
        if sc.draft.profile:
            owner.setdefault(sc.draft.profile, (cfg.arg if cfg.kind == "model" else inp.plan.target, cfg.dtype))
    return [check(models.get(*owner[ref]), ref, resolve_data_path(ref, inp.file))
            for ref in profiles_used(inp)]


def validate(inp: Inputs, models, out: Path, command: str, progress: Progress | None = None,
             checks: list | None = None) -> Validation:
    """Predict and measure every config, compare, and write <name>.csv and <name>.json in `out`
    (with the profiles' speed `checks`, when run)."""
    from simspec import machine
    from simspec.validation.live import environment, measure, serve_measure, torch_threads

    rows = predict(inp)
    t0 = time.perf_counter()
    for i, (cfg, row) in enumerate(zip(inp.configs, rows), 1):
        if progress:
            progress(i, cfg, None)
        run = serve_measure if cfg.serving else measure
        trace, traced = inp.trace_of(cfg.dtype)
        row.update(run(inp.plan, cfg, models, trace, inp.prompts, traced, inp.file))
        if progress:
            progress(i, cfg, row)
    extra = {"wall_s": round(time.perf_counter() - t0, 1), "environment": environment(models),
             "machine": machine.identify(models.device, torch_threads())}
    if checks is not None:
        extra["speed_check"] = [c.as_dict() for c in checks]
    return _write(inp, rows, out, command, extra)


def reprice(inp: Inputs, measured: Path, out: Path, command: str) -> Validation:
    """A measured validation (its <name>.json) priced again with this plan's profiles: the live
    figures do not depend on the profiles, so a new or calibrated profile is checked against
    them without decoding again. The plan must decode what was measured (same trace, prompts,
    token budget and configs)."""
    import json as _json

    key = "--measured"
    try:
        old = _json.loads(Path(measured).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(measured), None, f"not a validation result ({exc})") from None
    want = provenance(inp)["trace"]["sha256"]
    got = ((old.get("inputs") or {}).get("trace") or {}).get("sha256")
    for what, a, b in (("trace", want, got), ("sequences", inp.plan.seqs(), old.get("sequences")),
                       ("max_new_tokens", inp.plan.max_new_tokens, old.get("max_new_tokens"))):
        if a != b:
            raise InputError(str(measured), what, f"was measured with {b!r}, the plan decodes {a!r}")
    served = old.get("serving") or {}
    by_label = {r.get("config"): r for r in (old.get("rows") or []) + (served.get("rows") or [])}
    timelines = served.get("timelines") or {}
    rows = predict(inp)
    for cfg, row in zip(inp.configs, rows):
        m = by_label.get(row["config"])
        if m is None or cfg.serving != (row["config"] in timelines):
            raise InputError(str(measured), key, f"has no measured row for config {row['config']!r}")
        row.update({k: v for k, v in m.items() if k.startswith("measured_") or k == "outputs_equal_trace"})
        if cfg.serving:
            live = timelines[row["config"]]
            row |= {"live_arrivals": live.get("live_arrivals"), "live_iterations": live.get("live_iterations")}
    extra = {"wall_s": old.get("wall_s"), "environment": old.get("environment"), "machine": old.get("machine"),
             "measured_from": {"path": str(measured), "date": old.get("date"), "command": old.get("command")}}
    return _write(inp, rows, out, command, extra)


TIMELINE_KEYS = ("live_arrivals", "sim_arrivals", "live_iterations", "sim_iterations")


def _write(inp: Inputs, rows: list[dict], out: Path, command: str, extra: dict) -> Validation:
    """<name>.csv: one row per config (serving configs' rows after the batch-1 ones, with their
    extra columns); <name>.json: the batch-1 table and agreement as ever, plus a "serving" block
    (its rows, agreement per metric and each config's live and simulated timelines)."""
    batch1 = [r for c, r in zip(inp.configs, rows) if not c.serving]
    served = [r for c, r in zip(inp.configs, rows) if c.serving]
    df = error_table(batch1) if batch1 else pd.DataFrame()
    ag = agreement(df) if batch1 else None
    timelines = {r["config"]: {k: r.pop(k, None) for k in TIMELINE_KEYS} for r in served}
    sdf = serving_table(served) if served else None
    plan = inp.plan
    csv, js = out / f"{plan.name}.csv", out / f"{plan.name}.json"
    whole = df if sdf is None else pd.concat([df, sdf], ignore_index=True) if batch1 else sdf
    write_text(csv, whole.to_csv(index=False, float_format="%.4f"))
    meta = {"plan": inp.file, "name": plan.name, "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": extra.pop("wall_s"),
            "prompts": len(inp.prompts), "max_new_tokens": plan.max_new_tokens, "sequences": plan.seqs(),
            **extra, "inputs": provenance(inp), "trace_numerics": trace_numerics(inp),
            "agreement": ag.as_dict() if ag else None,
            "rows": json.loads(df.to_json(orient="records")) if batch1 else []}
    sag = None
    if sdf is not None:
        sag = serving_agreement(sdf)
        meta["serving"] = {"agreement": sag, "rows": json.loads(sdf.to_json(orient="records")),
                           "timelines": timelines}
    write_text(js, json.dumps(meta, indent=1) + "\n")
    return Validation(plan, df, ag, meta, [csv, js], sdf, sag)


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


def profiles_used(inp: Inputs) -> list[str]:
    """The profile references the chosen configs' scenarios price with, each once, in order."""
    refs: list[str] = []
    for sc in inp.scenarios:
        for ref in (sc.target.profile, sc.draft.profile):
            if ref and ref not in refs:
                refs.append(ref)
    return refs


def check_machines(inp: Inputs, allow_foreign: bool, here: dict | None = None) -> list[str]:
    """One line per profile captured on another machine than this one. A foreign profile
    prices someone else's kernels (an AMX Xeon's profile read an EPYC 30% off): refused unless
    `allow_foreign`, then returned as warnings."""
    from simspec import machine
    from simspec.profile.select import fit, mismatch_line

    here = here or machine.here()
    foreign = []
    for ref in profiles_used(inp):
        path = Path(resolve_data_path(ref, inp.file))
        captured, verdict = fit(path, here)
        if verdict.foreign:
            foreign.append((path, mismatch_line(path, captured, here, verdict)))
    if foreign and not allow_foreign:
        path, line = foreign[0]
        raise InputError(inp.file, "profiles", f"{line}: calibrate it to this machine "
                         f"(simspec profile --calibrate {path} --out NEW) or pass --allow-foreign-profile")
    return [line for _, line in foreign]


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
