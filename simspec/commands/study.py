"""`simspec study STUDY.toml`: tune speculative decoding under SLOs, plan capacity, export engine configs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from simspec import limits
from simspec.errors import InputError

HELP = """Search speculative-decoding settings (Optuna TPE over the simulator) under SLOs.

Writes best.toml, trials.parquet, pareto.csv, schedule.csv, plots, the engine configs
(vllm_speculative_config.json, sglang_args.txt, trtllm_speculative_config.yaml, each for the newest
engine version simspec knows unless --engine-version says otherwise), the synthetic-acceptance configs
with synthetic_prediction.csv, summary.md and report.html (all in one page) into the run folder,
then COMPLETE.json: a run folder without it is unfinished (killed or failed). Running it again
resumes the study and completes the folder (refused if [search], the objectives or the
constraints changed: --new starts over); a second run on the same run folder is refused while
the first runs.

Examples:

  simspec study studies/quickstart_study.toml

  simspec study my_study.toml --trials 200 --workers 2

  simspec study my_study.toml --capacity

  simspec study my_study.toml --engine-version vllm=0.21.0 --engine-version sglang=0.5.10

  simspec study my_study.toml --storage postgresql://user:pw@127.0.0.1/optuna --workers 4
"""


def default_out(study_file: Path, name: str, capacity: bool) -> Path:
    return study_file.parent / "runs" / (name + ("-capacity" if capacity else ""))


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def study(
        study_file: Path = typer.Argument(..., metavar="STUDY.toml", help="Study file (TOML)."),
        trials: Optional[int] = typer.Option(None, "--trials", help="Trials in total (default: the study file's `trials`). A rerun only runs the missing ones."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<name>/ beside the study file)."),
        storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in the run folder)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Local worker processes sharing the storage (default: 2 on a machine with 2+ cores when at least 100 trials are to run, else 1). One worker: the same seed gives the same trials; with more, TPE sees trials in the order they finish, so a rerun may try others (Optuna's guarantee for parallel studies)."),
        capacity: bool = typer.Option(False, "--capacity", help="Find the fewest target replicas for [capacity] rate within [constraints]."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        prune: bool = typer.Option(False, "--prune", help="Multi-fidelity trials: run 10% then 30% of the requests first and stop clearly bad trials there (single objective; the best trial always ran the whole workload)."),
        new: bool = typer.Option(False, "--new", help="Start over: delete the study's stored trials first (needed when [search], the objectives or the constraints changed)."),
        engine_version: Optional[List[str]] = typer.Option(None, "--engine-version", metavar="ENGINE=VERSION", help="Export for this engine version (repeatable), e.g. vllm=0.21.0; default: the newest simspec knows."),
    ) -> None:
        from simspec.report import study as study_report
        from simspec.study import capacity as cap_mod
        from simspec.study import export, runner
        from simspec.study.outcome import write_results
        from simspec.study.spec import load_study
        from simspec.study.storage import default_url, redact

        spec = load_study(study_file)
        versions = export.parse_pins(engine_version)
        if capacity:
            cap_mod.check(spec)
        limits.check_flag("--workers", workers, limits.WORKERS)
        limits.check_flag("--trials", trials, limits.TRIALS)
        n = trials if trials is not None else spec.file.trials
        if n < 1:
            raise InputError(None, "--trials", f"must be >= 1 (got {n})")
        from simspec import outputs

        out = outputs.check_dir("--out", out or default_out(study_file, spec.name, capacity))
        out.mkdir(parents=True, exist_ok=True)
        url = storage or default_url(out)
        try:
            # unfinished from the first trial until COMPLETE.json (new trials make an earlier report
            # stale); a resume refused for a changed question leaves the folder as it was
            info = runner.run(spec, url, n, workers, capacity, own_storage=storage is None, progress=not no_progress,
                              new=new, on_start=lambda: outputs.begin(out), prune=prune)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: the finished trials are kept in {redact(url)}; run the same command to resume",
                       err=True)
            raise typer.Exit(130)
        if info.one_point:
            typer.echo("the search space is one point (every knob fixed; an empty [search] is the scenario as written): "
                       "one trial answers it", err=True)
        if info.workers > 1:
            typer.echo(f"ran {info.ran} trials on {info.workers} worker processes (--workers 1: the same seed, the same trials)",
                       err=True)
        if info.resumed:
            typer.echo(f"resumed study {info.study_name!r}: {info.resumed} trials were already done, ran {info.ran} more"
                       + (f" ({info.stale_failed} left running by a killed run marked failed)" if info.stale_failed else ""))
        import optuna

        st = info.study or optuna.load_study(study_name=info.study_name, storage=runner.open_storage(url))

        def finish() -> dict:
            from simspec.report.mpl import pyplot

            # matplotlib is imported while the per-batch schedule simulates on the other cores
            results = write_results(spec, st, out, url, capacity, versions=versions, meanwhile=pyplot)
            fold = getattr(st._storage, "checkpoint_in_background", None)  # the run's own file, mirrored
            folding = fold() if fold is not None else None
            try:
                return study_report.write(results, out)
            finally:
                if folding is not None:
                    folding.join()

        if no_progress:
            res = finish()
        else:
            from rich.console import Console

            with Console(stderr=True).status("per-batch-size schedule, exports, plots ..."):
                res = finish()
        outputs.finish(out, res["files"], "simspec study " + str(study_file))
        typer.echo(res["summary"])
        typer.echo(f"results written to: {out}/ (trials in {redact(url)})")
