"""What a finished study found, and the result files it writes into its run folder.

`write_results` writes trials.parquet, pareto.csv, best.toml, schedule.csv and the engine
exports (vLLM, SGLang, TensorRT-LLM; synthetic-acceptance configs and their prediction), each
atomically, and returns an `Outcome`: everything simspec.report needs for the figures,
summary.md and report.html (report/ reads study/, never the other way round).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from simspec.atomic import write_text, write_via
from simspec.config import Scenario, resolve_data_path
from simspec.config.files import PATH_KEYS
from simspec.study import capacity as cap_mod
from simspec.study import export, knobs, objectives, policy_compare, results, schedule, tomlw
from simspec.study.evaluate import Evaluator
from simspec.study.spec import StudySpec


@dataclass
class Outcome:
    spec: StudySpec
    study: Any  # optuna.Study
    url: str  # its storage
    capacity: bool  # a --capacity study: the objective is the replica count
    names: list[str]  # objective names (["replicas"] for capacity)
    front: list  # Pareto trials
    best: Any  # the best feasible trial, or None
    best_k: dict[str, Any]  # its knobs
    points: list[schedule.Point]  # per-batch-size schedule of the best knobs
    notes: list[str]
    importances: dict[str, float]  # knob -> importance for the first objective
    importance_method: str
    files: list[str] = field(default_factory=list)  # written into the run folder, in order
    exports: Any = None  # export.Exports: every engine's files, answers, synthetic prediction
    policies: list = field(default_factory=list)  # policy_compare.PolicyBest, best first

    def plain_best(self):
        """The best feasible plain-decoding trial (gamma = 0), the baseline of the summary."""
        sign = -1 if self.study.directions[0].name == "MAXIMIZE" else 1
        cands = [t for t in results.feasible_trials(self.study) if results.knobs(t).get("gamma") == 0]
        return min(cands, key=lambda t: (sign * t.values[0], t.number)) if cands else None

    def ran_plain(self) -> bool:
        """Whether any plain-decoding trial (gamma = 0) completed, feasible or not."""
        return any(results.knobs(t).get("gamma") == 0 for t in results.complete(self.study))


def portable_scenario(sc: Scenario, spec: StudySpec, out: Path) -> Scenario:
    """Profile/trace paths re-expressed relative to the run folder, where best.toml lives."""
    moved: dict[str, dict[str, str]] = {}
    for sec, key in PATH_KEYS:
        ref = getattr(getattr(sc, sec), key, None)
        if ref is not None and not Path(ref).is_absolute():
            moved[sec] = {key: os.path.relpath(resolve_data_path(ref, spec.where).resolve(), out.resolve())}
    # validated as the file it becomes: an imported acceptance file is read where best.toml points
    return sc.with_(moved, file=str(out / "best.toml"))


def importances(study) -> tuple[dict[str, float], str]:
    """Optuna's PED-ANOVA importances for the first objective; when it cannot run, the share
    of variance explained by each knob (eta^2; a knob absent from a trial counts as a value).
    Returns the importances and the method's name."""
    import numpy as np

    trials = [t for t in results.complete(study) if t.values and not math.isnan(t.values[0])]
    imp: dict[str, float] = {}
    how = "PED-ANOVA, Optuna"
    try:
        import optuna

        # PED-ANOVA (no scikit-learn needed) takes lower target = better.
        # An SLO-violating trial ranks with the worst feasible one (never among the top).
        sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
        feas = [sign * t.values[0] for t in trials if results.is_feasible(t)]
        worst = max(feas) if feas else 0.0
        import warnings

        with warnings.catch_warnings():  # "lower target is better": the sign above sees to it
            warnings.simplefilter("ignore")
            imp = dict(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: sign * t.values[0] if results.is_feasible(t) else worst))
        imp = {knobs.optuna_to_knob(k): float(v) for k, v in imp.items()}
    except Exception:  # too few trials, or a degenerate space: fall back to eta^2
        imp = {}
        how = "eta^2"
    if not imp and len(trials) >= 3:
        y = np.array([t.values[0] for t in trials])
        total = float(((y - y.mean()) ** 2).sum())
        names = sorted({k for t in trials for k in results.knobs(t)})
        for n in names:
            groups: dict[str, list[float]] = {}
            for t, v in zip(trials, y):
                groups.setdefault(str(results.knobs(t).get(n, "-")), []).append(v)
            between = sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values())
            imp[n] = float(between / total) if total > 0 else 0.0
    return imp, how


def write_results(spec: StudySpec, study, out: Path, url: str, capacity: bool,
                  ev: Evaluator | None = None, versions: dict[str, str | None] | None = None,
                  meanwhile: Callable[[], Any] | None = None) -> Outcome:
    """Write the study's result files into `out` and return what it found. `versions`: the
    engines to export for and their versions (default: all three, each at its newest known).
    The trials table, and `meanwhile` (e.g. importing what the report draws with), are done
    while the per-batch schedule's simulations run in other processes (this one would wait)."""
    ev = ev or Evaluator(spec)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    names = ["replicas"] if capacity else objectives.objective_names(spec)
    front = results.pareto(study)

    def tables() -> None:
        df = results.frame(study)
        write_via(out / "trials.parquet", lambda tmp: df.to_parquet(tmp, index=False))
        pf = df[df["number"].isin([t.number for t in front])]
        write_text(out / "pareto.csv", pf.to_csv(index=False))
        written[:0] = ["trials.parquet", "pareto.csv"]
        if meanwhile is not None:
            meanwhile()

    best = results.best_trial(study)
    notes: list[str] = []
    pts: list[schedule.Point] = []
    exps = export.Exports()
    best_k: dict[str, Any] = {}
    if best is not None:
        best_k = results.knobs(best)
        changes = [cap_mod.changes(spec, best.user_attrs["replicas"])] if capacity else []
        sc = portable_scenario(ev.scenario(best_k, *changes), spec, out)
        header = (f"best.toml from `simspec study {spec.path.name}` (study {study.study_name!r}, trial #{best.number})\n"
                  f"knobs: {json.dumps(best_k)}\n"
                  "a complete scenario: simspec simulate best.toml")
        write_text(out / "best.toml", tomlw.dumps(sc.model_dump(exclude_unset=True), header))  # the keys given
        written.append("best.toml")

        pts = schedule.run_schedule(spec, ev, study, best_k, meanwhile=tables)
        write_text(out / export.SCHEDULE, schedule.points_csv(pts))
        written.append(export.SCHEDULE)
        exps = export.export(spec, study, best_k, pts, ev, versions)
        notes += exps.notes
        written += export.write(exps, out)
    else:
        tables()
        notes.append("No trial met every SLO: no best.toml and no engine export. Relax [constraints] or widen [search].")

    imp, how = importances(study)
    pol = [] if capacity else policy_compare.best_per_policy(spec, study)
    return Outcome(spec, study, url, capacity, names, front, best, best_k, pts, notes, imp, how, written, exps, pol)
