"""simulate(scenario) -> summary + per-request records. The one entry point of the simulator."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import simpy

from simspec.config import Scenario, resolve_data_path
from simspec.errors import InputError
from simspec.sim.acceptance import MultiPass
from simspec.sim.build import build_oracle, build_round_cost, kv_capacity
from simspec.sim.devices import Device
from simspec.sim.dispatch import LeastLoaded
from simspec.sim.iteration import Iteration
from simspec.sim.jump import expand
from simspec.sim.metrics import summarize
from simspec.sim.policy import ClosedLoop, kv_need
from simspec.sim.records import Records
from simspec.sim.replica import Replica, ReplicaDevices, ReplicaOptions
from simspec.sim.static_policy import resolved
from simspec.sim.workload import Workload, build_workload


@dataclass
class SimResult:
    summary: dict
    records: Records
    scenario: Scenario
    # per replica, Replica.log as recorded (a jump's rounds in one entry)
    logs: list[list] = field(default_factory=list, repr=False)

    @cached_property
    def iterations(self) -> list[list[Iteration]]:
        """Per replica, one record per iteration (built when first read)."""
        return [expand(log) for log in self.logs]

    def requests_frame(self):
        import pandas as pd

        return pd.DataFrame(self.records.columns())


def lengths_only_trace(sc: Scenario, file: str | None, seed: int):
    """Plain decoding (no oracle) still replays the traced sequences' lengths, mapped to
    requests exactly as a speculative run with the same seed maps them."""
    if sc.acceptance is None or sc.acceptance.trace is None:
        raise InputError(file, "workload.dataset",
                         '"trace" takes its lengths from [acceptance] trace, which is not set')
    from simspec.trace.oracle import TraceOracle, cached_trace

    trace = cached_trace(resolve_data_path(sc.acceptance.trace, file), file)
    no_accept = np.zeros(int(trace.offsets[-1]), dtype=np.int64)
    oracle = TraceOracle(trace, "lookup", no_accept, [1], np.random.default_rng([seed, 0xACC]))
    if sc.acceptance.sequences is not None:
        oracle.replay_in_order(sc.acceptance.sequences, file)
    return oracle


def simulate(sc: Scenario, scenario_file: str | None = None, workload: Workload | None = None,
             detail: bool = False, jump: bool = True) -> SimResult:
    """Run one scenario to completion (every request served). `detail`: iteration records
    name their requests (what an iteration-by-iteration comparison with a live run reads).
    `jump`: advance a replica's unchanged batch many rounds at once (simspec.sim.jump, the same
    results); False: one event per round (the reference the jump is tested against). A static
    policy (a budget tree) is resolved first: the result's `scenario` holds the shape it ran."""
    t0 = time.perf_counter()
    sc = resolved(sc, scenario_file)  # a static policy's shape (a budget tree) written in
    seed = sc.serving.seed
    rng = np.random.default_rng([seed, 0xACC])
    oracle = build_oracle(sc, scenario_file, rng)
    if workload is None and sc.workload.dataset == "trace":
        source = oracle if hasattr(oracle, "request_lengths") else lengths_only_trace(sc, scenario_file, seed)
        workload = build_workload(sc.workload, seed, source.request_lengths(sc.workload.requests))
    wl = workload if workload is not None else build_workload(sc.workload, seed)
    cost = build_round_cost(sc, scenario_file, oracle.layers if isinstance(oracle, MultiPass) else ())
    kv_cap = kv_capacity(sc, cost, scenario_file)
    kv_reserve = cost.verify_queries
    if kv_cap is not None:
        worst = int(kv_need(wl.prompt_len, wl.output_len, kv_reserve).max())
        if worst > kv_cap:
            raise InputError(scenario_file, "serving.kv_capacity_tokens",
                             f"a request needs {worst} KV tokens but a replica holds {kv_cap}")

    env = simpy.Environment()
    rec = Records(wl.prompt_len, wl.output_len, wl.arrival)
    pl = sc.placement
    closed = ClosedLoop(wl.n, wl.concurrency) if wl.mode == "closed" else None
    replicas: list[Replica] = []
    least: list[LeastLoaded] = []  # set once the replicas exist

    def dispatch(rid: int) -> None:
        if len(replicas) == 1:
            replicas[0].submit(rid)
            return
        i = least[0].pick()
        replicas[i].submit(rid)
        least[0].changed(i)

    def on_finish(rid: int) -> None:
        if len(replicas) > 1:
            least[0].changed(int(rec.replica[rid]))
        nxt = closed.on_finish() if closed is not None else None
        if nxt is not None:
            rec.arrival[nxt] = env.now
            dispatch(nxt)

    options = ReplicaOptions(max_batch=sc.serving.max_batch, kv_capacity=kv_cap, kv_reserve=kv_reserve,
                             overlap=pl.overlap, with_prefill=sc.speculation.first_round == "with_prefill",
                             clip_to_budget=sc.speculation.clip_to_budget, detail=detail, jump=jump)
    n_replicas = min(pl.replicas, wl.n)
    # When the next request not yet sent arrives: closed loop and burst send only at a finish
    # (inside the loop that retires it) or at time 0; Poisson arrivals come from `source`.
    # With several replicas a finish on one can send a request to another: no jumps there.
    pending = [math.inf]
    arrivals = (lambda: pending[0]) if n_replicas == 1 else None
    devices: list[Device] = []
    # Replicas past the n-th never get a request (the dispatcher picks the lowest index among
    # the least loaded, and at most n - 1 others are loaded): they are not built, so a large
    # `replicas` costs nothing; their (zero) busy time still counts in the per-replica averages.
    for i in range(n_replicas):
        tdev = Device(pl.target, pl.devices[pl.target], i)
        dname = pl.draft or pl.target
        ddev = tdev if dname == pl.target else Device(dname, pl.devices[dname], i)
        devices += [tdev] if ddev is tdev else [tdev, ddev]
        replicas.append(Replica(env, i, options, cost, oracle, ReplicaDevices(tdev, ddev), rec, on_finish,
                                arrivals))
    least.append(LeastLoaded([lambda r=r: r.load for r in replicas]))

    if closed is not None:
        for rid in closed.first():
            dispatch(rid)
    elif wl.mode == "burst":
        for rid in range(wl.concurrency):
            dispatch(rid)
    else:
        def source():
            for rid in range(wl.n):
                delay = wl.arrival[rid] - env.now
                if delay > 0:
                    pending[0] = env.now + delay  # the time SimPy schedules the timeout at
                    yield env.timeout(delay)
                dispatch(rid)
            pending[0] = math.inf
        pending[0] = float(wl.arrival[0]) if wl.n else math.inf
        env.process(source())

    env.run()
    sim_time = float(env.now)
    busy: dict[str, float] = {}
    for d in devices:
        busy[d.name] = busy.get(d.name, 0.0) + d.busy_s / pl.replicas
    tp = sc.target.tensor_parallel * sc.target.pipeline_stages  # devices a roofline target spans
    dname = pl.draft or pl.target
    price = (pl.devices[pl.target].price * tp
             + (pl.devices[dname].price if dname != pl.target else 0.0)) * pl.replicas
    summary = summarize(rec, sim_time, busy, price, time.perf_counter() - t0,
                        prefill_tokens=0 if sc.speculation.first_round == "with_prefill" else 1)
    for phase in ("prefill", "draft", "verify"):  # summed over replicas
        summary[f"phase_{phase}_s"] = sum(r.phase_s[phase] for r in replicas)
    # a roofline prices from datasheets (an estimate) unless fitted to a measured profile:
    # present only when a roofline priced something, so profile-only summaries are unchanged
    for role, model in (("target", cost.target), ("draft", cost.draft)):
        if model is not None and model.estimate is not None:
            summary[f"{role}_estimate"] = 1.0 if model.estimate else 0.0
    idle = [[] for _ in range(pl.replicas - len(replicas))]
    return SimResult(summary, rec, sc, [r.log for r in replicas] + idle)
