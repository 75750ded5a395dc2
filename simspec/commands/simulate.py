"""`simspec simulate SCENARIO`: run one scenario and report what it delivers."""

from __future__ import annotations

from simspec import strict_json
import math
from pathlib import Path
from typing import Optional

import typer


HELP = """Simulate a serving scenario (TOML) and print throughput, TTFT, TPOT and latency.

Examples:

  simspec simulate studies/quickstart.toml

  simspec simulate studies/quickstart.toml --json --analytic

  simspec simulate my.toml --requests-out runs/requests.parquet --out runs/my
"""


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def simulate(
        scenario: Path = typer.Argument(..., help="Scenario TOML file."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
        requests_out: Optional[Path] = typer.Option(None, "--requests-out", help="Write per-request records to this Parquet file."),
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json, requests.parquet and the resolved scenario (COMPLETE.json, written last, says the set is whole)."),
        analytic: bool = typer.Option(False, "--analytic", help="Print the closed-form prediction beside the simulated figures."),
    ) -> None:
        from simspec.atomic import write_text, write_via
        from simspec.config import load_scenario
        from simspec.sim.run import simulate as run

        from simspec import outputs

        sc = load_scenario(scenario)
        if requests_out is not None:  # before the run: a place that cannot be written wastes none of it
            outputs.check_file("--requests-out", requests_out)
        if out is not None:
            outputs.check_dir("--out", out)
        res = run(sc, str(scenario))
        summary = dict(res.summary)
        if sc.speculation.policy is not None and not sc.speculation.policy.entry.dynamic:
            summary["policy"] = sc.speculation.policy.name  # and the shape it resolved to
            summary["tree"] = str(res.scenario.shape)
        sc = res.scenario
        pred = None
        if analytic:
            from simspec.analytic import predict
            from simspec.sim.build import build_round_cost

            pred = predict(sc, build_round_cost(sc, str(scenario)))
            if pred is not None:
                summary["analytic"] = pred

        if requests_out is not None:
            write_via(requests_out, lambda t: res.requests_frame().to_parquet(t, index=False))
        if out is not None:  # a set: COMPLETE.json last says all three are of this run
            outputs.begin(out)
            write_text(out / "summary.json", strict_json.dumps(summary, indent=2) + "\n")
            write_via(out / "requests.parquet", lambda t: res.requests_frame().to_parquet(t, index=False))
            write_text(out / "scenario.json", sc.model_dump_json(indent=2) + "\n")
            outputs.finish(out, ["summary.json", "requests.parquet", "scenario.json"],
                           f"simspec simulate {scenario}")

        if as_json:
            typer.echo(strict_json.dumps(summary, sort_keys=True))
        else:
            _print_table(summary, pred, scenario)
        if out is not None or requests_out is not None:
            where = [str(p) for p in (out, requests_out) if p is not None]
            typer.echo(f"results written to: {', '.join(where)}", err=as_json)


def _print_table(summary: dict, pred: dict | None, scenario: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"simspec simulate {scenario}")
    table.add_column("metric")
    table.add_column("simulated", justify="right")
    if pred:
        table.add_column("closed form", justify="right")
    for k, v in summary.items():
        if k == "analytic":
            continue
        row = [k, _fmt(v)]
        if pred:
            row.append(_fmt(pred[k]) if k in pred else "")
        table.add_row(*row)
    if pred and "speedup_vs_plain" in pred:
        table.add_row("speedup_vs_plain", "", _fmt(pred["speedup_vs_plain"]))
    Console().print(table)
