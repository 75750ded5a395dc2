"""`simspec export STUDY.toml`: a finished study's engine configs, for an engine and its version."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

HELP = """Write a finished study's engine configs for vLLM, SGLang or TensorRT-LLM at a version.

Reads the study from its run folder (study.db and schedule.csv, as `simspec study` left them)
and writes only the keys and flags that the engine version accepts; also the synthetic-acceptance
configs used to check a prediction on a real cluster (see `simspec predict`).

Examples:

  simspec export studies/quickstart_study.toml --engine vllm --engine-version 0.21.0

  simspec export my_study.toml --engine trtllm --to exports/
"""


def register(app: typer.Typer) -> None:
    @app.command("export", help=HELP)
    def export_cmd(
        study_file: Path = typer.Argument(..., metavar="STUDY.toml", help="Study file (TOML)."),
        engine: Optional[List[str]] = typer.Option(None, "--engine", help="vllm, sglang or trtllm (repeatable; default: all three)."),
        engine_version: Optional[str] = typer.Option(None, "--engine-version", help="The engine's version (one --engine; default: the newest simspec knows)."),
        out: Optional[Path] = typer.Option(None, "--out", help="The study's run folder (default: runs/<name>/ beside the study file)."),
        storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: the run folder's SQLite)."),
        to: Optional[Path] = typer.Option(None, "--to", help="Write the files into this folder (default: the run folder); files of the same names there are replaced."),
        min_gain: float = typer.Option(0.066, "--schedule-min-gain", help="Export a per-batch schedule only when it beats the best single K by this fraction in some batch bucket."),
        capacity: bool = typer.Option(False, "--capacity", help="The study's --capacity run."),
    ) -> None:
        from simspec import outputs
        from simspec.commands.study import default_out
        from simspec.study import export
        from simspec.study.spec import load_study

        from simspec.commands.flags import finite

        finite("--schedule-min-gain", min_gain, low=0)
        spec = load_study(study_file)
        versions = export.parse_versions(engine, engine_version)
        run = out or default_out(study_file, spec.name, capacity)
        dest = to or run
        # before any work; files of the same names there are replaced (each atomically), a file at --to is refused
        outputs.check_dir("--to" if to is not None else "--out", dest)
        study, best, pts = export.finished(spec, run, storage, capacity)
        exps = export.export(spec, study, best, pts, None, versions, threshold=min_gain, predict=False)
        names = export.write(exps, dest)
        for e in exps.engines:
            a = exps.answers[e.engine]
            how = (f"schedule {a.ranges}" if a.schedule_pays else f"one K = {a.single_k}") if a.speculates else "no speculation"
            typer.echo(f"{e.engine} {e.version}: {a.kind or 'plain decoding'}, {how} -> {', '.join(e.files)}")
        for n in exps.notes:
            typer.echo(f"note: {n}")
        typer.echo(f"results written to: {dest}/ ({', '.join(names)})")
