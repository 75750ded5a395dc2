"""Engine configs from a study's answer: vLLM, SGLang and TensorRT-LLM, each for a version.

`export(...)` turns the best knobs and the per-batch schedule points into every engine's
files (simspec.study.engines: one builder per engine, each held to the version table), the
synthetic-acceptance configs and the throughput/TPOT a synthetic run should show
(`synthetic_prediction.csv`). Early exit has no engine method: an engine export falls back
to the best drafter the engine can run, and says so in its notes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simspec import outputs
from simspec.atomic import write_text
from simspec.config import resolve_data_path
from simspec.errors import InputError
from simspec.study import schedule
from simspec.study.engines import Context, EngineExport, sglang, synthetic, trtllm, vllm
from simspec.study.engines import versions as V
from simspec.study.engines.answer import SCHEDULE_MIN_GAIN, Answer, answer
from simspec.study.schedule import Point
from simspec.study.spec import StudySpec

ENGINES = ("vllm", "sglang", "trtllm")
BUILDERS = {"vllm": vllm.build, "sglang": sglang.build, "trtllm": trtllm.build}
PREDICTION = "synthetic_prediction.csv"
SCHEDULE = "schedule.csv"


def runnable(engine: str, version: str | None = None) -> set[str]:
    """The drafter kinds the engine (that version of it, when given) runs."""
    return set({"vllm": vllm.methods, "sglang": sglang.algorithms, "trtllm": trtllm.decoding_types}[engine](version))


@dataclass
class Exports:
    engines: list[EngineExport] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)   # engine -> its answer
    rates: dict[str, list[float]] = field(default_factory=dict)  # kind -> conditional rates
    rates_source: dict[str, str] = field(default_factory=dict)
    prediction: list[synthetic.Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get(self, engine: str) -> EngineExport | None:
        return next((e for e in self.engines if e.engine == engine), None)

    def files(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.engines:
            out.update(e.files)
        if self.prediction:
            out[PREDICTION] = synthetic.rows_csv(self.prediction)
        return out


def hot_ids(spec: StudySpec, kind: str, k: int) -> tuple[list[int] | None, str]:
    """The top-k token ids of the trimmed head: the first k of the trace sidecar's
    `calibration.order` (ids by frequency over the calibration texts), if a trace gives them."""
    ds = spec.file.drafters.get(kind)
    ref = ds.acceptance.trace if ds is not None and ds.acceptance is not None else None
    ref = ref or (spec.base.acceptance.trace if spec.base.acceptance is not None else None)
    if not ref:
        return None, ""
    from simspec.trace.schema import sidecar_path

    side = sidecar_path(resolve_data_path(ref, spec.where))
    try:
        order = (json.loads(side.read_text()).get("calibration") or {}).get("order") or []
    except (OSError, ValueError):
        return None, ""
    if len(order) < k:
        return None, ""
    return [int(x) for x in order[:k]], f"calibration.order of {side.name}"


def export(spec: StudySpec, study, best: dict[str, Any], pts: list[Point], ev=None,
           versions: dict[str, str | None] | None = None, threshold: float = SCHEDULE_MIN_GAIN,
           predict: bool = True) -> Exports:
    """Every requested engine's export (default: all three, each at its newest known version)."""
    versions = versions if versions is not None else {e: None for e in ENGINES}
    from simspec.study.trial import explicit_knobs

    best = explicit_knobs(spec, best)  # a budget tree exports as the explicit tree it resolved to
    out = Exports()
    # each drafter's sub-knobs (exit layer, vocabulary, ...) from its best trial; without the
    # study, the best knobs stand for their own drafter
    kind_knobs = schedule.drafter_params(spec, study, best) if study is not None else {best.get("drafter"): best}
    ctxs: dict[str, Context] = {}
    for eng in versions:
        ver = V.resolve(eng, versions[eng])
        a = answer(best, pts, runnable(eng, ver), threshold)
        out.answers[eng] = a
        ctx = Context(best, a, spec.file.drafters.get(a.kind) if a.kind else None)
        if a.speculates:
            kp = schedule.point_knobs(best, kind_knobs.get(a.kind), a.kind, max(a.max_k, 1))
            if a.kind not in out.rates or len(out.rates[a.kind]) < a.max_k:
                out.rates[a.kind], out.rates_source[a.kind] = synthetic.conditional_rates(spec, kp, a.max_k)
            ctx.rates, ctx.rates_source = out.rates[a.kind][: a.max_k], out.rates_source[a.kind]
            if ctx.trimmed is not None:
                ctx.hot_ids, ctx.hot_ids_source = hot_ids(spec, a.kind, ctx.trimmed)
        ctxs[eng] = ctx
        e = BUILDERS[eng](ctx, ver)
        out.engines.append(e)
        out.notes += [n for n in e.notes if n not in out.notes]
    if predict and ev is not None:
        predictors: dict[str | None, synthetic.Predictor] = {}
        for e in out.engines:
            if e.synthetic is None:
                continue
            a = out.answers[e.engine]
            pr = predictors.get(a.kind)
            if pr is None:
                pr = predictors[a.kind] = synthetic.Predictor(spec, ev, best, kind_knobs.get(a.kind), a,
                                                              ctxs[e.engine].rates, pts)
            out.prediction += pr.rows(e.engine, e.k_at)
    return out


