"""The measured half of a validation: each plan config decoded live on this device, its
figures as the measured set of its row's kind (simspec.validation.rows).

The prompts are the trace's own token ids (chat template included) and the stop tokens are
the trace's, so the live run decodes what the simulator replays. Models load once per
(name, dtype) and stay loaded across configs; a pipeline config's models load in its own two
worker processes (simspec.live.pipeline).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

from simspec.config import resolve_data_path
from simspec.errors import InputError
from simspec.validation.plan import LiveConfig, Plan
from simspec.validation.rows import Batch1Measured, PipelineMeasured, ServingFigures, ServingMeasured, Timeline


class Models:
    def __init__(self, device: str) -> None:
        self.device = device
        self._held: dict = {}

    def get(self, name: str, dtype: str):
        from simspec.models import load_model

        if (name, dtype) not in self._held:
            self._held[(name, dtype)] = load_model(name, dtype=dtype, device=self.device)
        return self._held[(name, dtype)]


def load_prompts(plan: Plan, file: str):
    """(trace, prompt ids, traced outputs) of the plan's sequences."""
    trace = _load(plan.trace, file, "trace")
    seqs = plan.seqs()
    bad = [s for s in seqs if s >= trace.n_seq]
    if bad:
        raise InputError(file, "sequences" if plan.sequences else "prompts",
                         f"sequence {bad[0]} is past the trace's {trace.n_seq}")
    prompts = [trace.seq_prompt(i).tolist() for i in seqs]
    traced = [trace.seq_tokens(i).tolist()[: plan.max_new_tokens] for i in seqs]
    return trace, prompts, traced


def load_dtype_traces(plan: Plan, file: str, primary, prompts: list[list[int]]) -> dict:
    """dtype -> (trace, traced outputs) for the plan's `traces` entries, each checked to hold the
    very prompts of `trace` (same ids, same sequences) and the same target model."""
    out = {}
    for dtype, ref in (plan.traces or {}).items():
        key = f"traces.{dtype}"
        t = _load(ref, file, key)
        seqs = plan.seqs()
        if any(s >= t.n_seq for s in seqs):
            raise InputError(file, key, f"{ref} holds {t.n_seq} sequences; the plan replays {seqs}")
        for i, s in enumerate(seqs):
            if t.seq_prompt(s).tolist() != prompts[i]:
                raise InputError(file, key, f"{ref} sequence {s} has another prompt than {plan.trace}'s: "
                                 "a per-dtype trace must trace the same prompts")
        want, got = primary.meta.get("target_sha256"), t.meta.get("target_sha256")
        if want and got and want != got:
            raise InputError(file, key, f"{ref} traced another target (sha256 {got[:12]}) than {plan.trace}")
        for k in sorted({c.vocab for c in plan.config if c.dtype == dtype and c.vocab}):
            if kept(t, k) != kept(primary, k):
                raise InputError(file, key, f"{ref} keeps other K={k} head rows than {plan.trace}: retrace it "
                                 f"with --calibration-from {plan.trace} (a trimmed head must keep the same rows)")
        out[dtype] = (t, [t.seq_tokens(s).tolist()[: plan.max_new_tokens] for s in seqs])
    return out


def kept(trace, k: int) -> list[int] | None:
    """The K head rows a trimmed head keeps in `trace` (its calibration order's first K), sorted;
    None when the trace keeps fewer than K."""
    order = (trace.meta.get("calibration") or {}).get("order") or []
    return sorted(int(t) for t in order[:k]) if len(order) >= k else None


def _load(ref: str, file: str, key: str):
    from simspec.trace.schema import load_trace

    path = resolve_data_path(ref, file)
    if not Path(path).is_file():
        raise InputError(file, key, f"trace file not found: {ref!r}")
    return load_trace(path)


def check_target(trace, lm, file: str) -> None:
    want = trace.meta.get("target_sha256")
    if want and lm.sha256 and want != lm.sha256:
        raise InputError(file, "target", f"{lm.name} (sha256 {lm.sha256[:12]}) is not the model the trace "
                         f"was captured with ({trace.meta.get('target')}, sha256 {want[:12]})")
    if trace.meta.get("vocab") not in (None, lm.dims.vocab):
        raise InputError(file, "target", f"vocabulary {lm.dims.vocab} != the trace's {trace.meta['vocab']}")


def _setup(plan: Plan, cfg: LiveConfig, models: Models, trace, file: str):
    """(target, draft spec, tree, draft model or None, kept head rows or None) of a config, checked."""
    from simspec.drafters import DraftSpec
    from simspec.live.runner import check_config
    from simspec.live.tree import Tree

    tgt = models.get(plan.target, cfg.dtype)
    check_target(trace, tgt, file)
    spec = DraftSpec.parse(cfg.draft)
    tree = Tree.parse(",".join(map(str, cfg.tree))) if cfg.tree else Tree.chain(cfg.gamma)
    dm = models.get(spec.model, cfg.dtype) if spec.kind == "model" else None
    rows = None
    if cfg.vocab:
        order = trace.meta.get("calibration", {}).get("order") or []
        if len(order) < cfg.vocab:
            raise InputError(file, f"config[{cfg.label()}].vocab",
                             f"the trace keeps a token order of {len(order)} ids, fewer than K={cfg.vocab}")
        rows = kept(trace, cfg.vocab)  # the same kept set the trace scored
    check_config(tgt, spec, tree, cfg.vocab, 0.0, dm)
    return tgt, spec, tree, dm, rows


