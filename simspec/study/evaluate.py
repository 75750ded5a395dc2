"""One point of the space -> simulated summary. Workloads are drawn once and reused."""

from __future__ import annotations

from typing import Any

from simspec.config import Scenario, parse_scenario
from simspec.sim.run import simulate
from simspec.sim.workload import Workload, build_workload
from simspec.study import space
from simspec.study.spec import StudySpec, deep_merge

# Figures kept per trial (one user attribute, one storage write).
KEEP = (
    "throughput_tok_s", "request_throughput_req_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
    "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "mean_tokens_per_round", "mean_accepted_per_round",
    "cost_per_mtok", "sim_time_s", "output_tokens", "wall_s",
)


class Evaluator:
    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._workloads: dict[str, Workload] = {}

    def scenario(self, p: dict[str, Any], patch: dict | None = None) -> Scenario:
        d = space.build(self.spec, p)
        if patch:
            d = deep_merge(d, patch)
        return parse_scenario(d, self.spec.where)

    def workload(self, sc: Scenario) -> Workload:
        key = f"{sc.serving.seed}:{sc.workload.model_dump_json()}"
        wl = self._workloads.get(key)
        if wl is None:
            wl = self._workloads[key] = build_workload(sc.workload, sc.serving.seed)
        return wl

    def run(self, sc: Scenario) -> dict[str, Any]:
        summary = simulate(sc, self.spec.where, workload=self.workload(sc)).summary
        return {k: float(summary[k]) for k in KEEP}

    def evaluate(self, p: dict[str, Any], patch: dict | None = None) -> dict[str, Any]:
        return self.run(self.scenario(p, patch))
