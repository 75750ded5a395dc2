"""Run a study: TPE (seeded) over the space, SLOs as Optuna constraints, N local workers on
one storage, resumable (only the trials still missing are run)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from simspec.errors import InputError
from simspec.study import definition, objectives, space
from simspec.study.evaluate import REPEAT, SCENARIO_KEY, Evaluator
from simspec.study.prune import REQUESTS, applies, make_pruner, run_prefixes
from simspec.study.spec import StudySpec, load_study
from simspec.study.storage import open_storage

DONE_STATES = ("COMPLETE", "PRUNED")


@dataclass
class RunInfo:
    study_name: str
    storage_url: str
    resumed: int           # trials already done before this run
    ran: int               # trials this run asked for
    stale_failed: int      # RUNNING trials of a killed run marked failed
    one_point: bool = False  # the space is one point: one trial answers it
    workers: int = 0         # worker processes this run used (0: it ran no trial)
    study: Any = None        # the study as this run ends, read in memory (own storage), else None


def quiet() -> None:
    """Optuna's per-trial log lines and experimental warnings off (simspec shows progress)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*constraints_func.*")


AUTO_WORKERS_FROM = 100  # trials to run from which a second worker pays for its start (~2 s)


def auto_workers(todo: int) -> int:
    """`--workers` left out: 2 where 2 cores are usable and the run has at least
    AUTO_WORKERS_FROM trials to do, else 1. More than 2 TPE workers on one storage propose from
    staler histories (constant liar), so the default stops at both cores of a small machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 and todo >= AUTO_WORKERS_FROM else 1


def study_name(spec: StudySpec, capacity: bool) -> str:
    return spec.name + ("-capacity" if capacity else "")


SEED_RANGE = 2**32  # numpy's RandomState, behind Optuna's samplers, takes seeds in [0, 2**32)


def make_sampler(spec: StudySpec, seed: int, workers: int, shared: bool = True):
    """The study's sampler. Any integer seed (negative, or beyond 2**32 after the offsets a
    resumed run or a worker adds) is folded into the range numpy takes; seeds inside it are
    used as they are.

    constant_liar (several workers on a `shared` storage: each sees the others' running
    trials, with their parameters written as attributes) is off for a mirrored study
    (simspec.study.mirror): a worker sees no trial running elsewhere there, so the liar would
    only write those attributes and turn off Optuna's per-trial cache of the history.

    TPE is multivariate over the knobs every trial has (gamma, drafter, max_batch, ...) and
    samples the conditional ones (exit layer, vocab, tree) independently: `group=True` (one
    model per group of co-occurring knobs) took 30 s to propose 1000 trials of study_speed's space
    here (in memory, nothing simulated) against 8 s without it, and both found the same best
    configuration in benchmarks/study_speed.py."""
    import optuna

    seed %= SEED_RANGE
    if spec.file.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=spec.file.startup_trials, multivariate=True,
        constant_liar=workers > 1 and shared,
    )


def directions(spec: StudySpec, capacity: bool) -> list[str]:
    return ["minimize"] if capacity else objectives.directions(spec)


# -- objectives ----------------------------------------------------------------------

def _invalid(trial, reason: str):
    import optuna

    trial.set_user_attr("invalid", reason)
    raise optuna.TrialPruned(reason)


def stored_figures(study) -> Callable[[str], dict[str, Any] | None]:
    """Look a scenario digest up among the study's finished trials (any worker's, any run's):
    their summaries carry the digest of the scenario they simulated."""
    from optuna.trial import TrialState

    index: dict[str, dict[str, Any]] = {}
    indexed: set[int] = set()

    refresh = getattr(study._storage, "refresh_peers", None)  # a mirror: read the other workers' rows

    def lookup(digest: str) -> dict[str, Any] | None:
        if digest not in index:
            if refresh is not None:  # about to simulate: another worker may have just done it
                refresh()
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if t.number not in indexed:
                    indexed.add(t.number)
                    summary = t.user_attrs.get("summary") or {}
                    if SCENARIO_KEY in summary:
                        index.setdefault(summary[SCENARIO_KEY], summary)
        return index.get(digest)

    return lookup


def study_objective(spec: StudySpec, ev: Evaluator, prune: bool = False) -> Callable:
    """`prune`: run request prefixes first and let the pruner stop the trial (simspec.study.prune)."""
    def objective(trial):
        if ev.lookup is None:  # an objective serves one study: its finished trials
            ev.lookup = stored_figures(trial.study)
        p = space.suggest(trial, spec)
        trial.set_user_attr("point", p)
        try:
            done = run_prefixes(trial, spec, ev, p) if prune else 0
            summary = ev.evaluate(p)
        except InputError as exc:
            _invalid(trial, exc.line())
        if ev.repeated:
            trial.set_user_attr(REPEAT, True)
        if prune:
            trial.set_user_attr(REQUESTS, done + ev.workload(ev.scenario(p)).n)
        trial.set_user_attr("summary", {**summary, "worker_pid": os.getpid(), SCENARIO_KEY: ev.last_key})
        for k, v in objectives.constraint_values(spec, summary).items():
            trial.set_constraint(k, v)
        vals = objectives.values(spec, summary)
        if any(math.isnan(v) for v in vals):
            _invalid(trial, "an objective is NaN (no request finished?)")
        return vals[0] if len(vals) == 1 else vals

    return objective


def capacity_objective(spec: StudySpec, ev: Evaluator) -> Callable:
    from simspec.study.capacity import fewest_replicas

    def objective(trial):
        p = space.suggest(trial, spec)
        trial.set_user_attr("point", p)
        try:
            res = fewest_replicas(spec, ev, p)
        except InputError as exc:
            _invalid(trial, exc.line())
        trial.set_user_attr("summary", {**res.summary, "worker_pid": os.getpid()})
        trial.set_user_attr("replicas", res.replicas)
        trial.set_user_attr("probes", res.probes)
        trial.set_constraint("replicas", 0.0 if res.feasible else 1.0)
        return res.score

    return objective


class Interrupted(BaseException):
    """Ctrl-C inside a trial, carried past Optuna: Optuna catches a KeyboardInterrupt raised by
    the objective and logs it as a failed trial with its whole traceback before re-raising it."""


def objective(spec: StudySpec, ev: Evaluator, capacity: bool, prune: bool = False) -> Callable:
    """The study's objective; an interrupt fails its trial (a rerun runs it again) and leaves
    as `Interrupted`, which Optuna does not catch."""
    obj = capacity_objective(spec, ev) if capacity else study_objective(spec, ev, prune)

    def run_one(trial):
        try:
            return obj(trial)
        except KeyboardInterrupt:
            from optuna.trial import TrialState

            try:
                trial.study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 -- a rerun fails a trial left RUNNING anyway
                pass
            raise Interrupted() from None

    return run_one


# -- running ---------------------------------------------------------------------------

def _done(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def open_study(spec: StudySpec, url: str, capacity: bool, seed: int, workers: int, heartbeat: bool = False,
               prune: bool = False):
    """The study already created in the storage at `url` (by `prepare`), with this worker's
    sampler (and pruner: Optuna does not store it)."""
    import optuna

    storage = open_storage(url, heartbeat=heartbeat)
    mirrored = not heartbeat and not os.environ.get("SIMSPEC_STUDY_RDB")
    if mirrored:
        # the run folder's own file: searched in memory, each finished trial written through
        # (simspec.study.mirror); a shared --storage (heartbeat) is read and written directly
        from simspec.study.mirror import MirroredStorage

        storage = MirroredStorage(storage, study_name(spec, capacity), peers=workers > 1)
    return optuna.load_study(study_name=study_name(spec, capacity), storage=storage,
                             sampler=make_sampler(spec, seed, workers, shared=not mirrored), pruner=make_pruner(prune))


def _worker(study_path: str, url: str, capacity: bool, n_trials: int, seed: int, workers: int,
            heartbeat: bool = False, total: int | None = None, prune: bool = False, slots=None) -> None:
    quiet()
    spec = load_study(study_path)
    study = open_study(spec, url, capacity, seed, workers, heartbeat, prune)
    try:
        if slots is None or claim(slots):
            study.optimize(objective(spec, Evaluator(spec), capacity, prune), n_trials=n_trials,
                           callbacks=[after_trial(*([claim_next(slots)] if slots is not None else []),
                                                  *([stop_at(total)] if total else []))], gc_after_trial=False)
    except (KeyboardInterrupt, Interrupted):
        sys.exit(130)  # the main process says so, once: no traceback per worker


# The trials a run still has to start, shared by its local workers: each takes one before each
# trial, so a worker that started late (a spawned process imports for a second) or drew slow
# scenarios runs fewer, and the run ends when its last trial does, with exactly its trials run.
def claim(slots) -> bool:
    """Take one trial from the shared count; False when none is left."""
    with slots.get_lock():
        if slots.value <= 0:
            return False
        slots.value -= 1
        return True


def claim_next(slots) -> Callable:
    """An Optuna callback: stop this worker when no trial is left for it to start."""
    def cb(study, trial) -> None:
        if not claim(slots):
            study.stop()

    return cb


def prepare(spec: StudySpec, url: str, capacity: bool, own_storage: bool, new: bool = False):
    """Create or load the study (`new`: delete a stored one first); refuse a stored study that
    answers another question (its definition differs); enqueue baselines once; fail trials a
    killed run left RUNNING (own storage: all of them; shared storage: those whose heartbeat
    stopped, re-enqueued)."""
    import optuna

    from simspec.study.storage import fail_stale_heartbeats, fail_stale_running, redact

    quiet()
    storage = open_storage(url, heartbeat=not own_storage)
    name = study_name(spec, capacity)
    dirs = directions(spec, capacity)
    if new:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass  # nothing stored yet
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=dirs, load_if_exists=True)
    except ValueError as exc:
        raise InputError(spec.where, "objectives", f"the stored study {name!r} does not match: {exc}") from None
    if [d.name.lower() for d in study.directions] != dirs:
        raise InputError(spec.where, "objectives",
                         f"the stored study {name!r} has directions {[d.name.lower() for d in study.directions]}; "
                         "use another --out or --storage for new objectives")
    if definition.check_stored(spec, study, capacity, redact(url)) is None:
        study.set_user_attr(definition.ATTR, definition.definition(spec, capacity))
    stale = fail_stale_running(storage, study._study_id) if own_storage else fail_stale_heartbeats(study)
    if not study.get_trials(deepcopy=False):
        if not capacity:
            study.set_metric_names(objectives.objective_names(spec))
        for b in spec.file.baselines:
            study.enqueue_trial(space.to_optuna_params(b), skip_if_exists=True)
    return study, stale


def run(spec: StudySpec, url: str, n_trials: int, workers: int | None, capacity: bool, own_storage: bool,
        progress: bool = True, new: bool = False, on_start: Callable[[], None] | None = None,
        prune: bool = False) -> RunInfo:
    """Run until `n_trials` trials are done (complete or pruned) in the storage. The run folder's
    own SQLite study takes one run at a time (a second is refused); on a shared storage every
    worker of every run stops once the storage holds `n_trials` done trials. `on_start` is
    called once the study is known to answer the same question, before any trial (a refused
    resume changes nothing in the run folder). `prune`: multi-fidelity trials where they apply
    (simspec.study.prune)."""
    from simspec.study.storage import run_lock

    prune = prune and applies(spec, capacity)
    with run_lock(url) if own_storage else _no_lock():
        return _run(spec, url, n_trials, workers, capacity, own_storage, progress, new, on_start, prune)


@contextmanager
def _no_lock():
    yield


def after_trial(*callbacks: Callable) -> Callable:
    """One Optuna callback calling `callbacks` in turn: Optuna deep-copies the finished trial
    once per callback it is given (its summary included), once is enough."""
    def cb(study, trial) -> None:
        for c in callbacks:
            c(study, trial)

    return cb


def stop_at(total: int) -> Callable:
    """An Optuna callback: stop this worker once the storage holds `total` done trials (other
    runs sharing the storage count too)."""
    def cb(study, trial) -> None:
        if _done(study) >= total:
            study.stop()

    return cb


def _run(spec: StudySpec, url: str, n_trials: int, workers: int | None, capacity: bool, own_storage: bool,
         progress: bool, new: bool, on_start: Callable[[], None] | None = None, prune: bool = False) -> RunInfo:
    study, stale = prepare(spec, url, capacity, own_storage, new)
    if on_start is not None:
        on_start()
    one = definition.one_point(spec)
    if one:  # the simulator is deterministic: N trials of one point are one trial N times
        n_trials = min(n_trials, 1)
    done = _done(study)
    todo = max(0, n_trials - done)
    seed = spec.file.seed + done  # a resumed run does not replay the first run's random draws
    info = RunInfo(study.study_name, url, done, todo, stale, one)
    if todo == 0:
        return info
    workers = max(1, min(auto_workers(todo) if workers is None else workers, todo))
    info.workers = workers
    procs = []
    try:
        study = open_study(spec, url, capacity, seed, workers, not own_storage, prune)
        obj = objective(spec, Evaluator(spec), capacity, prune)
        if own_storage and workers > 1:
            # The enqueued trials (baselines) first, here: SQLite has no row locks, and two workers
            # asking at once could both pop one (simspec.study.storage._sqlite_wal says more).
            from optuna.trial import TrialState

            waiting = min(todo, len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))))
            if waiting:
                study.optimize(obj, n_trials=waiting, gc_after_trial=False)
                todo -= waiting
                workers = max(1, min(workers, todo))
        if todo == 0:
            return info
        # forked where the platform forks: a spawned worker spends a second importing before its
        # first trial. The child opens its own storage; it never touches the connections it
        # inherits, and leaves with os._exit (multiprocessing's fork), closing none of them.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        slots = ctx.Value("l", todo)
        for i in range(1, workers):
            pr = ctx.Process(target=_worker, args=(str(spec.path), url, capacity, todo, seed + 1000 * i, workers,
                                                   not own_storage, n_trials, prune, slots), daemon=False)
            pr.start()
            procs.append(pr)
        if claim(slots):
            if progress:
                _optimize_with_bar(study, obj, todo, n_trials, done, capacity, procs, slots)
            else:
                study.optimize(obj, n_trials=todo, callbacks=[after_trial(claim_next(slots), stop_at(n_trials))],
                               gc_after_trial=False)
    except Interrupted:
        raise KeyboardInterrupt from None  # the command prints one line and exits 130
    finally:
        for pr in procs:
            pr.join()
    bad = [pr.exitcode for pr in procs if pr.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} worker process(es) failed (exit codes {bad})")
    from simspec.study.mirror import MirroredStorage

    if isinstance(study._storage, MirroredStorage):
        # the report reads this in-memory copy, brought up to date with the other workers'
        # last rows, instead of loading every trial from the file again
        study._storage.refresh()
        info.study = study
    return info


def _best_text(study, capacity: bool) -> str:
    from simspec.study.results import best_trial

    t = best_trial(study)
    if t is None:
        return "best: - (no feasible trial yet)"
    if capacity:
        return f"best: {t.user_attrs.get('replicas')} replicas (#{t.number})"
    vals = ", ".join(f"{v:.4g}" for v in t.values)
    return f"best: {vals} (#{t.number})"


def _optimize_with_bar(study, obj, n_local: int, total: int, done: int, capacity: bool, procs, slots) -> None:
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = [TextColumn("[bold]study[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[best]}")]
    with Progress(*cols, transient=False) as bar:
        task = bar.add_task(study.study_name, total=total, completed=done, best=_best_text(study, capacity))

        def cb(st, trial) -> None:
            bar.update(task, completed=min(total, _done(st)), best=_best_text(st, capacity))

        study.optimize(obj, n_trials=n_local, callbacks=[after_trial(cb, claim_next(slots), stop_at(total))],
                       gc_after_trial=False)
        while any(pr.is_alive() for pr in procs):  # the other workers' trials
            bar.update(task, completed=min(total, _done(study)), best=_best_text(study, capacity))
            time.sleep(0.5)
        bar.update(task, completed=min(total, _done(study)), best=_best_text(study, capacity))