def config_drafter(cfg: LiveConfig, tgt, spec, kv, dm, rows, trace):
    """The drafter a config runs: its kind's, or under a policy the policy's live drafter over
    it (simspec.policies; a dynamic exit takes its candidate layers from `trace`, the columns
    the simulator replays)."""
    from simspec.live.runner import make_drafter

    from simspec import policies

    pol = policies.get(cfg.policy["name"]) if cfg.policy is not None else None
    if pol is None or not pol.dynamic:  # a static policy runs the shape it resolved to
        return make_drafter(tgt, spec, kv, dm, rows)
    values = pol.values(cfg.policy_params, None, "policy")
    return pol.fn("live")(values, tgt, spec, kv, dm, rows, cfg.gamma, trace)


def forced(plan: Plan, cfg: LiveConfig, file: str):
    """A synthetic config's forced acceptance: the very oracle the simulator replays for it
    (simspec.sim.build.build_oracle of its scenario: request i replays the plan's sequence
    i % n at the tokens it has generated); None for a config that accepts by its logits."""
    if not cfg.synthetic:
        return None
    import numpy as np

    from simspec.live.synthetic import SyntheticAcceptance
    from simspec.sim.build import build_oracle
    from simspec.validation.scenarios import scenario_for

    sc = scenario_for(plan, cfg, file)
    return SyntheticAcceptance(build_oracle(sc, file, np.random.default_rng(sc.serving.seed)),
                               f"trace {sc.acceptance.trace}, column {sc.acceptance.drafter}")


def serving_requests(cfg: LiveConfig, prompts: list[list[int]], traced: list[list[int]]):
    """The requests a serving config serves, live and simulated alike: request i is traced
    prompt i % n with its traced output length as max_new_tokens (the simulator's output length
    of the sequence it replays), arriving at cfg.arrival_times()[i] (poisson; closed: ignored)."""
    from simspec.live.serving import requests_at

    n = len(prompts)
    idx = [i % n for i in range(cfg.requests)]
    return requests_at([prompts[i] for i in idx], [len(traced[i]) for i in idx], cfg.arrival_times())


def serve_measure(plan: Plan, cfg: LiveConfig, models: Models, trace, prompts: list[list[int]],
                  traced: list[list[int]], file: str, clock=None) -> tuple[ServingMeasured, Timeline]:
    """Serve a serving config's requests live (continuous batching on this device): its measured
    figures, and its per-request arrivals, iterations and tokens kept per round.
    `clock`: simspec.live.serving's WallClock by default (FakeClock in tests)."""
    from simspec.live.engine import generate
    from simspec.live.kv import KV
    from simspec.live.serving import serve, summarize
    from simspec.validation.replay import kept_per_request

    tgt, spec, tree, dm, rows = _setup(plan, cfg, models, trace, file)
    reqs = serving_requests(cfg, prompts, traced)
    if not all(r.max_new_tokens for r in reqs):
        raise InputError(file, "trace", "a traced sequence has no output tokens to decode")
    kv = KV(tgt.model, 1)  # untimed warm-up (allocator, thread pool), as run_config's
    generate(tgt.model, prompts[:1], min(4, plan.max_new_tokens), config_drafter(cfg, tgt, spec, kv, dm, rows, trace),
             tree, 0.0, 0, None, kv)
    kv = KV(tgt.model, 0)
    cpu, t0 = time.process_time(), time.perf_counter()
    synthetic = forced(plan, cfg, file)  # forced: no stop token (the output text means nothing)
    res = serve(tgt.model, reqs, config_drafter(cfg, tgt, spec, kv, dm, rows, trace), tree, max_batch=cfg.max_batch,
                kv_capacity_tokens=cfg.kv_capacity_tokens,
                concurrency=cfg.users if cfg.arrival == "closed" else None,
                eos=None if synthetic else trace.meta.get("stop_ids") or None, kv=kv, clock=clock,
                synthetic=synthetic)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    # full precision, not Iteration.row()'s microseconds: the policy replayed on these times must
    # give this run's figures to float rounding (the decomposed report's part b)
    iterations = [[it.kind, it.start, it.seconds, it.batch] for it in res.iterations]
    s = summarize(res)
    n = len(prompts)
    measured = ServingMeasured(
        **ServingFigures.summary(s, iterations),
        requests=s["requests"], output_tokens=s["output_tokens"], elapsed_s=round(s["elapsed_s"], 4),
        **{f"{k}_s": round(v, 4) for k, v in res.stats.seconds.items()},
        wall_s=round(wall, 2), cpu_s=round(cpu, 2),
        outputs_equal_trace=sum(r.output == traced[i % n] for i, r in enumerate(res.requests)))
    kept = kept_per_request(res.iterations, res.stats.per_round, len(reqs))
    return measured, Timeline([r.arrival for r in res.requests], iterations, kept)


