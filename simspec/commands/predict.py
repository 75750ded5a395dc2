"""`simspec predict STUDY.toml`: the throughput/TPOT a synthetic-acceptance run should show."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

HELP = """Predict what a real deployment of the exported config shows with acceptance fixed to the study's.

Serve vllm_synthetic_config.json (vLLM's rejection_sample_method = "synthetic") or the SGLang flags
with sglang_synthetic_env.sh (SGLANG_SIMULATE_ACC_LEN), measure throughput and TPOT at each batch
size, and compare with this table. A miss means the serving model is wrong; a match here but a miss
with the real drafter means the drafter accepts differently from the trace.

Examples:

  simspec predict studies/quickstart_study.toml

  simspec predict my_study.toml --engine vllm --engine-version 0.24.0
"""


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def predict(
        study_file: Path = typer.Argument(..., metavar="STUDY.toml", help="Study file (TOML)."),
        engine: Optional[List[str]] = typer.Option(None, "--engine", help="vllm or sglang (repeatable; default: both)."),
        engine_version: Optional[str] = typer.Option(None, "--engine-version", help="The engine's version (one --engine; default: the newest simspec knows)."),
        out: Optional[Path] = typer.Option(None, "--out", help="The study's run folder (default: runs/<name>/ beside the study file)."),
        storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: the run folder's SQLite)."),
        to: Optional[Path] = typer.Option(None, "--to", help="Write the configs and synthetic_prediction.csv here (default: the run folder)."),
        min_gain: float = typer.Option(0.066, "--schedule-min-gain", help="As `simspec export`."),
        capacity: bool = typer.Option(False, "--capacity", help="The study's --capacity run."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress display."),
    ) -> None:
        from simspec import outputs
        from simspec.commands.study import default_out
        from simspec.errors import InputError
        from simspec.study import export
        from simspec.study.evaluate import Evaluator
        from simspec.study.spec import load_study

        from simspec.commands.flags import finite

        finite("--schedule-min-gain", min_gain, low=0)
        spec = load_study(study_file)
        versions = export.parse_versions(engine or ["vllm", "sglang"], engine_version)
        if "trtllm" in versions:
            raise InputError(None, "--engine", "TensorRT-LLM has no synthetic-acceptance mode simspec knows: use vllm or sglang")
        run = out or default_out(study_file, spec.name, capacity)
        dest = to or run
        outputs.check_dir("--to" if to is not None else "--out", dest)  # before the simulations and the table
        study, best, pts = export.finished(spec, run, storage, capacity)

        def go():
            return export.export(spec, study, best, pts, Evaluator(spec), versions, threshold=min_gain)

        if no_progress:
            exps = go()
        else:
            from rich.console import Console

            with Console(stderr=True).status("simulating the synthetic-acceptance runs ..."):
                exps = go()
        if not exps.prediction:
            for n in exps.notes:
                typer.echo(f"note: {n}")
            raise InputError(str(study_file), None, "no synthetic-acceptance config for these engines/versions: nothing to predict")
        typer.echo(f"{'engine':8} {'batch':>5} {'K':>3} {'tok/s':>10} {'TPOT p50 s':>11} {'TPOT p99 s':>11} {'tok/round':>9}")
        for r in exps.prediction:
            typer.echo(f"{r.engine:8} {r.batch:>5} {r.k:>3} {r.throughput_tok_s:>10.4g} {r.tpot_p50_s:>11.4g} "
                       f"{r.tpot_p99_s:>11.4g} {r.tokens_per_round:>9.4g}")
        for e in exps.engines:
            if e.synthetic:
                typer.echo(f"serve {e.synthetic} ({e.engine} {e.version}) to check it")
        names = export.write(exps, dest)
        typer.echo(f"results written to: {dest}/ ({', '.join(names)})")
