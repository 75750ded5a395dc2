"""One point of the space -> simulated summary. Workloads are drawn once and reused, and so are
results: the simulator is deterministic (same scenario, same seed, same numbers), and TPE
proposes the same effective scenario again and again once it converges (knobs that do not apply,
such as the exit layer of an n-gram drafter, are not in the scenario), so a repeated scenario is
answered from the figures of its first simulation instead of being simulated again: from this
process's memo, or (`lookup`) from a finished trial of another worker or an earlier run that
simulated the same scenario (its summary carries the scenario's digest)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable

from simspec.config import Scenario
from simspec.sim.run import simulate
from simspec.sim.workload import Workload, build_workload
from simspec.study import space, trial
from simspec.study.knobs import Changes
from simspec.study.spec import StudySpec

# Figures kept per trial (one user attribute, one storage write).
KEEP = (
    "throughput_tok_s", "request_throughput_req_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
    "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "mean_tokens_per_round", "mean_accepted_per_round",
    "cost_per_mtok", "sim_time_s", "output_tokens", "wall_s",
)
ESTIMATE_KEYS = ("target_estimate", "draft_estimate")
REPEAT = "repeated_scenario"  # user attr of a trial answered from the memo (an earlier trial's scenario)
SCENARIO_KEY = "scenario_key"  # in a trial's summary: a digest of the scenario it simulated
MEMO_SIZE = 4096  # scenarios remembered per process (a few KB each)
# SIMSPEC_STUDY_REFERENCE=1: every trial simulated round by round (no jumps) and no memo: the
# slow path the fast one is checked against (benchmarks/study_speed.py --reference). An
# environment variable, so that the worker processes of a --workers run take it too.
REFERENCE_ENV = "SIMSPEC_STUDY_REFERENCE"


class Evaluator:
    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._workloads: dict[str, Workload] = {}
        self._memo: dict[tuple[str, int | None], dict[str, Any]] = {}
        self.repeated = False  # whether the last `run` was answered from the memo
        self.last_key = ""     # the digest of the last scenario run (SCENARIO_KEY)
        # figures of a scenario simulated elsewhere (another worker's finished trial), by digest
        self.lookup: Callable[[str], dict[str, Any] | None] | None = None
        self.reference = os.environ.get(REFERENCE_ENV, "") not in ("", "0")
        # a point proposed again (the same knobs) -> its memo key and digest: its scenario is
        # not built again (building one is a deep merge and a validation, ~0.5 ms)
        self._points: dict[str, tuple[tuple[str, int | None], str]] = {}
        self._last_memo_key: tuple[str, int | None] | None = None

    def scenario(self, p: dict[str, Any], *changes: Changes) -> Scenario:
        """The scenario of point `p` with `changes` applied last (`trial.scenario`)."""
        return trial.scenario(self.spec, p, *changes)

    def workload(self, sc: Scenario) -> Workload:
        key = f"{sc.serving.seed}:{sc.workload.model_dump_json()}"
        wl = self._workloads.get(key)
        if wl is None:
            lengths = self._trace_lengths(sc) if sc.workload.dataset == "trace" else None
            wl = self._workloads[key] = build_workload(sc.workload, sc.serving.seed, lengths)
        return wl

    def _trace_lengths(self, sc: Scenario):
        """dataset = "trace": the lengths of the traced sequences the requests replay. Every
        column of a trace maps requests to sequences alike (the seed decides), so any traced
        drafter of the study gives them, plain-decoding points included."""
        import numpy as np

        from simspec.sim.build import build_oracle

        probe = sc
        if not (sc.gamma > 0 and sc.acceptance is not None and sc.acceptance.trace is not None):
            probe = None
            for kind in space.drafter_choices(self.spec):
                ds = self.spec.file.drafters.get(kind)
                if ds is not None and ds.acceptance is not None and ds.acceptance.trace is not None:
                    probe = self.scenario(space.probe(self.spec, kind, 1), {"workload": sc.workload})
                    break
        if probe is None:
            return None  # build_workload says what is missing
        oracle = build_oracle(probe, self.spec.where, np.random.default_rng([sc.serving.seed, 0xACC]))
        return oracle.request_lengths(sc.workload.requests)

    def run(self, sc: Scenario, requests: int | None = None) -> dict[str, Any]:
        """The kept figures of `sc`; `requests`: of only the first that many requests of its
        workload (a prefix, simspec.study.prune). A scenario simulated before in this process is
        answered from its first figures (`repeated` says so; its wall_s is 0: nothing ran)."""
        key = self._last_memo_key = (sc.model_dump_json(), requests)
        self.last_key = hashlib.sha256(f"{requests}:{key[0]}".encode()).hexdigest()[:24]
        hit = None if self.reference else self._memo.get(key)
        if hit is None and requests is None and self.lookup is not None and not self.reference:
            found = self.lookup(self.last_key)
            if found is not None and all(k in found for k in KEEP):
                hit = self._memo[key] = {k: float(found[k]) for k in (*KEEP, *ESTIMATE_KEYS) if k in found}
        self.repeated = hit is not None
        if hit is not None:
            return {**hit, "wall_s": 0.0}
        wl = self.workload(sc)
        if requests is not None and requests < wl.n:
            wl = Workload(wl.prompt_len[:requests], wl.output_len[:requests], wl.arrival[:requests], wl.mode,
                          min(wl.concurrency, requests))
        summary = simulate(sc, self.spec.where, workload=wl, jump=not self.reference).summary
        kept = {k: float(summary[k]) for k in KEEP}
        # roofline-priced models say so (1.0: an estimate from datasheets, 0.0: fitted to a profile)
        kept.update({k: float(summary[k]) for k in ESTIMATE_KEYS if k in summary})
        if not self.reference:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = kept
        return dict(kept)

    def evaluate(self, p: dict[str, Any], *changes: Changes) -> dict[str, Any]:
        if changes or self.reference:
            return self.run(self.scenario(p, *changes))
        pk = json.dumps(p, sort_keys=True, default=str)
        known = self._points.get(pk)
        if known is not None and known[0] in self._memo:  # the same point: the same scenario
            self._last_memo_key, self.last_key = known
            self.repeated = True
            return {**self._memo[known[0]], "wall_s": 0.0}
        out = self.run(self.scenario(p))
        if len(self._points) >= MEMO_SIZE:
            self._points.pop(next(iter(self._points)))
        self._points[pk] = (self._last_memo_key, self.last_key)
        return out