def measure(plan: Plan, cfg: LiveConfig, models: Models, trace, prompts: list[list[int]],
            traced: list[list[int]], file: str, progress: Callable[[int], None] | None = None
            ) -> tuple[Batch1Measured, Timeline]:
    """Decode the plan's prompts with one config at batch 1: its measured figures, and the run's
    timed calls as a Timeline (iterations [phase, start, seconds, 1]; `kept`: the tokens of each
    round, one list), what simspec.validation.rounds needs for a fastest-state estimate."""
    from simspec.live.runner import run_config

    tgt, spec, tree, dm, rows = _setup(plan, cfg, models, trace, file)
    synthetic = forced(plan, cfg, file)
    t0 = time.perf_counter()
    if synthetic is None:
        report = run_config(tgt, spec, tree, prompts, plan.max_new_tokens, batch=1, draft=dm, rows=rows,
                            eos=trace.meta.get("stop_ids") or None, progress=progress,
                            make=lambda kv: config_drafter(cfg, tgt, spec, kv, dm, rows, trace))
    else:  # forced acceptance: each prompt's traced length, no stop token (the simulator's lengths)
        report = run_config(tgt, spec, tree, prompts, [len(t) for t in traced], batch=1, draft=dm, rows=rows,
                            progress=progress, synthetic=synthetic)
    s = report.stats
    measured = Batch1Measured(
        s.tok_s, s.tokens_per_round, new_tokens=s.new_tokens,
        **{f"{k}_s": round(v, 4) for k, v in s.seconds.items()},  # prefill, draft, verify, other
        wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(report.extra["cpu_seconds"], 2),
        outputs_equal_trace=sum(a == b for a, b in zip(report.outputs, traced)))
    return measured, calls_timeline(s.calls, s.per_round)


def calls_timeline(calls: list[tuple[str, float]], per_round: list[int]) -> Timeline:
    """A batch-1 run's timed calls in order as a Timeline (no arrivals)."""
    iterations, t = [], 0.0
    for name, sec in calls:
        iterations.append([name, round(t, 6), sec, 1])
        t += sec
    return Timeline([], iterations, [list(per_round)])


class Pipelines:
    """The plan's two-process pipelines (simspec.live.pipeline), one per (drafter, dtype), started
    on first use with the plan's [pipeline] placement, warmed up once and kept across configs: a
    config's gamma and overlap are the parent's side of the protocol only, so its workers (and the
    seconds their start costs) serve every config of the pair. A context manager: every worker is
    stopped on exit, errors included."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._open: dict = {}

    def get(self, cfg: LiveConfig, warm: list[int], stops: frozenset[int]):
        from simspec.live.pipeline import Pipeline, PipelineConfig

        key = (cfg.spec.model, cfg.dtype)
        if key not in self._open:
            p = self.plan.placement
            pipe = Pipeline(PipelineConfig(self.plan.target, cfg.spec.model, cfg.gamma, cfg.overlap, cfg.dtype,
                                           p.target_core, p.draft_core, p.threads))
            self._open[key] = pipe
            pipe.generate(warm, min(self.plan.max_new_tokens, 8), stops)  # untimed: first-call costs
        return self._open[key]

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __enter__(self) -> "Pipelines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pipeline_measure(plan: Plan, cfg: LiveConfig, pipes: Pipelines, trace, prompts: list[list[int]],
                     traced: list[list[int]]) -> PipelineMeasured:
    """Decode the plan's prompts with one pipeline config: the target and the drafter each in its
    own process, pinned and threaded as the plan's [pipeline] table says."""
    from simspec.live.pipeline import PipelineResult

    stops = frozenset(trace.meta.get("stop_ids") or [])
    pipe = pipes.get(cfg, prompts[0], stops)
    t0 = time.perf_counter()
    res = PipelineResult(pipe.cfg, [pipe.generate(p, plan.max_new_tokens, stops, gamma=cfg.gamma, overlap=cfg.overlap)
                                    for p in prompts])
    runs = res.runs
    return PipelineMeasured(
        res.tok_s, res.tokens_per_round, new_tokens=sum(len(r.tokens) for r in runs),
        prefill_s=round(sum(r.prefill_s for r in runs), 4), rounds=sum(r.rounds for r in runs),
        ready_rounds=sum(r.ready_rounds for r in runs), wall_s=round(time.perf_counter() - t0, 2),
        outputs_equal_trace=sum(a == b for a, b in zip(res.outputs, traced)))


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads_set(n: int | None):
    """torch runs `n` threads inside (None: as it was), then as many as before."""
    import torch

    saved = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def environment(models: Models) -> dict:
    import platform

    import torch
    import transformers

    from simspec import __version__

    from simspec.models import gemv

    kernels = {"one_row_linear": gemv.one_row_path()} if models.device == "cpu" else {}
    return {"device": models.device, "threads": torch.get_num_threads(), "kernels": kernels, "torch": torch.__version__,
            "transformers": transformers.__version__, "simspec": __version__,
            "platform": platform.platform(), "cwd": str(Path.cwd())}
