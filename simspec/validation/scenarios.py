"""The scenario that predicts one validation config, built from typed sections.

Every config starts from its batch-1 scenario (the plan's profiles, the trace's acceptance
replayed for the plan's sequences in order, batch 1, as simspec's live engine runs); a serving
or pipeline config is that scenario with the sections its live run changes replaced
(`model_copy(update=...)`), then checked whole once, as a scenario file is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simspec.config.pydantic_errors import input_error
from simspec.config.scenario import (AcceptanceSpec, DraftSpec, Scenario, ServingSpec, SpeculationSpec,
                                     TargetSpec)
from simspec.config.workload import WorkloadSpec
from simspec.errors import InputError
from simspec.validation.plan import LiveConfig, Plan


def profile_of(plan: Plan, model: str, dtype: str, file: str, key: str) -> str:
    """The profile pricing `model` in `dtype`: the plan's path, or for "auto" (and for every model
    when the plan has no [profiles]) the shipped <model>-<dtype> profile that best fits this machine."""
    from simspec.profile.select import AUTO, choose

    by_dtype = {} if plan.profiles is None else plan.profiles.get(model)
    if not by_dtype and model.startswith("random:"):  # random weights cost what the real dims cost
        return profile_of(plan, priced_as(model), dtype, file, key)
    if plan.profiles is not None and (not by_dtype or dtype not in by_dtype):
        raise InputError(file, f"profiles.{model}", f"no {dtype} profile for {model} (needed by {key})")
    ref = by_dtype.get(dtype, AUTO) if by_dtype else AUTO
    if ref != AUTO:
        _check_profiled(ref, model, dtype, file)
        return ref
    return str(choose(f"{model}-{dtype}", file, f"profiles.{model}.{dtype}").path)


def priced_as(model: str) -> str:
    """The model whose profile prices `model`: itself, or for random weights of some dims
    (`random:<models.toml name | config.json | its folder>`, simspec.models.random_weights) the
    model of those dims, named as the random model is (a config.json by its folder)."""
    if not model.startswith("random:"):
        return model
    ref = Path(model.removeprefix("random:"))
    if ref.suffix == ".json":
        return ref.parent.name if ref.name == "config.json" else ref.stem
    return ref.name


def _check_profiled(ref: str, model: str, dtype: str, file: str) -> None:
    """A validation compares a live run of `model` with its prediction: a profile of another
    model (or dtype) would price the wrong one and compare nothing, so it is refused."""
    from simspec.config import resolve_data_path
    from simspec.profile.select import profiled_model, sidecar

    path = resolve_data_path(ref, file)
    got = profiled_model(path)
    meta = sidecar(path)
    spec = meta.get("spec") if isinstance(meta, dict) else None  # the --model it was given (tiny:llama:4)
    said = {str(x).strip().lower() for x in (got, spec) if isinstance(x, str)}
    if got is not None and priced_as(model).strip().lower() not in said:
        raise InputError(file, f"profiles.{model}.{dtype}", f"{ref} profiles {got!r}, not {model!r}")
    d = meta.get("dtype") if isinstance(meta, dict) else None
    if isinstance(d, str) and d != dtype:
        raise InputError(file, f"profiles.{model}.{dtype}", f"{ref} was profiled in {d}, not {dtype}")


def trace_column(cfg: LiveConfig) -> str | None:
    """The trace column whose acceptance replays this config (None: plain decoding)."""
    if cfg.spec.entry is None:
        return None
    return cfg.column or cfg.spec.column(cfg.vocab)


def scenario_for(plan: Plan, cfg: LiveConfig, file: str) -> Scenario:
    """The scenario predicting one config of the plan (data paths resolve against `file` when
    it is simulated)."""
    base = batch1(plan, cfg, file)
    if cfg.kind == "batch-1":
        return base
    return serving(base, cfg, file) if cfg.kind == "serving" else pipeline(base, plan, cfg, file)


def batch1(plan: Plan, cfg: LiveConfig, file: str) -> Scenario:
    """Batch 1 as simspec's live engine runs it: the prefill is the first round, a round drafts no
    deeper than the remaining budget allows."""
    key = f"config[{cfg.label()}]"
    spec, k = cfg.spec, cfg.spec.entry
    draft: dict[str, Any] = {"kind": spec.kind}
    if k is not None and k.separate_model:
        draft |= {"name": spec.model, "profile": profile_of(plan, spec.model, cfg.dtype, file, key)}
    elif k is not None and k.arg == "layer":
        draft["exit_layer"] = spec.layers
    if cfg.vocab:
        draft["vocab"] = cfg.vocab
    shape: dict[str, Any] = {"tree": cfg.tree} if cfg.tree else {"draft_len": cfg.gamma}
    if cfg.policy is not None:
        from simspec import policies

        if policies.get(cfg.policy["name"]).dynamic:  # choosing each round's draft up to gamma
            shape["policy"] = dict(cfg.policy)
        elif not cfg.tree and not cfg.gamma:  # a static policy: resolved in run.load_inputs
            shape = {"policy": cfg.policy}
    seqs = plan.seqs()
    target_profile = profile_of(plan, plan.target, cfg.dtype, file, key)
    sections = dict(
        target=_section(file, "target", TargetSpec, name=plan.target, profile=target_profile),
        draft=_section(file, "draft", DraftSpec, **draft),
        # plain decoding replays only the sequences' lengths; the schema still wants a column
        acceptance=_section(file, "acceptance", AcceptanceSpec, trace=plan.trace_for(cfg.dtype),
                            drafter=trace_column(cfg) or "none", sequences=seqs),
        speculation=_section(file, "speculation", SpeculationSpec, **shape, first_round="with_prefill",
                             clip_to_budget=True),
        workload=_section(file, "workload", WorkloadSpec, requests=len(seqs), arrival="closed", concurrency=1,
                          dataset="trace", max_output_len=plan.max_new_tokens),
        # the live loop left-pads a batch to its longest row (simspec.live.kv)
        serving=_section(file, "serving", ServingSpec, max_batch=1, seed=0, batch_layout="padded"),
    )
    try:
        return Scenario(**sections)
    except ValidationError as err:  # the cross-section rules
        raise input_error(file, err) from None


def serving(base: Scenario, cfg: LiveConfig, file: str) -> Scenario:
    """As simspec.live.serving runs: continuous batching under max_batch (and the KV capacity),
    the prefill apart from the first round; request i replays sequence seqs[i % n], whose traced
    length it decodes; poisson arrivals at the very times the live run is given."""
    times = cfg.arrival_times()
    if times is None:
        load = {"concurrency": cfg.users}
    else:
        load = {"arrival": "explicit", "arrival_times": times, "concurrency": None}
    kv = {"kv_capacity_tokens": cfg.kv_capacity_tokens} if cfg.kv_capacity_tokens else {}
    return base.with_(speculation={"first_round": "after_prefill"},
                      workload={"requests": cfg.requests, **load},
                      serving={"max_batch": cfg.max_batch, **kv}, file=file)


def pipeline(base: Scenario, plan: Plan, cfg: LiveConfig, file: str) -> Scenario:
    """As simspec.live.pipeline runs: the target and the drafter on two devices (both prefill at
    once), the first round after the prefill, every round drafting gamma (no clip to the budget),
    `overlap` as PEARL's pre-drafting."""
    p = plan.placement
    target, draft = f"core{p.target_core}", f"core{p.draft_core}"
    return base.with_(speculation={"first_round": "after_prefill", "clip_to_budget": False},
                      placement={"devices": {target: {}, draft: {}}, "target": target, "draft": draft,
                                 "overlap": cfg.overlap}, file=file)


def _section(file: str, section: str, cls, **values):
    """One scenario section, validated, its errors keyed as in a scenario file (`section.key`)."""
    try:
        return cls(**values)
    except ValidationError as err:
        e = input_error(file, err)
        raise InputError(file, f"{section}.{e.key}" if e.key != "(top level)" else section, e.reason) from None