# Every file an engine's export may write: a rerun removes the ones it no longer writes, so
# no stale adaptive config or token map from another version stays beside the new files.
ENGINE_FILES = {"vllm": (vllm.MAIN, vllm.SYNTHETIC),
                "sglang": (sglang.MAIN, sglang.ADAPTIVE, sglang.TOKEN_MAP_IDS, sglang.SYNTHETIC),
                "trtllm": (trtllm.MAIN,)}


def write(exports: Exports, out: Path) -> list[str]:
    """Write every export file into `out` (atomically, each); their names, in order."""
    out = Path(out)
    files = exports.files()
    for e in exports.engines:
        for name in ENGINE_FILES[e.engine]:
            if name not in files:
                (out / name).unlink(missing_ok=True)
    names = []
    for name, text in files.items():
        write_text(out / name, text)
        names.append(name)
    return names


def finished(spec: StudySpec, out: Path, storage: str | None = None, capacity: bool = False):
    """A finished study's (optuna study, best knobs, schedule points) from its run folder:
    the points of its schedule.csv, or simulated again (and that file written) when it has
    none. InputError when there is no study or no feasible trial."""
    import optuna

    from simspec.study import results, runner
    from simspec.study.storage import default_url, open_storage, redact

    out = Path(out)
    url = storage or default_url(out)
    if storage is None and not (out / "study.db").exists():
        raise InputError(str(out), None, "no study here (no study.db): run `simspec study` first, or give --storage")
    if out.exists() and not outputs.is_complete(out):  # its schedule.csv may be of fewer trials, or missing
        raise InputError(str(out), None, outputs.unfinished(out, f"run `simspec study {spec.path.name}` again"))
    name = runner.study_name(spec, capacity)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise InputError(redact(url), None, f"holds no study named {name!r}") from None
    from simspec.study.definition import check_stored

    check_stored(spec, study, capacity, redact(url))  # the trials must answer this file's question
    best = results.best_trial(study)
    if best is None:
        raise InputError(redact(url), None, "no trial met every SLO: nothing to export")
    best_k = results.knobs(best)
    sched = out / SCHEDULE
    if sched.exists():
        pts = schedule.read_points(sched)
    else:
        from simspec.study.evaluate import Evaluator

        pts = schedule.run_schedule(spec, Evaluator(spec), study, best_k)
        write_text(sched, schedule.points_csv(pts))
    return study, best_k, pts


def parse_versions(engines: list[str] | None, version: str | None) -> dict[str, str | None]:
    """--engine (repeatable, default all) and --engine-version (one engine only) -> {engine: version}."""
    chosen = list(dict.fromkeys(engines or ENGINES))
    for e in chosen:
        V.engine(e)
    if version is not None and len(chosen) != 1:
        raise InputError(None, "--engine-version", "names one engine's version: give exactly one --engine")
    return {e: V.resolve(e, version) for e in chosen}


def parse_pins(pins: list[str] | None) -> dict[str, str | None]:
    """`simspec study --engine-version vllm=0.21.0` (repeatable) -> versions for every engine."""
    out: dict[str, str | None] = {e: None for e in ENGINES}
    for pin in pins or []:
        eng, sep, ver = pin.partition("=")
        if not sep or not ver:
            raise InputError(None, "--engine-version", f"{pin!r}: expected ENGINE=VERSION, e.g. vllm=0.21.0")
        V.engine(eng)
        out[eng] = V.resolve(eng, ver)
    return out
